"""A consistent copy of a live database, with SQLite's online backup API.

The copy is made in one step inside one read transaction: in WAL mode a reader never blocks the
server's writer (nor the writer the reader), so orders keep flowing while the copy is made, and
the copy is the database as of one committed instant. (A backup in many small steps would restart
each time the server commits, and could never finish under steady order flow.) It is written to a
temporary file beside the destination, checked with `PRAGMA integrity_check`, synced, and only then
renamed into place: a failed or interrupted backup never leaves a half-written file under the
destination's name.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    seconds: float
    schema_version: int


def backup(source: str | Path, destination: str | Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the database at `source` to `destination`; raise StorageError with the reason."""
    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise StorageError(f"there is no database at {source}")
    if destination.is_dir():
        raise StorageError(f"{destination} is a folder; name the file the copy goes to")
    if _is_part_of(destination, source):
        raise StorageError(f"{destination} is the database or one of its own files")
    if destination.exists() and not overwrite:
        raise StorageError(f"{destination} exists; choose another name, or pass --force")
    if not destination.parent.is_dir():
        raise StorageError(f"there is no folder {destination.parent}")
    # A name of its own, so that two backups to one destination never write one file.
    try:
        handle, name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    except OSError as exc:
        raise StorageError(f"cannot write in {destination.parent}: {exc.strerror or exc}") from exc
    os.close(handle)
    partial = Path(name)
    started = time.perf_counter()
    try:
        # Read-only: the backup must never be the connection that changes the live database.
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        try:
            src.execute("PRAGMA busy_timeout = 5000")
            version = src.execute("PRAGMA user_version").fetchone()[0]
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # pages=-1: the whole file in one step, one snapshot
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                check = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise StorageError(f"the copy failed its integrity check: {check}")
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, destination)
        folder = os.open(destination.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power loss
        finally:
            os.close(folder)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot back up {source}: {exc}") from exc
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot write {destination}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupResult(
        destination, destination.stat().st_size, time.perf_counter() - started, version
    )


def _is_part_of(path: Path, database: Path) -> bool:
    """`path` is the database, or its write-ahead log, shared memory, journal or lock file
    (by name, and as the same file under another name: a hard or symbolic link)."""
    own = [
        database.with_name(database.name + suffix)
        for suffix in ("", "-wal", "-shm", "-journal", ".lock")
    ]
    if path.resolve() in {p.resolve() for p in own}:
        return True
    return path.exists() and any(p.exists() and os.path.samefile(path, p) for p in own)
