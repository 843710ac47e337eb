"""The storage package: schema migrations, the group-committing writer, readers, closing."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from storage import SCHEMA_VERSION, Database, StorageClosed
from storage.schema import SchemaTooNew


def add_user(name: str) -> Any:
    def work(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?, 'x', 0)", (name,)
        )
        conn.execute("INSERT INTO wallets (user_id) VALUES (?)", (cur.lastrowid,))
        return int(cur.lastrowid or 0)

    return work


def count_users(conn: sqlite3.Connection) -> int:
    """People: the archive user of account resets (id 0) is not one."""
    return int(conn.execute("SELECT count(*) FROM users WHERE id > 0").fetchone()[0])


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(tmp_path / "data" / "m.db")
    database.open()
    yield database
    database.close()


def test_open_creates_and_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "m.db"
    first = Database(path)
    assert first.open() == 0 and path.exists()
    first.write(add_user("ann"))
    first.close()
    again = Database(path)
    assert again.open() == SCHEMA_VERSION  # nothing to do the second time
    assert again.read(count_users) == 1
    mode = again.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    assert mode == "wal"
    again.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        Database(path).open()


def hold_writer(db: Database) -> tuple[threading.Event, threading.Event]:
    """Occupy the writer until the returned `release` is set (to queue up a batch behind it)."""
    started, release = threading.Event(), threading.Event()

    def blocker(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    db.submit(blocker, lambda result, error: None)
    assert started.wait(10)
    return started, release


def run_batch(db: Database, works: list[Any]) -> list[tuple[Any, BaseException | None]]:
    _, release = hold_writer(db)
    outcomes: list[tuple[Any, BaseException | None]] = []
    finished = threading.Event()

    def done(result: Any, error: BaseException | None) -> None:
        outcomes.append((result, error))
        if len(outcomes) == len(works):
            finished.set()

    for work in works:
        db.submit(work, done)
    release.set()
    assert finished.wait(10)
    return outcomes


def test_queued_requests_commit_together(db: Database) -> None:
    commits = db.commits
    outcomes = run_batch(db, [add_user(f"u{i}") for i in range(50)])
    assert all(error is None for _, error in outcomes)
    assert db.commits - commits == 2  # the blocker's batch, then all fifty in one
    assert db.read(count_users) == 50


def test_without_group_commit_each_request_commits_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db", group_commit=False)
    db.open()
    commits = db.commits
    run_batch(db, [add_user(f"u{i}") for i in range(10)])
    assert db.commits - commits == 11
    db.close()


def test_a_failing_request_rolls_back_alone(db: Database) -> None:
    def overdraw(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE wallets SET balance_cents = balance_cents + 500")
        conn.execute("UPDATE wallets SET balance_cents = -1")  # CHECK: never negative

    outcomes = run_batch(db, [add_user("a"), overdraw, add_user("b")])
    assert [e is None for _, e in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][1], sqlite3.IntegrityError)
    balances = db.read(lambda c: [r[0] for r in c.execute("SELECT balance_cents FROM wallets")])
    assert balances == [0, 0]  # the +500 of the failed request went with it


def test_done_is_called_only_once_the_transaction_is_visible(db: Database) -> None:
    seen: list[int] = []
    finished = threading.Event()

    def done(result: Any, error: BaseException | None) -> None:
        fresh = sqlite3.connect(db.path)  # another connection sees only committed data
        seen.append(count_users(fresh))
        fresh.close()
        finished.set()

    db.submit(add_user("c"), done)
    assert finished.wait(10) and seen == [1]


def test_close_drains_then_refuses(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    db.open()
    _, release = hold_writer(db)
    results: list[Any] = []
    for i in range(5):
        db.submit(add_user(f"late{i}"), lambda result, error: results.append(error or result))
    release.set()
    db.close()
    assert results == [1, 2, 3, 4, 5]
    with pytest.raises(StorageClosed):
        db.submit(add_user("x"), lambda result, error: None)
    with pytest.raises(StorageClosed):
        db.read(count_users)


def test_readers_see_snapshots_not_uncommitted_writes(db: Database) -> None:
    _, release = hold_writer(db)

    def add_and_block(conn: sqlite3.Connection) -> None:
        add_user("hidden")(conn)

    finished = threading.Event()
    db.submit(add_and_block, lambda result, error: finished.set())
    assert db.read(count_users) == 0  # queued or running, not committed
    release.set()
    assert finished.wait(10)
    assert db.read(count_users) == 1


def test_synchronous_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Database(tmp_path / "m.db", synchronous="SOMETIMES")
    db = Database(tmp_path / "m.db", synchronous="normal")
    db.open()
    assert db.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1
    db.close()


def test_events_written_before_version_5_are_still_served(tmp_path: Path) -> None:
    """Version 5 keeps one row per user and write, with each event's facts; the events the
    outbox held before (one row each, their JSON) are moved over and resumed as they were."""
    from marketsrv.private.relay import _history
    from storage.schema import MIGRATIONS

    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:4], 1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
    conn.execute(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES (7, 'old', 'x', 0)"
    )
    wallet = '{"balance":10.5,"available":10.5,"held":0.0}'
    for seq, (topic, payload) in enumerate(
        [("wallet", wallet), ("holding", '{"symbol":"KCB"}')], 1
    ):
        conn.execute(
            "INSERT INTO outbox (key, topic, user_id, payload, created_at, user_seq)"
            " VALUES (?, ?, 7, ?, 1700000000123, ?)",
            (f"{topic}:7:{seq}", topic, payload, seq),
        )
    conn.execute("UPDATE users SET event_seq = 2 WHERE id = 7")
    conn.commit()
    conn.close()
    db = Database(path)
    assert db.open() == 4
    history = db.read(lambda c: _history(c, 7, 0, 100))
    assert (history.latest, history.oldest) == (2, 1)
    frames = [orjson.loads(event[3]) for event in history.events]
    assert frames[0] == {
        "type": "wallet",
        "data": orjson.loads(wallet),
        "seq": 1,
        "ts": 1700000000.123,
    }
    assert frames[1]["type"] == "holding" and frames[1]["seq"] == 2
    db.close()


def test_a_user_s_event_numbers_go_on_after_the_outbox_is_pruned(db: Database) -> None:
    from marketsrv.trading.accounts import insert_user
    from marketsrv.trading.outbox import append

    user = db.write(lambda c: insert_user(c, "eve", "x", 1))
    assert [db.write(lambda c: append(c, user.id, [("wallet", {})], 1)) for _ in range(3)] == [
        1,
        2,
        3,
    ]
    two = [("wallet", {}), ("holding", {})]
    assert db.write(lambda c: append(c, user.id, two, 1)) == 5  # one row, two numbers
    db.write(lambda c: c.execute("DELETE FROM outbox"))  # the retention prune took them all
    assert db.write(lambda c: append(c, user.id, [("wallet", {})], 2)) == 6
