"""Users, passwords and API tokens.

Passwords are hashed with Argon2id (memory-hard), off the event loop and at most
`hash_concurrency` at a time; tries are throttled per client address and per account
(throttle.py). Tokens are 32 random bytes, stored only as their SHA-256, revoked on logout and
refused once older than `token_ttl_s`. Recently used tokens are cached in memory (a bounded LRU):
all writes go through this process, so a cached token is valid until its logout or expiry.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from marketsrv.errors import BadRequest
from marketsrv.trading.store import Store
from marketsrv.trading.throttle import Throttle, enforce, refund_all
from marketsrv.units import Clock, wall_clock_ms

USERNAME = re.compile(r"[A-Za-z0-9_.@+-]{3,64}")  # fullmatch: "$" would let "demo\n" in
MIN_PASSWORD = 6
MAX_PASSWORD = 256


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    created_at: int  # ms since the epoch
    is_admin: bool = (
        False  # may run the market's scenarios (users_cli, the demo_user_admin setting)
    )


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_credentials(username: object, password: object) -> tuple[str, str]:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise BadRequest("invalid_username", "username must be 3-64 letters, digits or . _ @ + -")
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(
            "invalid_password", f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    if not password.strip():
        raise BadRequest("invalid_password", "password must not be only white space")
    return username, password


def insert_user(conn: sqlite3.Connection, username: str, password_hash: str, now: int) -> User:
    created = now
    try:
        cur = conn.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
            (username, password_hash, created),
        )
    except sqlite3.IntegrityError:
        raise BadRequest("username_taken", "that username is taken") from None
    user_id = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO wallets (user_id) VALUES (?)", (user_id,))
    return User(user_id, username, created)


def insert_token(conn: sqlite3.Connection, user: User, now: int) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO tokens (token_hash, user_id, created_at) VALUES (?, ?, ?)",
        (token_digest(token), user.id, now),
    )
    return token


@dataclass(frozen=True)
class AuthLimits:
    """The limits of the password endpoints (settings `auth_*`, `token_ttl_hours`)."""

    token_ttl_s: float = 7 * 24 * 3600  # a token older than this is refused
    max_cached_tokens: int = 10_000  # tokens remembered in memory; older ones are read again
    hash_concurrency: int = 2  # Argon2 checks at once: each takes 64 MiB for its run
    login_failures_per_address: int = 20  # a minute; 0 turns the throttle off
    login_failures_per_account: int = 10  # five minutes
    registrations_per_address: int = 60  # ten minutes


class Accounts:
    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher | None = None,
        limits: AuthLimits | None = None,
        clock: Clock = wall_clock_ms,
        timer: Callable[[], float] = trio.current_time,
    ) -> None:
        self.store = store
        self.clock = clock  # timestamps (tokens, users) and token expiry
        clock_s = timer  # the throttles' windows: durations, not dates
        self.hasher = hasher or PasswordHasher()
        self.limits = limits = limits or AuthLimits()
        # Bounded, so forty parallel wrong logins take 2 x 64 MiB, not 40 x 64 MiB.
        self._hashing = trio.CapacityLimiter(limits.hash_concurrency)
        self._by_address = Throttle(
            limits.login_failures_per_address, 60, clock_s, what="failed logins from this address"
        )
        self._by_account = Throttle(
            limits.login_failures_per_account, 300, clock_s, what="failed logins for this account"
        )
        self._registrations = Throttle(
            limits.registrations_per_address, 600, clock_s, what="registrations from this address"
        )
        # digest -> (user, expiry in ms); least recently used first.
        self._tokens: OrderedDict[bytes, tuple[User, int]] = OrderedDict()
        # Moves on every revocation: a token read from the database before a revocation
        # committed is not put back in the cache by a request that was already under way.
        self._revocations = 0
        # Called with a token's digest once its revocation is durable (a logout).
        self.revocation_listeners: list[Callable[[bytes], None]] = []
        self._dummy: str | None = None
        self._dummy_lock = trio.Lock()

    async def _hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self.hasher.hash, password, limiter=self._hashing)

    async def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return await trio.to_thread.run_sync(
                self.hasher.verify, stored_hash, password, limiter=self._hashing
            )
        except (VerificationError, InvalidHashError):
            return False

    def _remember(self, digest: bytes, user: User, created_ms: int) -> None:
        self._tokens[digest] = (user, created_ms + int(self.limits.token_ttl_s * 1000))
        self._tokens.move_to_end(digest)
        while len(self._tokens) > self.limits.max_cached_tokens:
            self._tokens.popitem(last=False)

    async def register(
        self, username: object, password: object, client: str = ""
    ) -> tuple[User, str]:
        name, secret = check_credentials(username, password)
        enforce([(self._registrations, client)])
        password_hash = await self._hash(secret)

        now = self.clock()

        def work(conn: sqlite3.Connection) -> tuple[User, str]:
            user = insert_user(conn, name, password_hash, now)
            return user, insert_token(conn, user, now)

        user, token = await self.store.write(work)
        self._remember(token_digest(token), user, now)
        return user, token

    async def login(self, username: object, password: object, client: str = "") -> tuple[User, str]:
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("invalid_credentials", "username and password are required")
        if len(username) > 64 or len(password) > MAX_PASSWORD:  # no account has these
            raise BadRequest("invalid_credentials", "Unable to log in with those credentials.")
        # Charged before the password is checked, refunded when it was right.
        charges = enforce([(self._by_address, client), (self._by_account, username.lower())])

        def find(conn: sqlite3.Connection) -> tuple[User, str] | None:
            row = conn.execute(
                "SELECT id, username, created_at, password_hash, is_admin FROM users WHERE username = ?",
                (username,),
            ).fetchone()
            return None if row is None else (User(row[0], row[1], row[2], bool(row[4])), row[3])

        found = await self.store.read(find)
        stored_hash = found[1] if found else await self._dummy_hash()
        if not await self._verify(stored_hash, password):
            found = None
        if found is None:
            raise BadRequest("invalid_credentials", "Unable to log in with those credentials.")
        refund_all(charges)
        user = found[0]
        now = self.clock()
        token = await self.store.write(lambda conn: insert_token(conn, user, now))
        self._remember(token_digest(token), user, now)
        return user, token

    async def _dummy_hash(self) -> str:
        # An unknown user costs the same time as a wrong password: no username probing. Made
        # once, under a lock: parallel first logins must not each hash one (twice the work).
        async with self._dummy_lock:
            if self._dummy is None:
                self._dummy = await self._hash(secrets.token_hex(8))
        return self._dummy

    async def logout(self, token: str) -> None:
        digest = token_digest(token)
        self._tokens.pop(digest, None)
        self._revocations += 1
        now = self.clock()
        # Shielded: a client hanging up mid-logout must not skip the second pop below.
        with trio.CancelScope(shield=True):
            await self.store.write(
                lambda conn: conn.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                    (now, digest),
                )
            )
            # A request that read the token while the revocation was queued may have cached it.
            self._tokens.pop(digest, None)
            self._revocations += 1
        for listener in self.revocation_listeners:  # the private streams opened with it close
            listener(digest)

    @property
    def revocations(self) -> int:
        """Grows with every logout: a caller that saw it change re-checks its token."""
        return self._revocations

    async def is_admin(self, user_id: int) -> bool:
        """The admin role as the database says now: a role given or taken from the shell
        (`marketsrv users admin`) counts at once, whatever the token cache remembers."""

        def find(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT is_admin FROM users WHERE id = ?", (user_id,)).fetchone()
            return bool(row and row[0])

        return await self.store.read(find)

    async def authenticate(self, token: str) -> User | None:
        found = await self.session(token)
        return None if found is None else found[0]

    async def session(self, token: str) -> tuple[User, int] | None:
        """The user of a valid token and when it expires (ms), or None."""
        digest = token_digest(token)
        cached = self._tokens.get(digest)
        if cached is not None:
            if cached[1] > self.clock():
                self._tokens.move_to_end(digest)
                return cached
            del self._tokens[digest]
            return None
        oldest = self.clock() - int(self.limits.token_ttl_s * 1000)

        def find(conn: sqlite3.Connection) -> tuple[User, int] | None:
            row = conn.execute(
                "SELECT u.id, u.username, u.created_at, t.created_at, u.is_admin FROM tokens t"
                " JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND t.revoked_at IS NULL AND t.created_at > ?",
                (digest, oldest),
            ).fetchone()
            return None if row is None else (User(row[0], row[1], row[2], bool(row[4])), row[3])

        revocations = self._revocations
        found = await self.store.read(find)
        if found is None:
            return None
        if revocations == self._revocations:
            self._remember(digest, *found)
        return found[0], found[1] + int(self.limits.token_ttl_s * 1000)
