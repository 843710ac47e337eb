"""Orders and fills as the API shows them: the read queries and their JSON, in one place.

Run on reader connections (or inside a write transaction, to answer with what it wrote). Money
leaves here as JSON numbers of KES, times as ISO 8601 strings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from marketsrv.errors import NotFound
from marketsrv.units import iso_ms, iso_or_none

OPEN = ("pending", "partially_filled")  # the statuses of an order that rests
Record = sqlite3.Row | Mapping[str, Any]  # a row by column name


def order_row(conn: sqlite3.Connection, order_id: int) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM orders WHERE id = ?", (order_id,)
    ).fetchone()
    if row is None:
        raise NotFound("order_not_found", "no such order")
    return row


def order_view(
    conn: sqlite3.Connection, order_id: int, user_id: int | None = None
) -> dict[str, Any]:
    """An order with its fills as JSON; a 404 if `user_id` is given and is not its owner."""
    row = order_row(conn, order_id)
    if user_id is not None and row["user_id"] != user_id:
        raise NotFound("order_not_found", "no such order")
    fills = conn.execute(
        "SELECT * FROM fills WHERE order_id = ? ORDER BY id", (order_id,)
    ).fetchall()
    return order_json(row, fills)


_NOTES = {
    "pending": "Order placed: resting in the book",
    "partially_filled": "Order partially filled: the rest is resting in the book",
    "executed": "Order executed",
}


def order_json(row: Record, fills: Sequence[Record]) -> dict[str, Any]:
    """`row`: the order's columns (a row of `orders`, or its facts in the outbox, events.py)."""
    filled = row["filled_quantity"]
    average = round(row["filled_cents"] / filled / 100, 2) if filled else None
    price = row["price_cents"] / 100 if row["price_cents"] is not None else average
    pnl = sum(f["realized_pnl_cents"] for f in fills)
    return {
        "id": row["id"], "order_id": row["id"], "client_order_id": row["client_order_id"],
        "symbol": row["symbol"], "stock_symbol": row["symbol"], "side": row["side"],
        "order_type": row["order_type"], "time_in_force": row["time_in_force"],
        "price": price, "quantity": row["quantity"], "filled_quantity": filled,
        "remaining_quantity": row["quantity"] - filled if row["status"] in OPEN else 0,
        "average_price": average, "amount": round((price or 0.0) * row["quantity"], 2),
        "status": row["status"], "note": row["note"] or _NOTES.get(row["status"], ""),
        "profit_loss": pnl / 100,
        "created_at": iso_or_none(row["created_at"]), "updated_at": iso_or_none(row["updated_at"]),
        "executed_at": iso_ms(fills[-1]["created_at"]) if fills else None,
        "fills": [
            {"id": f["id"], "price": f["price_cents"] / 100, "quantity": f["quantity"],
             "realized_pnl": f["realized_pnl_cents"] / 100, "trade_id": f["trade_id"],
             "created_at": iso_ms(f["created_at"])}
            for f in fills
        ],
    }  # fmt: skip


def orders_page(
    conn: sqlite3.Connection,
    uid: int,
    status: str | None,
    symbol: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    where, args = ["user_id = ?"], list[object]([uid])
    if status:
        where.append("status = ?")
        args.append(status)
    if symbol:
        where.append("symbol = ?")
        args.append(symbol.upper())
    clause = " AND ".join(where)
    total = conn.execute(f"SELECT count(*) FROM orders WHERE {clause}", args).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM orders WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*args, limit, offset],
    ).fetchall()
    out = []
    for row in rows:
        fills = conn.execute(
            "SELECT * FROM fills WHERE order_id = ? ORDER BY id", (row["id"],)
        ).fetchall()
        out.append(order_json(row, fills))
    return out, total


def fills_page(
    conn: sqlite3.Connection, uid: int, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A user's fills, newest first: (one page, the total count)."""
    total = conn.execute("SELECT count(*) FROM fills WHERE user_id = ?", (uid,)).fetchone()[0]
    rows = conn.execute(
        "SELECT * FROM fills WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        (uid, limit, offset),
    ).fetchall()
    return [
        {"id": r["id"], "order_id": r["order_id"], "symbol": r["symbol"], "side": r["side"],
         "price": r["price_cents"] / 100, "quantity": r["quantity"],
         "amount": r["price_cents"] * r["quantity"] / 100,
         "realized_pnl": r["realized_pnl_cents"] / 100, "trade_id": r["trade_id"],
         "created_at": iso_ms(r["created_at"])}
        for r in rows
    ], total  # fmt: skip
