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

import re
from typing import Any

from marketsrv.private.relay import History, Relay, UserSocket
from marketsrv.private.signed import SignedInEndpoint
from marketsrv.streams.connection import Connection
from marketsrv.streams.endpoint import ASGIApp
from marketsrv.streams.frames import error_frame, frame
from marketsrv.streams.hub import Hub
from marketsrv.streams.session import Limits
from marketsrv.trading import Trading
from marketsrv.trading.accounts import User


class UserStreamRouter(SignedInEndpoint[UserSocket]):
    """`/ws/user/` here, everything else to `app` (the market streams, Quart)."""

    path = re.compile(r"^/ws/user/?$")
    stream = "user"

    def __init__(
        self, app: ASGIApp, relay: Relay, trading: Trading, hub: Hub, limits: Limits,
        fast_path: bool,
    ) -> None:  # fmt: skip
        super().__init__(app, trading, hub, limits, fast_path, relay.max_resume + 256)
        self.relay = relay

    def attach(self, conn: Connection, user: User) -> UserSocket:
        return UserSocket(conn, user.id, user)

    async def opened(
        self, socket: UserSocket, auth: dict[str, Any], query: dict[str, list[str]]
    ) -> None:
        after: Any = query["after"][0] if query.get("after") else auth.get("after")
        start = _seq(after)
        await self._start(
            socket, start, hello=socket.user, bad_after=after is not None and start is None
        )

    def closed(self, state: UserSocket) -> None:
        self.relay.stop(state)

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

    async def received(self, socket: UserSocket, message: Any) -> None:
        conn, now = socket.conn, self.hub.now_s()
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


def _seq(value: Any) -> int | None:
    """A sequence number from a message or the query: a whole number 0 or more, else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    return None
