"""Holdings valued at live prices, the portfolio summary and the trading metrics.

Read-only SQL plus the market's current prices; every figure in cents until rendered.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from marketsrv.market import Market
from marketsrv.units import DAY_MS, kes


def holdings(conn: sqlite3.Connection, market: Market, user_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT symbol, quantity, held_quantity, cost_cents, realized_pnl_cents FROM holdings"
        " WHERE user_id = ? AND quantity > 0 ORDER BY symbol",
        (user_id,),
    ).fetchall()
    out = []
    for symbol, quantity, held, cost, realized in rows:
        inst = market.instruments.get(symbol)
        current_cents = market.stats[symbol].current if inst else cost // quantity
        value = current_cents * quantity
        unrealized = value - cost
        out.append({
            "symbol": symbol,
            "name": inst.name if inst else symbol,
            "quantity": quantity,
            "available_quantity": quantity - held,
            "avg_price": round(cost / quantity / 100, 2),
            "current_price": kes(current_cents),
            "market_value": kes(value),
            "cost_basis": kes(cost),
            "unrealized_pnl": kes(unrealized),
            "pnl_percent": round(unrealized * 100 / cost, 2) if cost else 0.0,
            "realized_pnl": kes(realized),
        })  # fmt: skip
    return out


def summary(conn: sqlite3.Connection, market: Market, user_id: int) -> dict[str, Any]:
    balance, held = conn.execute(
        "SELECT balance_cents, held_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()
    items = holdings(conn, market, user_id)
    value_cents = sum(round(h["market_value"] * 100) for h in items)
    unrealized_cents = sum(round(h["unrealized_pnl"] * 100) for h in items)
    since = market.clock() - DAY_MS
    today_realized = conn.execute(
        "SELECT coalesce(sum(realized_pnl_cents), 0) FROM fills WHERE user_id = ? AND created_at >= ?",
        (user_id, since),
    ).fetchone()[0]
    return {
        "wallet": {"balance": kes(balance), "available": kes(balance - held), "held": kes(held)},
        "holdings": items,
        "summary": {
            "total_cash": kes(balance),
            "total_holdings_value": kes(value_cents),
            "total_portfolio_value": kes(balance + value_cents),
            "total_unrealized_pnl": kes(unrealized_cents),
            "today_pnl": kes(today_realized),
            "holdings_count": len(items),
        },
    }


def _period(conn: sqlite3.Connection, user_id: int, since: int) -> dict[str, Any]:
    pnl, trades = conn.execute(
        "SELECT coalesce(sum(realized_pnl_cents), 0), count(*) FROM fills"
        " WHERE user_id = ? AND created_at >= ?",
        (user_id, since),
    ).fetchone()
    return {"pnl": kes(pnl), "trades": trades}


def metrics(
    conn: sqlite3.Connection, user_id: int, recent: list[dict[str, Any]], now: int
) -> dict[str, Any]:
    balance = conn.execute(
        "SELECT balance_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()[0]
    realized, active = conn.execute(
        "SELECT coalesce(sum(realized_pnl_cents), 0), count(*) FILTER (WHERE quantity > 0)"
        " FROM holdings WHERE user_id = ?",
        (user_id,),
    ).fetchone()
    total, wins, losses = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE realized_pnl_cents > 0),"
        " count(*) FILTER (WHERE realized_pnl_cents < 0) FROM fills"
        " WHERE user_id = ? AND side = 'sell'",
        (user_id,),
    ).fetchone()
    all_fills = conn.execute("SELECT count(*) FROM fills WHERE user_id = ?", (user_id,)).fetchone()[
        0
    ]
    return {
        "account_summary": {
            "cash_balance": kes(balance),
            "total_realized_pnl": kes(realized),
            "active_holdings": active,
        },
        "trading_statistics": {
            "total_trades": all_fills,
            "closing_trades": total,
            "winning_trades": wins,
            "losing_trades": losses,
            "win_rate": round(wins * 100 / total, 1) if total else 0.0,
        },
        "performance": {
            "today": _period(conn, user_id, now - DAY_MS),
            "week": _period(conn, user_id, now - 7 * DAY_MS),
            "month": _period(conn, user_id, now - 30 * DAY_MS),
        },
        "recent_orders": recent,
    }
