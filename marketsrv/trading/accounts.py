"""Users, passwords and API tokens.

Passwords are hashed with Argon2id (memory-hard), off the event loop. Tokens are 32 random bytes,
stored only as their SHA-256, revoked on logout. Every token this process has seen is cached in
memory: all writes go through this process, so the cache is authoritative once filled.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from marketsrv.trading.errors import TradingError
from marketsrv.trading.store import Store

USERNAME = re.compile(r"^[A-Za-z0-9_.@+-]{3,64}$")
MIN_PASSWORD = 6
MAX_PASSWORD = 256


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    created_at: int  # ms since the epoch


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_credentials(username: object, password: object) -> tuple[str, str]:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise TradingError(
            400, "invalid_username", "username must be 3-64 letters, digits or . _ @ + -"
        )
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise TradingError(
            400, "invalid_password", f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    return username, password


def insert_user(conn: sqlite3.Connection, username: str, password_hash: str) -> User:
    created = now_ms()
    try:
        cur = conn.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
            (username, password_hash, created),
        )
    except sqlite3.IntegrityError:
        raise TradingError(400, "username_taken", "that username is taken") from None
    user_id = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO wallets (user_id) VALUES (?)", (user_id,))
    return User(user_id, username, created)


def insert_token(conn: sqlite3.Connection, user: User) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO tokens (token_hash, user_id, created_at) VALUES (?, ?, ?)",
        (token_digest(token), user.id, now_ms()),
    )
    return token


class Accounts:
    def __init__(self, store: Store, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._tokens: dict[bytes, User] = {}

    async def _hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self.hasher.hash, password)

    async def register(self, username: object, password: object) -> tuple[User, str]:
        name, secret = check_credentials(username, password)
        password_hash = await self._hash(secret)

        def work(conn: sqlite3.Connection) -> tuple[User, str]:
            user = insert_user(conn, name, password_hash)
            return user, insert_token(conn, user)

        user, token = await self.store.write(work)
        self._tokens[token_digest(token)] = user
        return user, token

    async def login(self, username: object, password: object) -> tuple[User, str]:
        if not isinstance(username, str) or not isinstance(password, str):
            raise TradingError(400, "invalid_credentials", "username and password are required")

        def find(conn: sqlite3.Connection) -> tuple[User, str] | None:
            row = conn.execute(
                "SELECT id, username, created_at, password_hash FROM users WHERE username = ?",
                (username,),
            ).fetchone()
            return None if row is None else (User(row[0], row[1], row[2]), row[3])

        found = await self.store.read(find)
        stored_hash = found[1] if found else await self._dummy_hash()
        try:
            await trio.to_thread.run_sync(self.hasher.verify, stored_hash, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            found = None
        if found is None:
            raise TradingError(
                400, "invalid_credentials", "Unable to log in with those credentials."
            )
        user = found[0]
        token = await self.store.write(lambda conn: insert_token(conn, user))
        self._tokens[token_digest(token)] = user
        return user, token

    async def _dummy_hash(self) -> str:
        # An unknown user costs the same time as a wrong password: no username probing.
        if not hasattr(self, "_dummy"):
            self._dummy = await self._hash(secrets.token_hex(8))
        return self._dummy

    async def logout(self, token: str) -> None:
        digest = token_digest(token)
        self._tokens.pop(digest, None)
        await self.store.write(
            lambda conn: conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                (now_ms(), digest),
            )
        )

    async def authenticate(self, token: str) -> User | None:
        digest = token_digest(token)
        user = self._tokens.get(digest)
        if user is not None:
            return user

        def find(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(
                "SELECT u.id, u.username, u.created_at FROM tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
                (digest,),
            ).fetchone()
            return None if row is None else User(row[0], row[1], row[2])

        user = await self.store.read(find)
        if user is not None:
            self._tokens[digest] = user
        return user
