"""The relay of users' events: from the outbox to each user's open sockets, in order, exactly once.

Every change to a user's orders, fills, cash or holdings writes its events to the outbox in its
own transaction (trading/events.py), each numbered in the user's sequence (`seq`, no gaps), one
row per user and write holding their frames as sent. The storage writer calls `on_commit` after
each commit; the relay then reads the new rows (in a thread) and offers each event to its user's
sockets. A socket keeps its position, the last number it
was sent: it takes only the next one, so a row never arrives twice nor out of order. A socket
that starts, or resumes after N, holds the live rows while it reads its history from the database,
then carries on from there. The relay keeps no state on disk: what a socket missed while closed
is in the outbox, for `resume`, as long as `retention` keeps it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import trio

from marketsrv.streams.connection import Connection
from marketsrv.streams.frames import Frame, frame
from marketsrv.trading.events import render
from storage import Database

log = logging.getLogger("marketsrv.private")

READ_BATCH = 1000  # outbox rows the relay reads at once
PRUNE_EVERY_S = 3600.0

Event = tuple[int, int, int, bytes, int]  # row id, user_id, seq, its frame's JSON, created_at
COLUMNS = "id, user_id, first_seq, events, created_at"
Stored = tuple[int, int, int, bytes, int]  # an outbox row, as COLUMNS reads it


UNREADABLE = orjson.dumps({
    "code": "event_unreadable",
    "message": "this event could not be read: read the state over REST",
})  # fmt: skip


def events_of(rows: list[Stored], after: int = 0) -> list[Event]:
    """The events of outbox rows after seq `after`, in order, as frames: one row holds one or
    more, numbered from its first_seq (trading/outbox.py). Run on the reading thread."""
    found: list[Event] = []
    for row_id, user_id, first, lines, created in rows:
        ts = repr(created / 1000).encode()
        for seq, line in enumerate(lines.split(b"\n"), first):
            if seq > after:
                try:
                    topic, facts = orjson.loads(line)
                    data = orjson.dumps(render(topic, facts))
                except Exception:  # never expected; one bad row must not stop the relay
                    log.exception("user %d: event %d cannot be read", user_id, seq)
                    topic, data = "error", UNREADABLE
                payload = b'{"type":"%s","data":%s,"seq":%d,"ts":%s}' % (
                    topic.encode(), data, seq, ts,
                )  # fmt: skip
                found.append((row_id, user_id, seq, payload, created))
    return found


def event_frame(row: Event) -> Frame:
    """`{"type", "data", "seq", "ts"}`, encoded by `events_of`."""
    return Frame.stored("user_event", row[3], row[4] / 1000, row[2])


def gap_frame(after: int, seq: int, created_ms: int) -> Frame:
    return frame("resync_required", {
        "after": after, "oldest": after + 1, "seq": seq,
        "message": "events were missed: read the state over REST, then follow from seq",
    }, created_ms / 1000)  # fmt: skip


@dataclass(eq=False)
class UserSocket:
    """One authenticated socket of a user: its connection and its position."""

    conn: Connection
    user_id: int
    user: Any = None  # who signed in (for the `ready` frame)
    position: int | None = None  # the last seq sent; None while it reads its history
    held: list[Event] = field(default_factory=list)  # live events that came meanwhile


@dataclass(frozen=True, slots=True)
class History:
    events: list[Event]  # what was asked for (at most max_resume + 1)
    latest: int  # the user's last seq now
    oldest: int  # the first seq the outbox still keeps (latest + 1 when it keeps none)


class Relay:
    def __init__(self, db: Database, retention_ms: int, max_resume: int, clock: Callable[[], int]):
        self.db = db
        self.retention_ms = retention_ms
        self.max_resume = max_resume
        self.clock = clock
        self.sockets: dict[int, set[UserSocket]] = {}
        self._cursor = 0  # the last outbox id read
        self._wake = trio.Event()
        self.delivered = 0  # events queued to sockets, for the health page

    # -- the task ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        token = trio.lowlevel.current_trio_token()

        def poke() -> None:  # on the writer thread, after each commit
            with contextlib.suppress(trio.RunFinishedError):  # the loop ended: nobody to tell
                token.run_sync_soon(self._wake.set)

        self._cursor = await trio.to_thread.run_sync(self.db.read, _max_id)
        self.db.on_commit = poke
        next_prune = trio.current_time()
        task_status.started()
        try:
            while True:
                with trio.move_on_at(next_prune):
                    await self._wake.wait()
                if trio.current_time() >= next_prune:  # whether anyone listens or not
                    next_prune = trio.current_time() + PRUNE_EVERY_S
                    self._prune()
                if not self._wake.is_set():
                    continue
                self._wake = trio.Event()
                if not self.sockets:
                    # Nobody listens: the rows wait. A socket that comes reads its history, and
                    # the rows read then (its own included) go to whoever is open, once each.
                    continue
                # Frames are made on the reading thread for the users listening now; a user
                # whose socket came meanwhile has them made here.
                listening = frozenset(self.sockets)
                try:
                    rows = await trio.to_thread.run_sync(
                        self.db.read, partial(self._read_new, listening=listening)
                    )
                except Exception:  # a read error must not end the server: try again soon
                    log.exception("the relay could not read the outbox")
                    await trio.sleep(1.0)
                    self._wake.set()
                    continue
                for row, made in rows:
                    self._cursor = max(self._cursor, row[0])
                    sockets = self.sockets.get(row[1])
                    if not sockets:
                        continue
                    for event in made if made is not None else events_of([row]):
                        for socket in list(sockets):
                            self.offer(socket, event)
                if len(rows) == READ_BATCH:
                    self._wake.set()  # more waiting
        finally:
            self.db.on_commit = None

    def _read_new(
        self, conn: sqlite3.Connection, listening: frozenset[int]
    ) -> list[tuple[Stored, list[Event] | None]]:
        """The next outbox rows, each with its events as frames if its user is `listening`."""
        rows: list[Stored] = conn.execute(
            f"SELECT {COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (self._cursor, READ_BATCH),
        ).fetchall()
        return [(row, events_of([row]) if row[1] in listening else None) for row in rows]

    def _prune(self) -> None:
        before = self.clock() - self.retention_ms

        def work(conn: sqlite3.Connection) -> None:
            # In bounded chunks (by the created_at index): the writer serves orders too.
            conn.execute(
                "DELETE FROM outbox WHERE id IN"
                " (SELECT id FROM outbox WHERE created_at < ? LIMIT 20000)",
                (before,),
            )

        def done(_: object, error: BaseException | None) -> None:
            if error is not None:
                log.error("the outbox prune failed: %s", error)

        try:
            self.db.submit(work, done)
        except Exception:  # closed at shutdown: next time
            log.debug("the outbox prune was skipped", exc_info=True)

    # -- sockets -------------------------------------------------------------------------------

    def offer(self, socket: UserSocket, row: Event) -> None:
        """A live row for this socket: sent if it is the next one, kept while it catches up."""
        if socket.position is None:
            socket.held.append(row)
        elif row[2] == socket.position + 1:
            self._send(socket, row)
        elif row[2] > socket.position + 1:
            # Never expected (the history and the relay leave no hole), but never silent: the
            # client must read the state again, then it follows from this row.
            log.error("user %d: event %d after %d", socket.user_id, row[2], socket.position)
            socket.conn.reply(gap_frame(socket.position, row[2] - 1, row[4]))
            self._send(socket, row)
        # A number at or below the position was sent already (from the history).

    def _send(self, socket: UserSocket, row: Event) -> None:
        socket.conn.reply(event_frame(row))
        socket.position = row[2]
        self.delivered += 1

    async def start(self, socket: UserSocket, after: int | None) -> History:
        """Register `socket` and send what it missed: everything after `after` (None: nothing,
        it starts from now). Live rows wait meanwhile; then the socket is live."""
        socket.position = None
        self.sockets.setdefault(socket.user_id, set()).add(socket)
        history = await trio.to_thread.run_sync(
            self.db.read, lambda conn: _history(conn, socket.user_id, after, self.max_resume)
        )
        # Rows committed while nobody listened are read now (the relay's cursor stayed behind,
        # so no other socket starting meanwhile can miss one); this socket drops those its
        # history already had.
        self._wake.set()
        return history

    def go_live(self, socket: UserSocket, history: History, after: int | None) -> None:
        """Send the history (if it is whole) and the held rows in order; the socket is live."""
        if after is None:
            socket.position = history.latest
        else:
            socket.position = after
            for row in history.events:
                self._send(socket, row)
        held, socket.held = socket.held, []
        for row in sorted(held, key=lambda r: r[2]):
            self.offer(socket, row)

    def stop(self, socket: UserSocket) -> None:
        sockets = self.sockets.get(socket.user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.sockets[socket.user_id]

    def figures(self) -> dict[str, Any]:
        return {
            "users": len(self.sockets),
            "sockets": sum(len(s) for s in self.sockets.values()),
            "delivered": self.delivered,
        }


def _max_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])


def _history(conn: sqlite3.Connection, user_id: int, after: int | None, limit: int) -> History:
    # The user's counter, not the outbox's rows: those may all have been pruned.
    latest = conn.execute("SELECT event_seq FROM users WHERE id = ?", (user_id,)).fetchone()[0]
    first = conn.execute(
        "SELECT first_seq FROM outbox WHERE user_id = ? ORDER BY last_seq LIMIT 1", (user_id,)
    ).fetchone()
    events: list[Event] = []
    if after is not None and after < latest:
        # `limit + 1` events at most (each row holds one or more): one more than may be resumed
        # tells the caller there are too many.
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM outbox WHERE user_id = ? AND last_seq > ?"
            " ORDER BY last_seq LIMIT ?",
            (user_id, after, limit + 1),
        ).fetchall()
        events = events_of(rows, after)[: limit + 1]
    return History(events, latest, first[0] if first is not None else latest + 1)
