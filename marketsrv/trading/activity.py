"""The account's activity in one list, and the paper account's reset.

Activity: fills, deposits, withdrawals, orders cancelled or rejected, and resets, newest first,
each in one shape: `{"id", "type", "timestamp", "at", "symbol", "side", "quantity", "price",
"amount", "order_id", "description"}` where `amount` is the cash it moved (negative out; null for
a cancellation) and `id` is unique within the list (`fill:12`, `deposit:3`, `order:7`, ...).

Reset: cancels the open orders (their holds released, `order.cancelled` events), then clears the
holdings, orders, fills, ledger and equity history (orders, fills and ledger rows are archived,
so their ids are never reused), and sets the cash to the chosen amount (one deposit), recording
the reset itself, which stays in the activity. The user's event numbers go on (the outbox is kept):
a private stream sees `account.reset` and the new wallet.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from marketsrv.trading.events import UserEvents
from marketsrv.trading.settlement import close_order
from marketsrv.trading.wallet import post_ledger
from marketsrv.units import iso_ms, kes

TYPES = ("fill", "deposit", "withdrawal", "order_cancelled", "order_rejected", "reset")

# One SELECT per type, in the common shape: id, type, ms, symbol, side, quantity, price, amount,
# order id, description.
_PARTS = {
    "fill": "SELECT 'fill:' || f.id, 'fill', f.created_at, f.symbol, f.side, f.quantity,"
    " f.price_cents, CASE f.side WHEN 'buy' THEN -f.price_cents * f.quantity"
    " ELSE f.price_cents * f.quantity END, f.order_id,"
    " upper(substr(f.side, 1, 1)) || substr(f.side, 2) || ' ' || f.quantity || ' ' || f.symbol"
    " FROM fills f WHERE f.user_id = :user",
    "deposit": "SELECT 'deposit:' || id, 'deposit', created_at, NULL, NULL, NULL, NULL,"
    " amount_cents, NULL, 'Deposit' FROM ledger WHERE user_id = :user AND kind = 'deposit'",
    "withdrawal": "SELECT 'withdrawal:' || id, 'withdrawal', created_at, NULL, NULL, NULL, NULL,"
    " amount_cents, NULL, 'Withdrawal' FROM ledger WHERE user_id = :user AND kind = 'withdrawal'",
    "order_cancelled": "SELECT 'order:' || id, 'order_cancelled', updated_at, symbol, side,"
    " quantity - filled_quantity, price_cents, NULL, id, note FROM orders"
    " WHERE user_id = :user AND status = 'cancelled'",
    "order_rejected": "SELECT 'order:' || id, 'order_rejected', updated_at, symbol, side,"
    " quantity - filled_quantity, price_cents, NULL, id, note FROM orders"
    " WHERE user_id = :user AND status = 'failed'",
    "reset": "SELECT 'reset:' || id, 'reset', created_at, NULL, NULL, NULL, NULL, cash_cents,"
    " NULL, 'Account reset' FROM account_resets WHERE user_id = :user",
}


def activities(
    conn: sqlite3.Connection, user_id: int, types: list[str], start: int, end: int,
    limit: int, offset: int,
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """A page of the activity of `types` between `start` and `end` (ms), newest first; total."""
    union = " UNION ALL ".join(_PARTS[t] for t in dict.fromkeys(types))
    where = "WHERE ts >= :start AND ts < :end"
    params = {"user": user_id, "start": start, "end": end}
    cols = "(id, type, ts, symbol, side, quantity, price, amount, order_id, description)"
    base = f"WITH a{cols} AS ({union}) SELECT * FROM a {where}"
    total = conn.execute(f"SELECT count(*) FROM ({base})", params).fetchone()[0]
    rows = conn.execute(
        f"{base} ORDER BY ts DESC, id DESC LIMIT :limit OFFSET :offset",
        {**params, "limit": limit, "offset": offset},
    ).fetchall()
    return [_activity(r) for r in rows], total


def _activity(r: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0], "type": r[1], "timestamp": r[2], "at": iso_ms(r[2]), "symbol": r[3],
        "side": r[4], "quantity": r[5], "price": kes(r[6]) if r[6] is not None else None,
        "amount": kes(r[7]) if r[7] is not None else None, "order_id": r[8],
        "description": r[9] or "",
    }  # fmt: skip


def open_order_ids(conn: sqlite3.Connection, user_id: int) -> list[tuple[int, str]]:
    return conn.execute(
        "SELECT id, symbol FROM orders WHERE user_id = ? AND status IN"
        " ('pending', 'partially_filled')",
        (user_id,),
    ).fetchall()


def reset(
    conn: sqlite3.Connection, out: UserEvents, user_id: int, cash_cents: int, now: int
) -> None:
    """Clear the account and set its cash (the caller took the open orders out of the books).

    Orders, fills and ledger rows move to the archive user (id 0), not away: SQLite would give
    their ids again, and clients (and the outbox) have seen them."""
    note = "cancelled: the account was reset"
    for (order_id,) in conn.execute(
        "SELECT id FROM orders WHERE user_id = ? AND status IN ('pending', 'partially_filled')",
        (user_id,),
    ).fetchall():
        close_order(conn, out, order_id, "cancelled", note, now)  # its event, its hold released
    out.write(conn)  # the cancelled orders as they are, before they move to the archive
    symbols = [
        s for (s,) in conn.execute("SELECT symbol FROM holdings WHERE user_id = ?", (user_id,))
    ]
    conn.execute(
        "UPDATE orders SET user_id = 0, client_order_id = NULL WHERE user_id = ?", (user_id,)
    )
    for table in ("fills", "ledger"):
        conn.execute(f"UPDATE {table} SET user_id = 0 WHERE user_id = ?", (user_id,))
    for table in ("holdings", "equity_history"):
        conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
    conn.execute(
        "UPDATE wallets SET balance_cents = 0, held_cents = 0 WHERE user_id = ?", (user_id,)
    )
    if cash_cents:
        post_ledger(conn, user_id, "deposit", cash_cents, now)
    cur = conn.execute(
        "INSERT INTO account_resets (user_id, cash_cents, created_at) VALUES (?, ?, ?)",
        (user_id, cash_cents, now),
    )
    out.reset(user_id, int(cur.lastrowid or 0), cash_cents)
    out.wallet(user_id)
    for symbol in symbols:
        out.holding(user_id, symbol)
