"""The outbox: the user's events, written in the transaction that made the change, for the private
stream's relay to deliver (marketsrv/private).

One row holds one user's events of one write, numbered `first_seq` to `last_seq` in that user's
sequence; `events` holds each as one line of JSON, `[type, facts]`. The facts are the few values
the event is made of (an order's columns and fills, a wallet's two sums), not its JSON: the
events are turned into frames only when someone reads them (trading/events.py `render`), and the
order path writes two transactions of about five events each, where every byte written costs.

The writer is serial, so the numbers have no gaps: a client that resumes after N gets N+1... The
numbers come from a counter on the user, so pruning old rows never restarts them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

Event = tuple[str, Any]  # (type, facts)


def append(conn: sqlite3.Connection, user_id: int, events: list[Event], now: int) -> int:
    """Number `events` in the user's sequence and write them as one row; the last number."""
    # The user's counter, not max(last_seq): the outbox is pruned, the numbers must go on.
    last: int = conn.execute(
        "UPDATE users SET event_seq = event_seq + ? WHERE id = ? RETURNING event_seq",
        (len(events), user_id),
    ).fetchone()[0]
    lines = b"\n".join(orjson.dumps(event) for event in events)  # JSON never holds a raw newline
    conn.execute(
        "INSERT INTO outbox (user_id, first_seq, last_seq, events, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, last - len(events) + 1, last, lines, now),
    )
    return last
