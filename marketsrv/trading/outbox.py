"""The outbox: a row for every change a user should hear of, written in the change's own
transaction with a unique key, for a relay to publish (the private user stream)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson


def outbox(
    conn: sqlite3.Connection, key: str, topic: str, user_id: int, payload: Any, now: int
) -> None:
    """A row for the relay to publish, written in the caller's transaction; `key` is unique."""
    conn.execute(
        "INSERT INTO outbox (key, topic, user_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        (key, topic, user_id, orjson.dumps(payload).decode(), now),
    )
