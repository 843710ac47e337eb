"""An edge's private sockets: `/ws/user/` and `/ws/chat/`, each passed on as one WebSocket to the
primary, message for message, with the primary's close code and reason passed back.

The primary checks the token and keeps the stream's place (`?after=`); the edge keeps the limits
of its own clients: how many such sockets it holds, how long a write to a client may stay stuck
(then 4008, as on every stream), and a 1001 to each of them when it shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
import trio_websocket

from marketsrv.streams.endpoint import Receive, Scope, Send

log = logging.getLogger("marketsrv.scale")

CONNECT_S = 5.0  # to connect to the primary, and to close a socket to it
_UNSENDABLE_CLOSE = {1005, 1006, 1015}  # codes that describe a close but may not be sent
_PASSED_HEADERS = {b"authorization", b"origin", b"user-agent", b"cookie"}


@dataclass
class _Socket:
    accepted: bool = False
    close: tuple[int, str] | None = None  # what to close the client with (None: it has gone)


class PrivateSockets:
    def __init__(
        self, ws_base: str, max_message: int, max_inbound: int, max_sockets: int, slow_s: float
    ) -> None:
        self.ws_base = ws_base  # ws://primary or wss://primary
        self.max_message = max_message  # from the primary (a resume can be long)
        self.max_inbound = max_inbound  # from a client: ws_max_message_bytes, as everywhere
        self.max_sockets, self.slow_s = max_sockets, slow_s
        self.open: set[trio.CancelScope] = set()
        self.going_away = False
        self._tls: ssl.SSLContext | None = None  # made once: it reads the CA bundle

    def close_all(self) -> None:
        """The server is stopping: every forwarded socket closes now with 1001."""
        self.going_away = True
        for scope in self.open:
            scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, target: str) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        state = _Socket()
        if self.going_away or len(self.open) >= self.max_sockets:
            state.close = (1013, "the server is at its connection limit")
        else:
            life = trio.CancelScope()
            self.open.add(life)
            try:
                with life:
                    await self._forward(scope, receive, send, target, state)
            finally:
                self.open.discard(life)
            if life.cancelled_caught:
                state.close = (1001, "the server is shutting down")
        if state.close is not None:
            with trio.move_on_after(CONNECT_S), contextlib.suppress(Exception):  # it may be gone
                if not state.accepted:
                    await send({"type": "websocket.accept"})
                code, reason = state.close
                await send({"type": "websocket.close", "code": code, "reason": reason})

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, target: str, state: _Socket
    ) -> None:
        url = urlsplit(self.ws_base + target)
        secure = url.scheme == "wss"
        state.close = (1011, "the primary server cannot be reached; try again")
        try:
            with trio.fail_after(CONNECT_S):
                raw = await trio.open_tcp_stream(
                    url.hostname or "", url.port or (443 if secure else 80)
                )
        except (OSError, trio.TooSlowError) as exc:
            log.warning("cannot reach the primary for %s: %r", url.path, exc)
            return
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = raw
        if secure:
            self._tls = self._tls or ssl.create_default_context()
            stream = trio.SSLStream(raw, self._tls, server_hostname=url.hostname)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() in _PASSED_HEADERS]
        # The caller's Host, so that the primary checks and links the name the client used.
        host = dict(scope["headers"]).get(b"host", (url.hostname or "").encode()).decode("latin-1")
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", str(client[0]).encode()))
        # A stream of our own, closed here whoever closes first (trio-websocket's
        # open_websocket_url can leave its socket to the garbage collector).
        async with stream:
            try:
                async with trio.open_nursery() as nursery:
                    with trio.fail_after(CONNECT_S):
                        upstream = await trio_websocket.wrap_client_stream(
                            nursery, stream, host,
                            url.path + (f"?{url.query}" if url.query else ""),
                            subprotocols=scope.get("subprotocols") or None,
                            extra_headers=headers, max_message_size=self.max_message,
                        )  # fmt: skip
                    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
                    state.accepted, state.close = True, None
                    down = trio.CancelScope()
                    nursery.start_soon(
                        self._down, upstream, send, state, down, nursery.cancel_scope
                    )
                    if await self._up(receive, upstream, state):  # the client went: close ours
                        down.cancel()
                        with trio.move_on_after(CONNECT_S):
                            await upstream.aclose()
                    nursery.cancel_scope.cancel()
            except* trio_websocket.ConnectionRejected as group:
                first = group.exceptions[0]
                status = (
                    first.status_code
                    if isinstance(first, trio_websocket.ConnectionRejected)
                    else "?"
                )
                log.warning("the primary refused a %s socket (HTTP %s)", url.path, status)
                state.close = (1008, f"the primary refused this socket (HTTP {status})")
            except* (OSError, trio_websocket.HandshakeError, trio.TooSlowError) as group:
                log.warning("cannot open a %s socket to the primary: %r", url.path, group)

    async def _up(
        self, receive: Receive, upstream: trio_websocket.WebSocketConnection, state: _Socket
    ) -> bool:
        """The client's messages to the primary; True when the client went (or sent too much:
        then `state` says 1009), False when the primary did (then `_down` has the close)."""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return True
            if message["type"] == "websocket.receive":
                text = message.get("text")
                data: str | bytes = text if text is not None else message.get("bytes") or b""
                if len(data) > self.max_inbound:
                    state.close = (1009, f"a message is at most {self.max_inbound} bytes")
                    return True
                try:
                    await upstream.send_message(data)
                except trio_websocket.ConnectionClosed:
                    await trio.sleep_forever()  # _down closes the client with the primary's code

    async def _down(
        self,
        upstream: trio_websocket.WebSocketConnection,
        send: Send,
        state: _Socket,
        scope: trio.CancelScope,
        done: trio.CancelScope,
    ) -> None:
        """The primary's messages to the client, then its close code; a client whose write stays
        stuck past `slow_s` is closed as on every stream (4008). `scope` stops it first when
        the client has gone; else it ends the socket (`done`)."""
        with scope:
            await self._relay(upstream, send, state)
            done.cancel()

    async def _relay(
        self, upstream: trio_websocket.WebSocketConnection, send: Send, state: _Socket
    ) -> None:
        try:
            while True:
                message = await upstream.get_message()
                key = "text" if isinstance(message, str) else "bytes"
                with trio.fail_after(self.slow_s):
                    await send({"type": "websocket.send", key: message})
        except trio_websocket.ConnectionClosed as closed:
            reason = closed.reason
            code = reason.code if reason is not None else 1011
            state.close = (
                1011 if code in _UNSENDABLE_CLOSE else code,
                (reason.reason if reason is not None else None) or "",
            )
        except trio.TooSlowError:
            state.close = (4008, f"slow consumer: fell more than {self.slow_s:g} s behind")
        except Exception as exc:  # the client went while we wrote: _up sees it too
            log.debug("a forwarded socket's client went: %r", exc)
