"""Durable state of marketsrv over SQLite, with the standard library's sqlite3 only.

This package knows nothing of trio or HTTP: `Database` runs one writer thread that drains a queue
of write requests and commits many of them in one transaction (group commit), and hands out
reader connections of their own. The server calls it off the event loop and turns completions
into trio events. Money is integer minor units (cents) and quantities integer shares throughout.
"""

from storage.database import Database
from storage.errors import DatabaseInUse, SchemaTooNew, StorageClosed, StorageError
from storage.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Database",
    "DatabaseInUse",
    "SchemaTooNew",
    "StorageClosed",
    "StorageError",
]
