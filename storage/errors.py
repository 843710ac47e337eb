"""The storage package's exceptions, in one place."""

from __future__ import annotations


class StorageClosed(RuntimeError):
    """The database is closed (or closing) and takes no more requests."""


class StorageError(RuntimeError):
    """The database cannot be opened: its message says why, in one line for the user."""


class DatabaseInUse(StorageError):
    """Another server owns this database file."""


class SchemaTooNew(StorageError):
    """The database was written by a newer marketsrv than this one."""
