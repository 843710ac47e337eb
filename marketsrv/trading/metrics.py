"""Trading metrics, with written definitions (docs/protocol.md and the OpenAPI say the same).

- A **trade** is a closing order: a sell order that filled (however many fills it took). Its P&L
  is the realized P&L of its fills. It **wins** above zero, **loses** below; a break-even trade
  (exactly zero) counts in `total_trades` and `break_even_trades` only, so
  total = winning + losing + break-even, and the win rate is winning / total.
- Profit factor: the sum of winning trades' P&L over the loss of the losing ones (null without a
  loss). Averages and extremes are over winning or losing trades.
- Periods follow the market's calendar: `today` is the current trading day (from its start:
  midnight on `always`, the pre-open on `nse`), `week` the calendar week (from Monday 00:00),
  `month` the calendar month (from the 1st, 00:00), local time of the market. Their `pnl` is the
  P&L realized in the period and `trades` the closing orders with a fill in it; `return_percent`
  is the account's time-weighted return over the period (equity.py), cash flows left out.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

from marketsrv.market.calendar import Calendar, week_start
from marketsrv.trading import equity
from marketsrv.units import kes

PERIODS = ("today", "week", "month")


def period_starts(calendar: Calendar, day: date) -> dict[str, int]:
    return {
        "today": calendar.day_start_ms(day),
        "week": calendar.day_ms(week_start(day)),
        "month": calendar.day_ms(day.replace(day=1)),
    }


def closing_trades(conn: sqlite3.Connection, user_id: int, since: int = 0) -> list[int]:
    """Realized P&L (cents) of each sell order with a fill at or after `since`, oldest first."""
    return [
        pnl
        for (pnl,) in conn.execute(
            "SELECT sum(realized_pnl_cents) FROM fills WHERE user_id = ? AND side = 'sell'"
            " AND created_at >= ? GROUP BY order_id ORDER BY min(id)",
            (user_id, since),
        )
    ]


def statistics(pnls: list[int], fills: int) -> dict[str, Any]:
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    total = len(pnls)
    return {
        "total_trades": total,
        "winning_trades": len(wins),
        "losing_trades": len(losses),
        "break_even_trades": total - len(wins) - len(losses),
        "closing_trades": total,
        "total_fills": fills,
        "win_rate": round(len(wins) * 100 / total, 1) if total else 0.0,
        "average_win": kes(_mean(wins)) if wins else 0.0,
        "average_loss": kes(_mean(losses)) if losses else 0.0,
        "largest_win": kes(max(wins)) if wins else 0.0,
        "largest_loss": kes(min(losses)) if losses else 0.0,
        "profit_factor": round(sum(wins) / -sum(losses), 4) if losses else None,
    }


def _mean(values: list[int]) -> int:
    """The mean in whole cents, half away from zero."""
    total, n = sum(values), len(values)
    q, rem = divmod(abs(total), n)
    q += 2 * rem >= n
    return q if total >= 0 else -q


def metrics(
    conn: sqlite3.Connection,
    user_id: int,
    recent: list[dict[str, Any]],
    starts: dict[str, int],
    now: tuple[int, dict[str, int]],
) -> dict[str, Any]:
    """`now`: the time and the marks (taken on the trio thread); the rest is read here."""
    balance = conn.execute(
        "SELECT balance_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()[0]
    realized, active = conn.execute(
        "SELECT coalesce(sum(realized_pnl_cents), 0), count(*) FILTER (WHERE quantity > 0)"
        " FROM holdings WHERE user_id = ?",
        (user_id,),
    ).fetchone()
    fills = conn.execute("SELECT count(*) FROM fills WHERE user_id = ?", (user_id,)).fetchone()[0]
    performance: dict[str, Any] = {}
    for name in PERIODS:
        since = starts[name]
        pnls = closing_trades(conn, user_id, since)
        span = _with_now(conn, user_id, equity.history(conn, user_id, since), now)
        performance[name] = {
            "pnl": kes(sum(pnls)),
            "trades": len(pnls),
            "return_percent": round(span.returns[-1] * 100, 4) if span.points else 0.0,
        }
    whole = _with_now(conn, user_id, equity.history(conn, user_id, 0), now)
    stats = statistics(closing_trades(conn, user_id), fills)
    stats["max_drawdown_percent"] = round(whole.max_drawdown * 100, 4)
    stats["time_weighted_return_percent"] = (
        round(whole.returns[-1] * 100, 4) if whole.points else 0.0
    )
    return {
        "account_summary": {
            "cash_balance": kes(balance),
            "total_realized_pnl": kes(realized),
            "active_holdings": active,
        },
        "trading_statistics": stats,
        "performance": performance,
        "recent_orders": recent,
    }


def _with_now(
    conn: sqlite3.Connection,
    user_id: int,
    points: list[equity.Point],
    now: tuple[int, dict[str, int]],
) -> equity.Series:
    """The recorded points and the account as it is now, as one series."""
    at, prices = now
    return equity.series(equity.now_point(conn, user_id, prices, at, points))
