"""`/ws/user/`: each user's private stream of their own orders, fills, cash and holdings.

    connect   ws://HOST/ws/user/?token=<token>[&after=<seq>]      (browsers)
              or, as the first message, {"type":"auth","token":"...","after":<seq>?}
    server    {"type":"ready","data":{"user":{...},"seq":<the user's last event>}, "seq":..}
              then every new event: {"type":"order.filled","data":{...},"seq":42,"ts":...}
    client    {"type":"resume","after":41}  ->  the events after 41, in order, then live again;
              or {"type":"resync_required",...} when the outbox no longer keeps them all
              {"type":"ping"}  ->  {"type":"pong",...}

Close codes: 4001 no token (the first message was not `auth`, or none came within
`AUTH_TIMEOUT_S`), 4002 a token that is invalid, expired or revoked (also later: a logout closes
the sockets opened with that token). Everything else (limits, slow consumers, 1009) is as on the
market streams, through the same hub.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs

import orjson
import trio

from marketsrv.private.relay import History, Relay, UserSocket
from marketsrv.streams.connection import Connection
from marketsrv.streams.endpoint import ASGIApp, Receive, Scope, Send, run_sender
from marketsrv.streams.frames import error_frame, frame
from marketsrv.streams.hub import Hub
from marketsrv.streams.session import Limits, RateLimiter
from marketsrv.streams.transport import transport_for
from marketsrv.trading import Trading
from marketsrv.trading.accounts import token_digest

log = logging.getLogger("marketsrv.private")

_USER = re.compile(r"^/ws/user/?$")
AUTH_TIMEOUT_S = 10.0
CLOSE_NO_TOKEN = 4001
CLOSE_BAD_TOKEN = 4002
CLOSE_POLICY = 1008


class UserStreamRouter:
    """An ASGI app: `/ws/user/` here, everything else to `app` (the market streams, Quart)."""

    def __init__(
        self, app: ASGIApp, relay: Relay, trading: Trading, hub: Hub, limits: Limits,
        fast_path: bool,
    ) -> None:  # fmt: skip
        self.app = app
        self.relay = relay
        self.trading = trading
        self.hub = hub
        self.limits = limits
        self.fast_path = fast_path
        trading.accounts.revocation_listeners.append(self._revoked)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _USER.match(scope["path"]):
            await self.serve(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _revoked(self, digest: bytes) -> None:
        for socket in self.relay.revoked(digest):
            socket.conn.close(CLOSE_BAD_TOKEN, "the token was revoked")

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        conn = Connection(
            transport_for(send, self.fast_path), market_data=False,
            max_replies=self.relay.max_resume + 256,
        )  # fmt: skip
        conn.order_book = False
        hub = self.hub
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        socket: UserSocket | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_sender, conn, nursery, self.limits.close_timeout_s)

                async def refuse(code: int, reason: str) -> None:
                    conn.close(code, reason)
                    await _drain(receive)  # our close frame is on its way; wait for theirs
                    nursery.cancel_scope.cancel()

                if hub.full():
                    conn.reply(error_frame(hub.now_s(), "too_many_connections",
                                           "the server is at its connection limit"))  # fmt: skip
                    await refuse(1013, "server at its connection limit; try again later")
                    return
                hub.register(conn)
                token = (query.get("token") or [""])[0]
                after: Any = (query.get("after") or [None])[0]
                if not token:
                    with trio.move_on_after(AUTH_TIMEOUT_S):
                        text = await _next_text(receive)
                        auth = _json(text) if text is not None else None
                        if isinstance(auth, dict) and auth.get("type") == "auth":
                            token = auth.get("token") if isinstance(auth.get("token"), str) else ""
                            after = auth.get("after")
                if not token:
                    await refuse(CLOSE_NO_TOKEN, "authentication required: ?token= or auth")
                    return
                accounts = self.trading.accounts
                revocations = accounts.revocations
                user = await accounts.authenticate(token)
                if user is None:
                    await refuse(CLOSE_BAD_TOKEN, "invalid, expired or revoked token")
                    return
                socket = UserSocket(conn, user.id, token_digest(token))
                start = _seq(after)
                await self._start(
                    socket, start, hello=user, bad_after=after is not None and start is None
                )
                # A logout that committed while this socket signed in found no socket to close.
                if accounts.revocations != revocations and not await accounts.authenticate(token):
                    await refuse(CLOSE_BAD_TOKEN, "the token was revoked")
                    return
                limiter = RateLimiter(self.limits.max_messages_per_s,
                                      2 * self.limits.max_messages_per_s)  # fmt: skip
                strikes = 0  # messages dropped in a row: a flood that goes on is closed
                while True:
                    event = await receive()
                    kind = event["type"]
                    if kind == "websocket.disconnect":
                        break
                    if kind == "websocket.receive" and not conn.closing:
                        if not limiter.allow():
                            strikes += 1
                            if strikes >= 2 * self.limits.max_messages_per_s:  # as /ws/market/
                                conn.close(CLOSE_POLICY, "message flood")
                                continue
                            conn.reply(error_frame(hub.now_s(), "rate_limited",
                                                   "too many messages; this one was dropped"))  # fmt: skip
                            conn.wake()
                            continue
                        strikes = 0
                        await self._message(socket, event.get("text"), event.get("bytes"))
                nursery.cancel_scope.cancel()
        finally:
            if socket is not None:
                self.relay.stop(socket)
            hub.unregister(conn)

    async def _start(
        self, socket: UserSocket, after: int | None, hello: Any = None, bad_after: bool = False
    ) -> None:
        relay, conn = self.relay, socket.conn
        history: History = await relay.start(socket, after)
        now = self.hub.now_s()
        if hello is not None:
            user = {"id": hello.id, "username": hello.username}
            conn.reply(frame("ready", {"user": user, "seq": history.latest}, now))
        if bad_after:  # after `ready`, which is always first
            conn.reply(error_frame(now, "invalid_after",
                                   "after must be a whole number; starting from now"))  # fmt: skip
        if after is not None and after > history.latest:
            conn.reply(error_frame(now, "invalid_after",
                                   f"after {after} is past your last event ({history.latest})",
                                   seq=history.latest))  # fmt: skip
            after = None
        elif after is not None and (
            after + 1 < history.oldest or len(history.events) > relay.max_resume
        ):
            conn.reply(frame("resync_required", {
                "after": after, "oldest": history.oldest, "seq": history.latest,
                "message": "the events after that are no longer all kept: read the state over"
                           " REST, then follow the stream from seq",
            }, now))  # fmt: skip
            after = None
        relay.go_live(socket, history, after)
        conn.wake()

    async def _message(self, socket: UserSocket, text: str | None, data: bytes | None) -> None:
        conn, now = socket.conn, self.hub.now_s()
        if text is None:
            conn.reply(error_frame(now, "binary_not_supported", "send JSON text frames"))
            return
        message = _json(text)
        if message is _BAD:
            conn.reply(error_frame(now, "invalid_json", "the message is not JSON"))
            return
        if not isinstance(message, dict):
            conn.reply(error_frame(now, "invalid_message", "a message is a JSON object"))
            return
        kind = message.get("type")
        if kind == "ping":
            conn.reply(frame("pong", {"timestamp": message.get("timestamp"),
                                      "server_time": int(now * 1000)}, now))  # fmt: skip
        elif kind == "resume":
            after = _seq(message.get("after"))
            if after is None:
                conn.reply(error_frame(now, "invalid_after",
                                       "after must be a whole number: the last seq you have"))  # fmt: skip
                return
            await self._start(socket, after)
        elif kind == "auth":
            conn.reply(error_frame(now, "already_authenticated", "this socket is signed in"))
        elif kind is None:
            conn.reply(error_frame(now, "missing_type", "every message needs a type"))
        else:
            conn.reply(error_frame(now, "unknown_type", f"unknown message type {kind!r}",
                                   known=["resume", "ping"]))  # fmt: skip
        conn.wake()


_BAD = object()


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _BAD


def _seq(value: Any) -> int | None:
    """A sequence number from a message or the query: a whole number 0 or more, else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    return None


async def _next_text(receive: Receive) -> str | None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return None
        if message["type"] == "websocket.receive":
            return str(message.get("text") or "")


async def _drain(receive: Receive) -> None:
    """Wait for the client to go (our close frame is on its way), at most the close timeout."""
    with trio.move_on_after(5.0):
        while (await receive())["type"] != "websocket.disconnect":
            pass
