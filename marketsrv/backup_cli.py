"""`marketsrv backup FILE`: a consistent copy of the database, safe while the server runs.

    marketsrv backup /var/backups/marketsrv/monday.db [--database data/marketsrv.db] [--force]

The database is the `database` setting (flag, environment, or the --config file), as for the
server. The copy is SQLite's online backup of one committed instant (storage/backup.py): the
server keeps taking orders meanwhile.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from marketsrv.settings import SettingsError, load_for_command
from storage import StorageError
from storage.backup import backup


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="marketsrv backup",
        description="Copy the live database to FILE, consistently, while the server runs.",
    )
    parser.add_argument("file", metavar="FILE", help="where the copy goes")
    parser.add_argument("--database", help="SQLite file (default: the database setting)")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    args = parser.parse_args(argv)
    try:
        settings = load_for_command(args.config, database=args.database)
        done = backup(settings.database, args.file, overwrite=args.force)
    except (SettingsError, StorageError) as exc:
        print(f"marketsrv backup: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the system refuses outright (too long, no access)
        print(
            f"marketsrv backup: {exc.filename or args.file}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    print(
        f"marketsrv backup: {Path(settings.database).resolve()} -> {done.path.resolve()}: "
        f"{done.bytes:,} bytes, schema version {done.schema_version}, "
        f"integrity ok, {done.seconds:.2f} s"
    )
    return 0
