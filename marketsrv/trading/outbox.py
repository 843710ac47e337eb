"""The outbox: a row for every change a user should hear of, written in the change's own
transaction with a unique key, for the private stream's relay to deliver (marketsrv/private).

Each row is one event of the user's stream: `topic` is its type (`order.filled`, `fill`,
`wallet`, ...) and `user_seq` its number in that user's sequence, one more than the user's last
(the writer is serial, so the numbers have no gaps: a client that resumes after N gets N+1...).
The number comes from a counter on the user, so pruning old rows never restarts it. Keys are
made from the number (`topic:user:seq`): ids of rows a reset archived can never collide.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson


def outbox(conn: sqlite3.Connection, topic: str, user_id: int, payload: Any, now: int) -> int:
    """A row for the relay to publish, written in the caller's transaction; its user_seq."""
    # The user's counter, not max(user_seq): the outbox is pruned, the numbers must go on.
    conn.execute("UPDATE users SET event_seq = event_seq + 1 WHERE id = ?", (user_id,))
    seq: int = conn.execute("SELECT event_seq FROM users WHERE id = ?", (user_id,)).fetchone()[0]
    conn.execute(
        "INSERT INTO outbox (key, topic, user_id, payload, created_at, user_seq)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (f"{topic}:{user_id}:{seq}", topic, user_id, orjson.dumps(payload).decode(), now, seq),
    )  # fmt: skip
    return seq
