"""`marketsrv users create NAME...`: accounts from the command line, and the demo user.

Both write through the storage writer like the server does (blocking here: no event loop runs).
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import sys
from collections.abc import Sequence

from argon2 import PasswordHasher

from marketsrv.errors import BadRequest, MarketsrvError
from marketsrv.settings import SettingsError, load_for_command
from marketsrv.trading import accounts, wallet
from marketsrv.trading.money import parse_cents
from marketsrv.units import wall_clock_ms
from storage import Database, StorageError

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "marketsrv-demo"
DEMO_CASH_CENTS = 1_000_000_00


def set_admin(db: Database, username: str, admin: bool) -> bool:
    """Give or take the admin role; False if there is no such user."""
    changed: int = db.write(
        lambda conn: (
            conn.execute(
                "UPDATE users SET is_admin = ? WHERE username = ?", (int(admin), username)
            ).rowcount
        )
    )
    return changed > 0


def create_user(db: Database, username: str, password: str, deposit_cents: int) -> bool:
    """Create a user with a wallet (and a first deposit); False if the name is taken."""
    accounts.check_credentials(username, password)
    if db.read(
        lambda conn: conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
    ):
        return False  # (checked first: hashing costs a tenth of a second on purpose)
    password_hash = PasswordHasher().hash(password)

    def work(conn: sqlite3.Connection) -> bool:
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
            return False
        now = wall_clock_ms()
        user = accounts.insert_user(conn, username, password_hash, now)
        if deposit_cents:
            wallet.deposit(conn, user.id, deposit_cents, now)
        return True

    created: bool = db.write(work)
    return created


def ensure_demo_user(db: Database, admin: bool = False) -> bool:
    """The demo user, made an admin only when the demo_user_admin setting says so (its password
    is known: on a shared machine anyone could log in as it). The role is set when the account is
    created, never changed on an existing one (`marketsrv users admin` does that)."""
    created = create_user(db, DEMO_USERNAME, DEMO_PASSWORD, DEMO_CASH_CENTS)
    if created and admin:
        set_admin(db, DEMO_USERNAME, True)
    return created


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsrv users", description="Manage user accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create users, each with a wallet")
    create.add_argument("names", nargs="+", metavar="NAME")
    create.add_argument("--password", help="their password (default: a random one, printed)")
    create.add_argument("--deposit", default="0", help="KES to deposit in each wallet")
    create.add_argument("--admin", action="store_true", help="make them admins (scenarios)")
    admin = commands.add_parser("admin", help="give users the admin role (or take it away)")
    admin.add_argument("names", nargs="+", metavar="NAME")
    admin.add_argument("--revoke", action="store_true", help="take the role away")
    for command in (create, admin):
        command.add_argument("--database", help="SQLite file (default: the database setting)")
        command.add_argument("--config", metavar="FILE", help="TOML file of settings")
    args = parser.parse_args(argv)
    try:
        settings = load_for_command(args.config, database=args.database)
        deposit = parse_cents(args.deposit, "deposit") if args.command == "create" else 0
        if deposit < 0:
            raise BadRequest("invalid_deposit", "deposit must not be negative")
    except (SettingsError, MarketsrvError) as exc:
        print(f"marketsrv users: {exc}", file=sys.stderr)
        return 2
    db = Database(settings.database, synchronous=settings.db_synchronous)
    try:
        db.open()
    except StorageError as exc:
        print(f"marketsrv users: {exc}", file=sys.stderr)
        return 2
    # Said every time: a relative path from another folder is another database.
    print(f"marketsrv users: database {db.path.resolve()}", file=sys.stderr)
    status = 0
    try:
        if args.command == "admin":
            for name in args.names:
                if set_admin(db, name, not args.revoke):
                    print(f"{name}: {'no longer an admin' if args.revoke else 'admin'}")
                else:
                    print(f"{name}: no such user", file=sys.stderr)
                    status = 1
            return status
        for name in args.names:
            password = args.password or secrets.token_urlsafe(12)
            try:
                created = create_user(db, name, password, deposit)
            except MarketsrvError as exc:
                print(f"{name}: {exc.message}", file=sys.stderr)
                status = 1
                continue
            if created:
                if args.admin:
                    set_admin(db, name, True)
                shown = "" if args.password else f" password {password}"
                print(f"created {name}{shown}" + (" (admin)" if args.admin else ""))
            else:
                print(f"{name}: that username is taken", file=sys.stderr)
                status = 1
    finally:
        db.close()
    return status
