"""`/ws/chat/`: direct messages between users, as the backend marketsrv replaces offered them.

    connect   ws://HOST/ws/chat/?token=<token>   (or a first message {"type":"auth","token":...})
              -> {"type":"chat.unread","unread":{"total":n,"threads":[...]}}
    client    {"type":"chat.message","to":<user id or username>,"text":"...","data":<any JSON>?}
              -> {"type":"chat.sent","message":{...}} to this socket, once it is stored;
                 {"type":"chat.message","message":{...}} to every socket of the receiver and
                 to the sender's other sockets
              {"type":"chat.read","with":<user>}  -> {"type":"chat.unread",...} to all of mine
              {"type":"presence.ping"}  -> {"type":"presence.pong",...}: online for 60 s more
    errors    {"type":"error","code":"...","error":"<words>","message":"<words>"}: an unknown
              type is {"error":"unknown message type"} as the replaced backend said it; the
              socket stays open

Close codes as on /ws/user/: 4001 without a token, 4002 for a bad or revoked one. A message is
acknowledged (`chat.sent`) only once its transaction is durable, like an order.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from marketsrv.chat import messages
from marketsrv.chat.presence import ONLINE_S, Presence
from marketsrv.errors import BadRequest, MarketsrvError
from marketsrv.private.signed import SignedInEndpoint
from marketsrv.streams.connection import Connection
from marketsrv.streams.endpoint import ASGIApp
from marketsrv.streams.frames import Frame
from marketsrv.streams.hub import Hub
from marketsrv.streams.session import Limits
from marketsrv.trading import Trading
from marketsrv.trading.accounts import User
from marketsrv.trading.throttle import Throttle


@dataclass(eq=False)
class ChatSocket:
    conn: Connection
    user: User


class ChatRouter(SignedInEndpoint[ChatSocket]):
    """`/ws/chat/` here, everything else to `app`."""

    path = re.compile(r"^/ws/chat/?$")
    stream = "chat"

    def __init__(
        self, app: ASGIApp, trading: Trading, hub: Hub, limits: Limits, fast_path: bool,
        presence: Presence, per_minute: int,
    ) -> None:  # fmt: skip
        super().__init__(app, trading, hub, limits, fast_path)
        self.presence = presence
        self.sockets: dict[int, set[ChatSocket]] = {}
        # Messages a user may send a minute, over all their sockets (0: no limit).
        self.throttle = Throttle(per_minute, 60.0, time.monotonic, what="messages")

    def send(self, conn: Connection, body: dict[str, Any]) -> None:
        conn.reply(Frame.stored(str(body["type"]), orjson.dumps(body), self.hub.now_s()))

    def error(self, conn: Connection, code: str, message: str) -> None:
        self.send(conn, {"type": "error", "code": code, "error": message, "message": message})

    def attach(self, conn: Connection, user: User) -> ChatSocket:
        socket = ChatSocket(conn, user)
        self.sockets.setdefault(user.id, set()).add(socket)
        self.presence.opened(user.id)
        return socket

    async def opened(
        self, socket: ChatSocket, auth: dict[str, Any], query: dict[str, list[str]]
    ) -> None:
        await self._unread(socket.user.id, [socket])

    def closed(self, state: ChatSocket) -> None:
        self.presence.closed(state.user.id)
        sockets = self.sockets.get(state.user.id)
        if sockets is not None:
            sockets.discard(state)
            if not sockets:
                del self.sockets[state.user.id]

    async def _unread(self, user_id: int, to: list[ChatSocket]) -> None:
        store = self.trading.store
        unread = await store.read(lambda conn: messages.unread(conn, user_id))
        for socket in to:
            self.send(socket.conn, {"type": "chat.unread", "unread": unread})
            socket.conn.wake()

    async def received(self, socket: ChatSocket, message: Any) -> None:
        conn = socket.conn
        if not isinstance(message, dict):
            self.error(conn, "invalid_message", "a message is a JSON object")
            return
        kind = message.get("type")
        if kind is None:
            self.error(conn, "missing_type", "every message needs a type")
            return
        try:
            if kind == "chat.message":
                await self._chat(socket, message)
            elif kind == "chat.read":
                await self._read(socket, message)
            elif kind == "presence.ping":
                self.presence.seen(socket.user.id)
                self.send(conn, {"type": "presence.pong", "online_for_s": int(ONLINE_S),
                                 "server_time": int(self.hub.now_s() * 1000)})  # fmt: skip
            elif kind == "auth":
                self.error(conn, "already_authenticated", "this socket is signed in")
            else:
                self.error(conn, "unknown_type", "unknown message type")
        except MarketsrvError as exc:
            self.error(conn, exc.code, exc.message)

    async def _chat(self, socket: ChatSocket, message: dict[str, Any]) -> None:
        me = socket.user.id
        key = str(me)
        wait = self.throttle.retry_after(key)
        if wait > 0:
            self.error(socket.conn, "rate_limited",
                       f"too many messages: wait {math.ceil(wait)} s; this one was not sent")  # fmt: skip
            return
        to = _user(message.get("to"), "to")
        text, data = messages.check(message.get("text"), message.get("data"))
        now = self.trading.accounts.clock()
        # Charged before the write (parallel sockets of one user cannot all pass the check),
        # refunded if it is refused: what was sent counts, a refusal does not.
        stamp = self.throttle.charge(key) if self.throttle.limit > 0 else None
        # Once queued the message commits whatever happens to this socket: deliver it too.
        with trio.CancelScope(shield=True):
            try:
                sent = await self.trading.store.write(
                    lambda conn: messages.send(conn, me, to, text, data, now)
                )
            except MarketsrvError:
                if stamp is not None:
                    self.throttle.refund(key, stamp)
                raise
            self.send(socket.conn, {"type": "chat.sent", "message": sent})
            out = {"type": "chat.message", "message": sent}
            others = [s for s in self.sockets.get(me, ()) if s is not socket]
            for other in [*self.sockets.get(sent["receiver"], ()), *others]:
                self.send(other.conn, out)
                other.conn.wake()

    async def _read(self, socket: ChatSocket, message: dict[str, Any]) -> None:
        me, other = socket.user.id, _user(message.get("with"), "with")
        until = message.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, int)):
            self.error(socket.conn, "invalid_until", "until is the id of the last message read")
            return
        await self.trading.store.write(lambda conn: messages.mark_read(conn, me, other, until))
        await self._unread(me, list(self.sockets.get(me, ())))


def _user(value: object, field: str) -> int | str:
    """A user as a message names one: an id or a username, else `invalid_receiver`."""
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise BadRequest("invalid_receiver", f"`{field}` names a user: an id or a username")
    return value
