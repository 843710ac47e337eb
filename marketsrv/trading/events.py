"""The user's events, as the private stream (`/ws/user/`) carries them: each a row of the outbox,
written in the transaction that made the change, in the shapes the REST API answers with.

    order.accepted | order.partially_filled | order.filled | order.cancelled | order.rejected
        the order, as GET /api/trading/orders/<id>/ shows it
    fill       one fill of one of the user's orders
    wallet     the wallet after the change: balance, available, held
    holding    one symbol's holding after the change (quantity 0 once sold out)
"""

from __future__ import annotations

import sqlite3
from typing import Any

from marketsrv.trading.outbox import outbox
from marketsrv.trading.views import order_json, order_row
from marketsrv.units import kes

ORDER_EVENTS = {
    "pending": "order.accepted",
    "partially_filled": "order.partially_filled",
    "executed": "order.filled",
    "cancelled": "order.cancelled",
    "failed": "order.rejected",
}


def order_changed(conn: sqlite3.Connection, order_id: int, now: int, fills: bool = True) -> None:
    """The order as it is now (`fills=False`: a new order, which has none yet)."""
    row = order_row(conn, order_id)
    found = (
        conn.execute("SELECT * FROM fills WHERE order_id = ? ORDER BY id", (order_id,)).fetchall()
        if fills
        else []
    )
    body = order_json(row, found)
    outbox(conn, ORDER_EVENTS[row["status"]], row["user_id"], body, now)


def wallet_changed(conn: sqlite3.Connection, user_id: int, now: int) -> None:
    balance, held = conn.execute(
        "SELECT balance_cents, held_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()
    figures = {"balance": kes(balance), "available": kes(balance - held), "held": kes(held)}
    outbox(conn, "wallet", user_id, figures, now)


def holding_changed(conn: sqlite3.Connection, user_id: int, symbol: str, now: int) -> None:
    row = conn.execute(
        "SELECT quantity, held_quantity, cost_cents, realized_pnl_cents FROM holdings"
        " WHERE user_id = ? AND symbol = ?",
        (user_id, symbol),
    ).fetchone()
    quantity, held, cost, realized = row if row is not None else (0, 0, 0, 0)
    body: dict[str, Any] = {
        "symbol": symbol,
        "quantity": quantity,
        "available_quantity": quantity - held,
        "cost_basis": kes(cost),
        "avg_price": round(cost / quantity / 100, 4) if quantity else 0.0,
        "realized_pnl": kes(realized),
    }
    outbox(conn, "holding", user_id, body, now)


def account_changed(conn: sqlite3.Connection, user_id: int, symbol: str, now: int) -> None:
    """The wallet and the symbol's holding after a change to either."""
    wallet_changed(conn, user_id, now)
    holding_changed(conn, user_id, symbol, now)
