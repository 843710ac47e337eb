"""One SQLite file: a writer thread with group commit, and reader connections of their own.

Writes are functions of a connection, queued with `submit(work, done)`. The writer takes every
request waiting (up to `max_batch`), runs each inside a SAVEPOINT of one `BEGIN IMMEDIATE`
transaction, commits once, and only then reports each result through its `done` callback: a
request is acknowledged only after the transaction holding it is durable (with
`synchronous=FULL`, even across a power loss). A request that raises is rolled back to its
savepoint alone; the others in the batch still commit. With `group_commit=False` every request
gets a transaction and an fsync of its own (the benchmark's baseline).

Reads run on a connection per calling thread (`read(work)`), in WAL mode, so they never wait for
the writer. `close()` stops taking requests, drains the queue, and closes every connection.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Histogram

from storage.errors import DatabaseInUse, StorageClosed, StorageError
from storage.schema import SCHEMA_VERSION, migrate

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("storage")

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
Done = Callable[[Any, BaseException | None], None]


class Database:
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        group_commit: bool = True,
        max_batch: int = 256,
        exclusive: bool = False,
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch if group_commit else 1
        self._queue: queue.SimpleQueue[tuple[Work, Done] | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()  # orders submit() against close()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._writer: threading.Thread | None = None
        self.commits = 0  # transactions committed (the tests count group commits with it)
        # For /metrics (thread-safe, and in no registry: the server's scrape collects them).
        self.commit_seconds = Histogram(
            "marketsrv_storage_commit_seconds",
            "Write transactions: seconds from BEGIN to a durable COMMIT.",
            registry=None,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.commit_batch = Histogram(
            "marketsrv_storage_commit_batch_size",
            "Write requests committed together in one transaction (group commit).",
            registry=None,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        # Called on the writer thread after every commit (the private stream's relay wakes on
        # it); must be quick and must not raise.
        self.on_commit: Callable[[], None] | None = None
        # A server's books and caches are the database's other half: two servers on one file
        # would cancel each other's orders. `exclusive` holds a lock file for the server's life.
        self.exclusive = exclusive
        self._lock_fd: int | None = None

    # -- life cycle --------------------------------------------------------------------------

    def open(self) -> int:
        """Create the file if needed, migrate the schema, start the writer; the old version.

        Raises StorageError (DatabaseInUse, SchemaTooNew, or the OS's or SQLite's reason).
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.exclusive:
                self._take_lock()
            conn = self._connect()
            try:
                found = migrate(conn)
            except StorageError as exc:  # newer than this program, or not ours: say which file
                conn.close()
                raise type(exc)(f"cannot open the database {self.path}: {exc}") from None
            except BaseException:
                conn.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            self._release_lock()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, sqlite3.DatabaseError) and "not a database" in reason:
                reason += " (not a SQLite file: is --database the right path?)"
            raise StorageError(f"cannot open the database {self.path}: {reason}") from exc
        except StorageError:
            self._release_lock()
            raise
        if found == 0:
            log.info("database %s: created (schema version %d)", self.path, SCHEMA_VERSION)
        elif found < SCHEMA_VERSION:
            log.info(
                "database %s: schema version %d, migrated to %d", self.path, found, SCHEMA_VERSION
            )
        else:
            log.info("database %s: schema version %d (current)", self.path, found)
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="storage-writer", daemon=True
        )
        self._writer.start()
        return found

    def close(self) -> None:
        """Refuse new requests, finish every queued one, close all connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._writer is not None:
            self._writer.join()
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        self._release_lock()

    def _take_lock(self) -> None:
        if fcntl is None:  # no advisory locks on this platform: nothing to guard with
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise DatabaseInUse(
                f"the database {self.path} is in use by another marketsrv"
                + (f" (pid {owner})" if owner.isdigit() else "")
                + "; stop it, or give this one its own --database"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd  # held from here on; _release_lock closes it whatever follows
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.row_factory = sqlite3.Row
        return conn

    # -- writes ------------------------------------------------------------------------------

    def submit(self, work: Work, done: Done) -> None:
        """Queue `work(conn)`; `done(result, error)` is called from the writer thread once the
        transaction that ran it committed (or failed). Raises StorageClosed after close()."""
        with self._lock:
            if self._closed or self._writer is None:
                raise StorageClosed("the database is closed")
            self._queue.put((work, done))

    def write(self, work: Work) -> Any:
        """`submit` for callers that may block (tests, the CLI): wait and return the result."""
        finished = threading.Event()
        outcome: list[Any] = []

        def done(result: Any, error: BaseException | None) -> None:
            outcome.extend((result, error))
            finished.set()

        self.submit(work, done)
        finished.wait()
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[tuple[Work, Done]] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                self._run_batch(conn, batch)
            if stopping:
                # Requests queued after the sentinel cannot exist (submit checks under the
                # lock), but drain defensively so no caller waits forever.
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[1](None, StorageClosed("the database closed"))
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[Work, Done]]) -> None:
        outcomes: list[tuple[Done, Any, BaseException | None]] = []
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for work, done in batch:
                conn.execute("SAVEPOINT request")
                try:
                    result = work(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    outcomes.append((done, None, exc))
                else:
                    conn.execute("RELEASE request")
                    outcomes.append((done, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The transaction itself failed (disk full, I/O error): nothing in it is durable.
            log.exception("a write transaction failed; %d requests are refused", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(done, None, exc) for _, done in batch]
        else:
            self.commits += 1
            self.commit_seconds.observe(time.perf_counter() - started)
            self.commit_batch.observe(len(batch))
            if self.on_commit is not None:
                try:
                    self.on_commit()
                except Exception:
                    log.exception("the commit hook failed")
        for done, result, error in outcomes:
            try:
                done(result, error)
            except Exception:
                log.exception("a write completion callback failed")

    # -- reads -------------------------------------------------------------------------------

    def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(conn)` on this thread's reader connection (a consistent WAL snapshot)."""
        if self._closed:
            raise StorageClosed("the database is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        conn.execute("BEGIN")
        try:
            return work(conn)
        finally:
            conn.execute("COMMIT")
