"""What the signed-in WebSocket endpoints share (`/ws/user/`, `/ws/chat/`): the accept, the
connection limit, signing in (`?token=` or a first `auth` message; close 4001 without a token,
4002 for a bad one, and 4002 later when a logout revokes it or it expires), the message rate
limit, and the
receive loop. A subclass says what a signed-in socket is (`attach`, with no await, so that
`closed` always follows it), what it sends first (`opened`), what it does with each message
(`received`) and what it leaves behind (`closed`).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

import orjson
import trio

from marketsrv.streams.connection import Connection, Stream
from marketsrv.streams.endpoint import ASGIApp, Receive, Scope, Send, run_sender
from marketsrv.streams.frames import error_frame
from marketsrv.streams.hub import Hub
from marketsrv.streams.session import Limits, RateLimiter
from marketsrv.streams.transport import transport_for
from marketsrv.trading import Trading
from marketsrv.trading.accounts import Accounts, User, token_digest

log = logging.getLogger("marketsrv.private")

AUTH_TIMEOUT_S = 10.0
CLOSE_NO_TOKEN = 4001
CLOSE_BAD_TOKEN = 4002
CLOSE_POLICY = 1008
REFUSALS = {
    CLOSE_NO_TOKEN: "authentication required: ?token= or auth",
    CLOSE_BAD_TOKEN: "invalid, expired or revoked token",
}

S = TypeVar("S")  # what a subclass keeps for one signed-in socket


class SignedInEndpoint(Generic[S]):
    """An ASGI app: WebSockets to `path` here, everything else to `app`."""

    path: re.Pattern[str]
    stream: Stream  # its name in /metrics

    def __init__(
        self, app: ASGIApp, trading: Trading, hub: Hub, limits: Limits, fast_path: bool,
        max_replies: int = 256,
    ) -> None:  # fmt: skip
        self.app = app
        self.trading = trading
        self.hub = hub
        self.limits = limits
        self.fast_path = fast_path
        self.max_replies = max_replies
        self._by_token: dict[bytes, set[Connection]] = {}  # to close them when it is revoked
        trading.accounts.revocation_listeners.append(self._revoked)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.path.match(scope["path"]):
            await self.serve(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _revoked(self, digest: bytes) -> None:
        for conn in self._by_token.get(digest, ()):
            conn.close(CLOSE_BAD_TOKEN, "the token was revoked")

    # -- what a subclass does ------------------------------------------------------------------

    def attach(self, conn: Connection, user: User) -> S:
        """The socket's state, registered where it must be (no await: `closed` follows it)."""
        raise NotImplementedError

    async def opened(self, state: S, auth: dict[str, Any], query: dict[str, list[str]]) -> None:
        """What the socket is sent first."""

    async def received(self, state: S, message: Any) -> None:
        """One JSON message (any JSON value: the subclass checks its shape)."""
        raise NotImplementedError

    def closed(self, state: S) -> None:
        pass

    def error(self, conn: Connection, code: str, message: str) -> None:
        """An error frame: the market streams' shape unless a subclass speaks another."""
        conn.reply(error_frame(self.hub.now_s(), code, message))

    # -- one connection ------------------------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        conn = Connection(
            transport_for(send, self.fast_path),
            stream=self.stream,
            counters=self.hub.counters,
            market_data=False,
            max_replies=self.max_replies,
        )
        conn.order_book = False
        hub = self.hub
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        state: S | None = None
        digest = b""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_sender, conn, nursery, self.limits.close_timeout_s)

                async def refuse(code: int, reason: str) -> None:
                    conn.close(code, reason)
                    await drain(receive)  # our close frame is on its way; wait for theirs
                    nursery.cancel_scope.cancel()

                if hub.full():
                    conn.reply(error_frame(hub.now_s(), "too_many_connections",
                                           "the server is at its connection limit"))  # fmt: skip
                    await refuse(1013, "server at its connection limit; try again later")
                    return
                hub.register(conn)
                accounts = self.trading.accounts
                revocations = accounts.revocations
                signed = await sign_in(query, receive, accounts)
                if isinstance(signed, int):
                    await refuse(signed, REFUSALS[signed])
                    return
                user, token, auth, expires_ms = signed
                nursery.start_soon(self._expire, conn, expires_ms)
                digest = token_digest(token)
                self._by_token.setdefault(digest, set()).add(conn)
                state = self.attach(conn, user)
                await self.opened(state, auth, query)
                conn.wake()
                # A logout that committed while this socket signed in found no socket to close.
                if accounts.revocations != revocations and not await accounts.authenticate(token):
                    await refuse(CLOSE_BAD_TOKEN, "the token was revoked")
                    return
                await self._loop(conn, receive, state)
                nursery.cancel_scope.cancel()
        finally:
            if state is not None:
                self.closed(state)
            sockets = self._by_token.get(digest)
            if sockets is not None:
                sockets.discard(conn)
                if not sockets:
                    del self._by_token[digest]
            hub.unregister(conn)

    async def _expire(self, conn: Connection, expires_ms: int) -> None:
        """Close the socket when its token expires, as a request with it would be refused."""
        clock = self.trading.accounts.clock
        while (left := expires_ms - clock()) > 0:
            await trio.sleep(min(left / 1000, 3600.0))  # re-read the clock at least hourly
        conn.close(CLOSE_BAD_TOKEN, "the token expired")
        conn.wake()

    async def _loop(self, conn: Connection, receive: Receive, state: S) -> None:
        limiter = RateLimiter(self.limits.max_messages_per_s, 2 * self.limits.max_messages_per_s)
        # Messages dropped, less one for each let through: a flood that goes on is closed, as
        # on /ws/market/ (a client just over the rate never is).
        strikes = 0
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive" or conn.closing:
                continue
            if not limiter.allow():
                strikes += 1
                if strikes >= 2 * self.limits.max_messages_per_s:
                    conn.close(CLOSE_POLICY, "too many messages: over the rate limit for too long")
                elif strikes == 1 or strikes % 10 == 0:
                    self.error(conn, "rate_limited", "too many messages; they are being dropped")
                conn.wake()
                continue
            strikes = max(0, strikes - 1)
            text = event.get("text")
            if text is None:
                self.error(conn, "binary_not_supported", "send JSON text frames")
            else:
                message = parse(text)
                if message is BAD_JSON:
                    self.error(conn, "invalid_json", "the message is not JSON")
                else:
                    await self.received(state, message)
            conn.wake()


BAD_JSON = object()


def parse(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return BAD_JSON


async def sign_in(
    query: dict[str, list[str]], receive: Receive, accounts: Accounts
) -> tuple[User, str, dict[str, Any], int] | int:
    """The user of a socket: its token from `?token=`, or from a first message
    `{"type":"auth","token":...}` within AUTH_TIMEOUT_S; (user, token, that message or {},
    when the token expires in ms), else the close code: 4001 without a token, 4002 for a bad
    one."""
    token = (query.get("token") or [""])[0]
    auth: dict[str, Any] = {}
    if not token:
        with trio.move_on_after(AUTH_TIMEOUT_S):
            text = await next_text(receive)
            message = parse(text) if text is not None else None
            if isinstance(message, dict) and message.get("type") == "auth":
                auth = message
                raw = message.get("token")
                token = raw if isinstance(raw, str) else ""
    if not token:
        return CLOSE_NO_TOKEN
    found = await accounts.session(token)
    if found is None:
        return CLOSE_BAD_TOKEN
    return found[0], token, auth, found[1]


async def next_text(receive: Receive) -> str | None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return None
        if message["type"] == "websocket.receive":
            return str(message.get("text") or "")


async def drain(receive: Receive) -> None:
    """Wait for the client to go (our close frame is on its way), at most the close timeout."""
    with trio.move_on_after(5.0):
        while (await receive())["type"] != "websocket.disconnect":
            pass
