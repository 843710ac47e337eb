"""How stream frames reach a WebSocket: through plain ASGI, or through hypercorn's stream directly.

The plain path sends one ASGI `websocket.send` per frame. Our prototypes measured that most of the
server's CPU went to that per-frame write path (hypercorn, wsproto, trio's `send_all`), not to JSON
or Quart. Hypercorn has no public hook to batch writes, so `install()` wraps one method of its
`WSStream` (the object behind the ASGI `send` callable) and `HypercornTransport` then writes all of a
connection's frames of one interval as one `Data` event: one socket write per client per interval,
frames framed once for everyone. It also records when data last arrived (so silent, dead peers can
be dropped), strips the permessage-deflate offer when compression is off, answers a client that
sends frames before the handshake's answer with a clean 400, and can abort a connection whose
socket stopped draining.

All of that touches hypercorn internals, so it is active only for the hypercorn versions it was
tested with (`TESTED_HYPERCORN`); on any other version it logs a warning and every connection
uses `AsgiTransport`. The `ws_fast_path` setting turns the batched writes alone off; the stream
tests run both ways.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from typing import Any, Protocol

import trio

from marketsrv.streams.frames import Frame

log = logging.getLogger("marketsrv.streams")

TESTED_HYPERCORN = ("0.18.",)  # version prefixes; pyproject.toml allows no other
_LAST_RX = "_marketsrv_last_rx"
COMPRESSION_ATTR = "marketsrv_ws_compression"  # set on hypercorn's Config by server.py
CLOSE_TIMEOUT_ATTR = "marketsrv_ws_close_timeout_s"  # likewise
_CLOSE_WATCHED = "_marketsrv_close_watched"

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


class Transport(Protocol):
    async def send(self, frames: Sequence[Frame]) -> None: ...
    def can_write_now(self) -> bool: ...
    def write_now(self, frames: Sequence[Frame]) -> bytes: ...
    async def write_rest(self, data: bytes) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...
    async def abort(self) -> None: ...
    def last_received(self) -> float | None: ...


class AsgiTransport:
    """Standard ASGI: one `websocket.send` per frame. Works under any ASGI server."""

    def __init__(self, send: AsgiSend) -> None:
        self._send = send

    async def send(self, frames: Sequence[Frame]) -> None:
        for f in frames:
            await self._send({"type": "websocket.send", "text": f.text})

    def can_write_now(self) -> bool:
        return False  # plain ASGI writes only from a task

    def write_now(self, frames: Sequence[Frame]) -> bytes:
        raise NotImplementedError

    async def write_rest(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def abort(self) -> None:
        """Plain ASGI cannot drop a connection whose writes are stuck; the close frame waits."""

    def last_received(self) -> float | None:
        return None


class HypercornTransport(AsgiTransport):
    """Hypercorn's WebSocket stream at hand: with `batch`, all of one interval's frames go out in
    one write; either way the transport can tell when the peer last sent anything and can abort
    a connection whose writes no longer drain."""

    def __init__(self, send: AsgiSend, stream: Any, batch: bool) -> None:
        super().__init__(send)
        self._batch = batch
        self._stream = stream
        from wsproto.connection import ConnectionState
        from wsproto.events import TextMessage

        self._text_message = TextMessage
        self._open = ConnectionState.OPEN
        # Negotiated extensions (permessage-deflate) compress per connection, with state, so
        # such a connection cannot share pre-built frames. The handshake is done by now.
        self.deflate = bool(stream.connection._proto.extensions)
        # The TCP server under the HTTP/1.1 protocol under this stream: batched writes go
        # straight to its socket, under the lock hypercorn takes for its own writes.
        self._tcp = stream.send.__self__.send.__self__

    async def send(self, frames: Sequence[Frame]) -> None:
        if not self._batch:
            await super().send(frames)
            return
        stream = self._stream
        if stream.closed or stream.connection.state is not self._open:
            # Closed, or closing (hypercorn sent a Close, e.g. 1009): RFC 6455 5.5.1 allows
            # no data frame after it.
            raise trio.ClosedResourceError("the WebSocket is closed")
        if self.deflate:  # each message through wsproto and its compression context
            connection, message = stream.connection, self._text_message
            data = b"".join(connection.send(message(data=f.text)) for f in frames)
        else:
            data = b"".join([f.wire for f in frames])
        tcp = self._tcp
        async with tcp.send_lock:
            # Shielded as hypercorn shields its writes: a write cut in half would corrupt the
            # framing of whatever is sent after it (the close frame, at shutdown).
            with trio.CancelScope(shield=True):
                await tcp.stream.send_all(data)

    def can_write_now(self) -> bool:
        """Whether a write may go to the socket right now, from the trio thread without a task:
        batched, not compressed, open, and no write of anyone's in progress (the lock)."""
        stream = self._stream
        return (
            self._batch
            and not self.deflate
            and not stream.closed
            and stream.connection.state is self._open
            and not self._tcp.send_lock.locked()
        )

    def write_now(self, frames: Sequence[Frame]) -> bytes:
        """Write the frames with one non-blocking send, now; what the socket did not take
        (`write_rest` sends it, before anything else). Only after `can_write_now()`, with no
        await in between: nobody else writes meanwhile."""
        data = b"".join([f.wire for f in frames])
        try:
            written = os.write(self._tcp.stream.socket.fileno(), data)
        except BlockingIOError:
            written = 0
        except OSError:  # a broken connection: the task's write raises it properly
            written = 0
        return data[written:]

    async def write_rest(self, data: bytes) -> None:
        tcp = self._tcp
        async with tcp.send_lock:
            with trio.CancelScope(shield=True):  # as in send: never half a frame
                await tcp.stream.send_all(data)

    async def abort(self) -> None:
        """Close the TCP stream under a write that no longer drains; the peer sees a reset."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._tcp.stream.aclose()

    def last_received(self) -> float | None:
        last: float | None = getattr(self._stream, _LAST_RX, None)
        return last


_installed: bool | None = None


def install() -> bool:
    """Wrap hypercorn's `WSStream.handle` once; False (and a warning) on an untested version."""
    global _installed
    if _installed is not None:
        return _installed
    found = version("hypercorn")
    if not found.startswith(TESTED_HYPERCORN):
        log.warning(
            "hypercorn %s is not one the WebSocket fast path was tested with (%s): "
            "using plain ASGI sends",
            found,
            ", ".join(p + "*" for p in TESTED_HYPERCORN),
        )
        _installed = False
        return False
    from hypercorn.protocol.events import Body, Data, Request, StreamClosed
    from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
    from wsproto.connection import ConnectionState as WSState

    original = WSStream.handle

    async def handle(self: Any, event: Any) -> None:
        if isinstance(event, (Body, Data)):  # HTTP/2 carries WebSocket data as Body events
            setattr(self, _LAST_RX, trio.current_time())
            if not self.closed and not self.handshake.accepted:
                await _refuse_early_data(self)
                return
        elif isinstance(event, Request):
            setattr(self, _LAST_RX, trio.current_time())
            if not getattr(self.config, COMPRESSION_ATTR, True):
                headers = [
                    (n, v) for n, v in event.headers if n.lower() != b"sec-websocket-extensions"
                ]
                event = dataclasses.replace(event, headers=headers)
        await original(self, event)
        if isinstance(event, (Body, Data)) and not getattr(self, _CLOSE_WATCHED, False):
            connection = getattr(self, "connection", None)
            if connection is not None and connection.state is WSState.LOCAL_CLOSING:
                # hypercorn closed it on its own (a message over the size limit: 1009), where
                # the app's close timeout does not see it: the same patience applies here.
                setattr(self, _CLOSE_WATCHED, True)
                self.task_group.spawn(_drop_unanswered, self)

    async def _drop_unanswered(self: Any) -> None:
        await trio.sleep(getattr(self.config, CLOSE_TIMEOUT_ATTR, 3.0))
        if not self.closed:
            await self.send(StreamClosed(stream_id=self.stream_id))  # closes the TCP connection

    async def _refuse_early_data(self: Any) -> None:
        """A client sent frames before our 101 (RFC 6455 4.1 says it must wait): answer 400 and
        close, once. hypercorn's own answer races the app's accept through h11 and can end the
        server (pgjones/hypercorn#225); marking the stream closed first makes it ignore the
        accept, and the app is told the client left so that its task ends too."""
        self.closed = True
        if self.state == ASGIWebsocketState.HANDSHAKE:
            await self._send_error_response(400)
        await self.send(StreamClosed(stream_id=self.stream_id))  # closes the TCP connection
        if self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": 1002})

    WSStream.handle = handle  # type: ignore[method-assign]
    _installed = True
    return True


def transport_for(send: AsgiSend, fast_path: bool) -> Transport:
    """The best transport for this connection's ASGI `send` callable; `fast_path` batches writes."""
    stream = getattr(send, "__self__", None)
    # A stream closed before its handshake (early data, above) never got a wsproto connection;
    # plain ASGI sends to it are dropped, and its receive says the client left.
    # Under HTTP/1.1 only: batched writes go straight to the TCP socket, and aborting one means
    # closing that socket; inside an HTTP/2 connection (shared with other streams, framed by h2)
    # a WebSocket sends through plain ASGI.
    protocol = getattr(getattr(stream, "send", None), "__self__", None)
    if (
        install()
        and type(stream).__name__ == "WSStream"
        and hasattr(stream, "connection")
        and type(protocol).__name__ == "H11Protocol"
    ):
        return HypercornTransport(send, stream, batch=fast_path)
    return AsgiTransport(send)
