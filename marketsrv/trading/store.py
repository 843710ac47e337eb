"""The storage package seen from trio: writes and reads awaited without blocking the event loop.

A write is queued to the storage writer thread; its completion callback (run on that thread)
wakes the waiting trio task through the trio token. Reads run on worker threads, each with its own
reader connection, at most `readers` at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from storage import Database

T = TypeVar("T")


class Store:
    def __init__(self, db: Database, readers: int = 4) -> None:
        self.db = db
        self._readers = trio.CapacityLimiter(readers)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in the writer's next transaction; return once that transaction is durable.

        A cancelled caller does not cancel the write: it was queued and will commit; only the
        wait for its answer is abandoned.
        """
        token = trio.lowlevel.current_trio_token()
        finished = trio.Event()
        outcome: list[Any] = []

        def done(result: Any, error: BaseException | None) -> None:
            outcome.extend((result, error))
            token.run_sync_soon(finished.set)

        self.db.submit(work, done)
        await finished.wait()
        if outcome[1] is not None:
            raise outcome[1]
        result: T = outcome[0]
        return result

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self.db.read, work, limiter=self._readers)
