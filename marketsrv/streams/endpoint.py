"""The WebSocket endpoints, as plain ASGI in front of the Quart app.

`/ws/market/` and `/ws/orderbook/<symbol>/` (with or without the trailing slash) are served here;
every other request goes to Quart. Owning the ASGI `send` callable is what lets a connection use the
batched transport (transport.py). Each connection runs two tasks in its own nursery: the receive loop
(which feeds the session) and the sender (which drains the outbox).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from marketsrv.streams.connection import CLOSE_TRY_AGAIN, CLOSE_UNKNOWN_SYMBOL, Connection
from marketsrv.streams.frames import error_frame
from marketsrv.streams.hub import Hub
from marketsrv.streams.session import Limits, Session
from marketsrv.streams.transport import transport_for

log = logging.getLogger("marketsrv.streams")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Loose on purpose: Quart, hypercorn and this router each spell the ASGI types their own way.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

_MARKET = re.compile(r"^/ws/market/?$")
_ORDERBOOK = re.compile(r"^/ws/orderbook/([^/]+)/?$")


class StreamRouter:
    """An ASGI app: our WebSocket paths here, everything else (HTTP, lifespan) to `app`."""

    def __init__(self, app: ASGIApp, hub: Hub, limits: Limits, fast_path: bool) -> None:
        self.app = app
        self.hub = hub
        self.limits = limits
        self.fast_path = fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path = scope["path"]
            if _MARKET.match(path):
                await self.serve(receive, send, None)
                return
            match = _ORDERBOOK.match(path)
            if match:
                await self.serve(receive, send, match.group(1).strip().upper()[:64])
                return
        await self.app(scope, receive, send)

    async def serve(self, receive: Receive, send: Send, symbol: str | None) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        hub = self.hub
        transport = transport_for(send, self.fast_path)
        conn = Connection(
            transport,
            stream="market" if symbol is None else "orderbook",
            counters=hub.counters,
            market_data=symbol is None,
            book_snapshot=hub.book_snapshot,
        )
        if hub.full():
            conn.reply(
                error_frame(
                    hub.now_s(), "too_many_connections", "the server is at its connection limit"
                )
            )
            conn.close(CLOSE_TRY_AGAIN, "server at its connection limit; try again later")
        elif symbol is not None and symbol not in hub.market.instruments:
            conn.reply(
                error_frame(
                    hub.now_s(), "unknown_symbol", f"unknown symbol '{symbol}'", symbol=symbol
                )
            )
            conn.close(CLOSE_UNKNOWN_SYMBOL, "unknown symbol")
        else:
            hub.register(conn)
            if symbol is not None:
                hub.subscribe(conn, [symbol])
        session = Session(hub, conn, self.limits, symbol)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_sender, conn, nursery, self.limits.close_timeout_s)
                while True:
                    message = await receive()
                    kind = message["type"]
                    if kind == "websocket.receive":
                        session.receive(message.get("text"), message.get("bytes"))
                    elif kind == "websocket.disconnect":
                        break
                nursery.cancel_scope.cancel()
        finally:
            hub.unregister(conn)


async def run_sender(conn: Connection, nursery: trio.Nursery, close_timeout_s: float) -> None:
    """A connection's sender, ending the connection's nursery once its close is out (any
    WebSocket endpoint of ours: the market streams and /ws/user/)."""
    try:
        await conn.run_sender()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
        # The peer went away mid-write; the receive loop sees the disconnect. (Busy: hypercorn
        # closing the socket of a client that hung up, under our batched write.)
        return
    except Exception:
        log.exception("stream sender failed")
        nursery.cancel_scope.cancel()
        return
    # Our close frame is out. A client that never answers it (and so never disconnects)
    # would hold the socket for ever, unregistered and so out of the watchdog's sight:
    # give it the close timeout, then end the connection from this side.
    await trio.sleep(close_timeout_s)
    nursery.cancel_scope.cancel()
