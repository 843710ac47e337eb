"""Holdings valued at live prices, and the portfolio summary, with written definitions.

The database rows are read in a reader thread (`read_positions`); they are valued with the
market's prices on the trio thread (`value`), which owns the market. Every figure is integer
cents until rendered; sums are of cents, never of rendered floats.

Definitions (docs/protocol.md repeats them, and so do the OpenAPI descriptions):
- A holding is marked at the symbol's last trade (before the day's first trade, the previous
  close). On a thin book the last trade can be old or far from the quotes; the bid/ask of the
  stock say what selling or buying now would fetch.
- Cost is average cost: `cost_basis` is exact (what the shares still held cost); `avg_price` is
  cost_basis / quantity rounded to 4 decimals, so use `cost_basis` for sums.
- Unrealized P&L = market value - cost basis. Realized P&L is per closing (sell) fill: proceeds -
  the average cost of the shares sold.
- Day P&L (as brokers compute it), over the current trading day: for shares held since before the
  day began, (price - previous close) x quantity; for shares bought today, (price - their buy
  price) x quantity; for shares sold today, (sell price - previous close) if they were held
  before today (sells take those first) or (sell price - buy price) if bought today. In one line:
  value now - value at the previous close of the day's opening shares - buys + sells, in exact
  cents. Deposits and withdrawals never count. (Today's realized P&L, measured against average
  cost, is reported apart as `today_realized_pnl`.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from marketsrv.market import Market
from marketsrv.units import kes


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One symbol of a user's, as the database has it."""

    symbol: str
    quantity: int
    held: int
    cost: int  # cents, what the shares held cost
    realized: int  # cents, all time
    bought_today: int  # shares
    bought_today_cost: int  # cents
    sold_today: int  # shares
    sold_today_proceeds: int  # cents
    realized_today: int  # cents, against average cost


@dataclass(frozen=True, slots=True)
class Position:
    row: PositionRow
    name: str
    price: int  # the mark, cents
    previous_close: int

    @property
    def value(self) -> int:
        return self.price * self.row.quantity

    @property
    def unrealized(self) -> int:
        return self.value - self.row.cost

    @property
    def day_pnl(self) -> int:
        """Value now - the value at the previous close of the shares held when the day began
        - today's buys + today's sells: per share, (price - previous close) for shares held
        since before today, (price - buy price) for shares bought today, and for shares sold
        today (sell price - previous close, or - buy price if bought today). Exact cents."""
        r = self.row
        start = r.quantity - r.bought_today + r.sold_today
        return (
            self.value - start * self.previous_close - r.bought_today_cost + r.sold_today_proceeds
        )


@dataclass(frozen=True, slots=True)
class Account:
    balance: int  # cents
    held: int
    realized: int  # all time, every symbol ever held
    rows: list[PositionRow]  # symbols held now or traded today


def read_positions(conn: sqlite3.Connection, user_id: int, day_start_ms: int) -> Account:
    balance, held = conn.execute(
        "SELECT balance_cents, held_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()
    realized_all = 0
    today: dict[str, tuple[int, int, int, int, int]] = {}
    for symbol, *figures in conn.execute(
        "SELECT symbol,"
        " coalesce(sum(quantity) FILTER (WHERE side = 'buy'), 0),"
        " coalesce(sum(price_cents * quantity) FILTER (WHERE side = 'buy'), 0),"
        " coalesce(sum(quantity) FILTER (WHERE side = 'sell'), 0),"
        " coalesce(sum(price_cents * quantity) FILTER (WHERE side = 'sell'), 0),"
        " coalesce(sum(realized_pnl_cents), 0)"
        " FROM fills WHERE user_id = ? AND created_at >= ? GROUP BY symbol",
        (user_id, day_start_ms),
    ):
        today[symbol] = tuple(figures)
    rows = []
    for symbol, quantity, held_q, cost, realized in conn.execute(
        "SELECT symbol, quantity, held_quantity, cost_cents, realized_pnl_cents FROM holdings"
        " WHERE user_id = ? ORDER BY symbol",
        (user_id,),
    ):
        realized_all += realized
        t = today.get(symbol)
        if quantity > 0 or t is not None:
            rows.append(
                PositionRow(symbol, quantity, held_q, cost, realized, *(t or (0, 0, 0, 0, 0)))
            )
    return Account(balance, held, realized_all, rows)


def value(rows: list[PositionRow], market: Market) -> list[Position]:
    """Mark each row at the market's last price (trio thread)."""
    out = []
    for row in rows:
        inst = market.instruments.get(row.symbol)
        if inst is None:  # delisted from this server's universe: marked at cost
            price = row.cost // row.quantity if row.quantity else 0
            out.append(Position(row, row.symbol, price, price))
            continue
        stats = market.stats[row.symbol]
        out.append(Position(row, inst.name, stats.current, stats.previous_close))
    return out


def holding_json(p: Position) -> dict[str, Any]:
    r = p.row
    return {
        "symbol": r.symbol,
        "name": p.name,
        "quantity": r.quantity,
        "available_quantity": r.quantity - r.held,
        "avg_price": round(r.cost / r.quantity / 100, 4) if r.quantity else 0.0,
        "current_price": kes(p.price),
        "previous_close": kes(p.previous_close),
        "market_value": kes(p.value),
        "cost_basis": kes(r.cost),
        "unrealized_pnl": kes(p.unrealized),
        "pnl_percent": round(p.unrealized * 100 / r.cost, 2) if r.cost else 0.0,
        "day_pnl": kes(p.day_pnl),
        "realized_pnl": kes(r.realized),
    }


def holdings(positions: list[Position]) -> list[dict[str, Any]]:
    return [holding_json(p) for p in positions if p.row.quantity > 0]


def summary(account: Account, positions: list[Position]) -> dict[str, Any]:
    balance, held = account.balance, account.held
    open_ = [p for p in positions if p.row.quantity > 0]
    value_cents = sum(p.value for p in open_)
    return {
        "wallet": {"balance": kes(balance), "available": kes(balance - held), "held": kes(held)},
        "holdings": [holding_json(p) for p in open_],
        "closed_today": [
            {"symbol": p.row.symbol, "name": p.name, "realized_pnl": kes(p.row.realized_today)}
            for p in positions
            if p.row.quantity == 0
        ],
        "summary": {
            "total_cash": kes(balance),
            "total_holdings_value": kes(value_cents),
            "total_portfolio_value": kes(balance + value_cents),
            "total_unrealized_pnl": kes(sum(p.unrealized for p in open_)),
            "total_realized_pnl": kes(account.realized),
            "today_realized_pnl": kes(sum(p.row.realized_today for p in positions)),
            "today_pnl": kes(sum(p.day_pnl for p in positions)),
            "holdings_count": len(open_),
        },
    }
