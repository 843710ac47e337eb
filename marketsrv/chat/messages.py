"""The chat's SQL: each function runs on a storage connection (the writer's for changes).

A thread is the one conversation of a pair of users (`user_low < user_high`); a message has a
sender and a receiver; `chat_reads` keeps how far each user has read each thread, so a user's
unread messages are those sent to them after it. Texts are stored as sent and returned as JSON
strings: nothing here (or in the page) ever reads them as HTML.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from marketsrv.errors import BadRequest, Forbidden, NotFound
from marketsrv.units import iso_ms

MAX_TEXT_CHARS = 2000  # a message's text
MAX_DATA_BYTES = 4096  # its `data`, as UTF-8 JSON
MAX_DATA_DEPTH = 16  # arrays and objects within each other in `data`
MAX_ID = 2**63 - 1  # SQLite's integers
PAGE = 50  # messages a page, by default (at most 100)


def user_named(conn: sqlite3.Connection, who: object) -> tuple[int, str]:
    """(id, username) of a user given by id (a number, or a string of digits) or username.

    A string of digits is an id first: a user who registers the name "100" must not receive
    what is meant for user 100 (they are reached by their own id then)."""
    row = None
    if isinstance(who, str) and who.isascii() and who.isdigit() and len(who) < 19:
        row = conn.execute("SELECT id, username FROM users WHERE id = ?", (int(who),)).fetchone()
    if row is None and isinstance(who, int) and not isinstance(who, bool) and 0 < who <= MAX_ID:
        row = conn.execute("SELECT id, username FROM users WHERE id = ?", (who,)).fetchone()
    elif row is None and isinstance(who, str) and who:
        row = conn.execute("SELECT id, username FROM users WHERE username = ?", (who,)).fetchone()
    if row is None or row[0] == 0:  # 0: the archive of reset accounts, nobody to talk to
        raise NotFound("unknown_user", "no such user")
    return int(row[0]), str(row[1])


def thread_of(conn: sqlite3.Connection, a: int, b: int, now: int) -> int:
    """The id of the pair's thread, made on first use; a user has no thread with themselves."""
    if a == b:
        raise BadRequest("invalid_receiver", "you cannot open a conversation with yourself")
    low, high = min(a, b), max(a, b)
    conn.execute(
        "INSERT INTO chat_threads (user_low, user_high, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (user_low, user_high) DO NOTHING",
        (low, high, now),
    )
    return int(conn.execute(
        "SELECT id FROM chat_threads WHERE user_low = ? AND user_high = ?", (low, high)
    ).fetchone()[0])  # fmt: skip


def check(text: object, data: object) -> tuple[str, str | None]:
    """A message's text and encoded data, or the reason it is refused."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("invalid_text", "text must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise BadRequest("text_too_long", f"text must be at most {MAX_TEXT_CHARS} characters")
    encoded = None
    if data is not None:
        if _depth(data) > MAX_DATA_DEPTH:
            raise BadRequest("invalid_data", f"data nests at most {MAX_DATA_DEPTH} levels deep")
        raw = orjson.dumps(data)
        if len(raw) > MAX_DATA_BYTES:
            raise BadRequest(
                "data_too_large", f"data must be at most {MAX_DATA_BYTES} bytes of JSON"
            )
        encoded = raw.decode()
    return text, encoded


def _depth(value: object, depth: int = 0) -> int:
    """How deep arrays and objects nest in `value` (stops counting past the limit)."""
    if depth > MAX_DATA_DEPTH:
        return depth
    if isinstance(value, list):
        return max((_depth(v, depth + 1) for v in value), default=depth + 1)
    if isinstance(value, dict):
        return max((_depth(v, depth + 1) for v in value.values()), default=depth + 1)
    return depth


def send(
    conn: sqlite3.Connection, sender: int, to: object, text: str, data: str | None, now: int
) -> dict[str, Any]:
    """Store a message from `sender` to the user `to` names; the message as it is sent out."""
    receiver, _ = user_named(conn, to)
    if receiver == sender:
        raise BadRequest("invalid_receiver", "you cannot send a message to yourself")
    if conn.execute(
        "SELECT 1 FROM chat_blocks WHERE user_id = ? AND blocked_id = ?", (receiver, sender)
    ).fetchone():
        raise Forbidden("blocked", "this user does not accept your messages")
    thread = thread_of(conn, sender, receiver, now)
    cur = conn.execute(
        "INSERT INTO chat_messages (thread_id, sender_id, receiver_id, text, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (thread, sender, receiver, text, data, now),
    )
    conn.execute(  # what one sends, one has read
        "INSERT INTO chat_reads (user_id, thread_id, last_read_id) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, thread_id) DO UPDATE SET last_read_id = excluded.last_read_id",
        (sender, thread, cur.lastrowid),
    )
    return message(conn, int(cur.lastrowid or 0))


_MESSAGE = (
    "SELECT m.id, m.thread_id, m.sender_id, s.username, m.receiver_id, r.username, m.text,"
    " m.data, m.created_at FROM chat_messages m JOIN users s ON s.id = m.sender_id"
    " JOIN users r ON r.id = m.receiver_id"
)


def _json(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    mid, thread, sender, sender_name, receiver, receiver_name, text, data, at = tuple(row)
    return {
        "id": mid, "thread": thread, "sender": sender, "sender_username": sender_name,
        "receiver": receiver, "receiver_username": receiver_name, "text": text,
        "data": orjson.loads(data) if data is not None else None, "created_at": iso_ms(at),
    }  # fmt: skip


def message(conn: sqlite3.Connection, message_id: int) -> dict[str, Any]:
    return _json(conn.execute(f"{_MESSAGE} WHERE m.id = ?", (message_id,)).fetchone())


def conversation(
    conn: sqlite3.Connection,
    me: int,
    other: object,
    before: int | None,
    after: int | None,
    limit: int,
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """(the other user, the pair's messages newest first, more older ones?) with cursors:
    `before`/`after` a message id (only older / only newer ones)."""
    other_id, other_name = user_named(conn, other)
    low, high = min(me, other_id), max(me, other_id)
    where, args = ["t.user_low = ? AND t.user_high = ?"], [low, high]
    if before is not None:
        where.append("m.id < ?")
        args.append(before)
    if after is not None:
        where.append("m.id > ?")
        args.append(after)
    rows = conn.execute(
        f"{_MESSAGE} JOIN chat_threads t ON t.id = m.thread_id WHERE {' AND '.join(where)}"
        " ORDER BY m.id DESC LIMIT ?",
        [*args, limit + 1],
    ).fetchall()
    return (
        {"id": other_id, "username": other_name},
        [_json(r) for r in rows[:limit]],
        len(rows) > limit,
    )


def mark_read(conn: sqlite3.Connection, me: int, other: object, until: int | None) -> int:
    """What the other user sent me is read: all of it, or up to message `until` (the last one
    a client showed, so that one arriving meanwhile stays unread); the id read up to."""
    other_id, _ = user_named(conn, other)
    found = conn.execute(
        "SELECT id FROM chat_threads WHERE user_low = ? AND user_high = ?",
        (min(me, other_id), max(me, other_id)),
    ).fetchone()
    if found is None:  # no conversation: nothing to read (and none is made)
        return 0
    thread = found[0]
    last = conn.execute(
        "SELECT coalesce(max(id), 0) FROM chat_messages WHERE thread_id = ?", (thread,)
    ).fetchone()[0]
    if until is not None:
        last = max(0, min(last, until))
    conn.execute(
        "INSERT INTO chat_reads (user_id, thread_id, last_read_id) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, thread_id) DO UPDATE SET last_read_id = max(last_read_id,"
        " excluded.last_read_id)",
        (me, thread, last),
    )
    return int(last)


def threads(conn: sqlite3.Connection, me: int, only: int | None = None) -> list[dict[str, Any]]:
    """My threads, the latest message first, each with the other user, its last message and
    my unread count; a thread shows once it has a message (opening one is no way into another
    user's list). `only`: that thread of mine alone, empty or not."""
    rows = conn.execute(
        "SELECT t.id, t.created_at, CASE WHEN t.user_low = ? THEN t.user_high ELSE t.user_low END,"
        " (SELECT max(id) FROM chat_messages WHERE thread_id = t.id),"
        " (SELECT count(*) FROM chat_messages m WHERE m.thread_id = t.id AND m.receiver_id = ?"
        "  AND m.id > coalesce((SELECT last_read_id FROM chat_reads WHERE user_id = ?"
        "  AND thread_id = t.id), 0))"
        " FROM chat_threads t WHERE (t.user_low = ? OR t.user_high = ?) AND (t.id = ? OR"
        " (? IS NULL AND EXISTS (SELECT 1 FROM chat_messages WHERE thread_id = t.id)))",
        (me, me, me, me, me, only, only),
    ).fetchall()
    out = []
    for thread, created, other, last, unread in rows:
        name = conn.execute("SELECT username FROM users WHERE id = ?", (other,)).fetchone()[0]
        out.append({
            "id": thread, "with": {"id": other, "username": name}, "unread": unread,
            "last_message": message(conn, last) if last is not None else None,
            "created_at": iso_ms(created),
        })  # fmt: skip
    out.sort(key=lambda t: (t["last_message"] or {}).get("id", 0), reverse=True)
    return out


def unread(conn: sqlite3.Connection, me: int) -> dict[str, Any]:
    """`{"total": n, "threads": [{"thread", "with", "unread"}]}`: only threads with unread ones."""
    found = [
        {"thread": t["id"], "with": t["with"], "unread": t["unread"]}
        for t in threads(conn, me)
        if t["unread"]
    ]
    return {"total": sum(t["unread"] for t in found), "threads": found}


def block(conn: sqlite3.Connection, me: int, other: object, now: int, on: bool) -> dict[str, Any]:
    other_id, name = user_named(conn, other)
    if other_id == me:
        raise BadRequest("invalid_receiver", "you cannot block yourself")
    if on:
        conn.execute(
            "INSERT INTO chat_blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (me, other_id, now),
        )
    else:
        conn.execute("DELETE FROM chat_blocks WHERE user_id = ? AND blocked_id = ?", (me, other_id))
    return {"user": {"id": other_id, "username": name}, "blocked": on}


def blocked(conn: sqlite3.Connection, me: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "username": n}
        for i, n in conn.execute(
            "SELECT u.id, u.username FROM chat_blocks b JOIN users u ON u.id = b.blocked_id"
            " WHERE b.user_id = ? ORDER BY u.username",
            (me,),
        )
    ]
