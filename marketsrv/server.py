"""Serving the app with hypercorn's trio worker, following trio's `nursery.start` protocol.

    url = await nursery.start(serve, settings)

returns once the socket listens, with the bound URL (so `port = 0` works in tests). The server
shuts down gracefully when `shutdown_trigger` returns or the surrounding scope is cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from marketsrv.app import build_runtime, create_asgi
from marketsrv.runtime import Runtime
from marketsrv.settings import Settings
from marketsrv.streams.transport import CLOSE_TIMEOUT_ATTR, COMPRESSION_ATTR
from marketsrv.streams.transport import install as install_transport_hook

log = logging.getLogger("marketsrv")
CONNECTION_EVENT_S = 5.0  # at most this long to close a connection or restart its idle timer


def guard_connections() -> None:
    """Keep an error in one connection's task from ending the server.

    hypercorn runs each TCP connection as a task of the nursery that serves the listening socket,
    so an exception that escapes `TCPServer.run` cancels every connection and closes the port.
    hypercorn 0.18 lets one escape on a WebSocket upgrade followed by early data in the same
    packet (h11's `LocalProtocolError`; pgjones/hypercorn#225), and its next bug may be another.
    Wrapping that one method (a stable name in every hypercorn with a trio worker) turns any
    such error into a logged, closed connection. Cancellation still passes through.

    It also lets a finished connection close. hypercorn handles the end of a response (close
    for `Connection: close` and HTTP/1.0, or start the keep-alive timer) inside the request's
    task, which quart-trio cancels once the response is sent: the close's first checkpoint
    raised Cancelled, so such sockets stayed open for good and one client could hold every file
    descriptor (pgjones/hypercorn#330 is the symptom). Those connection events now run shielded,
    under a deadline.
    """
    from hypercorn.events import RawData
    from hypercorn.trio.tcp_server import TCPServer

    if getattr(TCPServer, "_marketsrv_guarded", False):
        return
    original = TCPServer.run

    async def run(self: TCPServer) -> None:
        try:
            await original(self)
        except* Exception as group:
            log.warning(
                "a connection failed inside the HTTP server and was closed: %s",
                "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions),
            )
            log.debug("the connection's error", exc_info=group)
            with (
                trio.CancelScope(shield=True),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
            ):
                await self.stream.aclose()

    original_send = TCPServer.protocol_send

    async def protocol_send(self: TCPServer, event: Any) -> None:
        if isinstance(event, RawData):  # hypercorn shields its own writes
            await original_send(self, event)
            return
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CONNECTION_EVENT_S):
            await original_send(self, event)

    TCPServer.run = run  # type: ignore[method-assign]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    TCPServer._marketsrv_guarded = True  # type: ignore[attr-defined]


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout_s
    config.accesslog = None  # app.AccessLog logs each request once (hypercorn's can log twice)
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.websocket_max_message_size = settings.ws_max_message_bytes
    config.websocket_ping_interval = settings.ws_ping_interval_s or None
    # Read by the stream transport's hypercorn hook (streams/transport.py), which is installed
    # here so that it can refuse permessage-deflate whichever write path the connections use.
    setattr(config, COMPRESSION_ATTR, settings.ws_compression)
    setattr(config, CLOSE_TIMEOUT_ATTR, settings.ws_close_timeout_s)
    guard_connections()
    if not install_transport_hook() and not settings.ws_compression:
        log.warning("cannot refuse permessage-deflate on this hypercorn; clients may negotiate it")
    return config


def listen(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything else starts, so that a busy port is an error
    of its own (OSError) before the database, the simulator or any announcement."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn does
        sock.bind((settings.host, settings.port))
        sock.listen(Config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    sock: socket.socket | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown_trigger` returns; report the bound URL through `task_status`.

    `sock` is a socket from `listen()`, handed over to hypercorn; without one it binds its own.
    """
    runtime = runtime or build_runtime(settings)
    app = create_asgi(runtime)
    config = hypercorn_config(settings)
    if sock is not None:
        config.bind = [f"fd://{sock.detach()}"]
    hub = runtime.hub

    async def trigger() -> None:
        if shutdown_trigger is None:
            await trio.sleep_forever()
        else:
            await shutdown_trigger()
        # Connections now get `graceful_timeout_s` to finish: WebSocket clients are told so
        # (1001) and close; one whose socket stopped draining would hold its (shielded) write
        # past that, so the hub drops such at once.
        hub.close_all()

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: hypercorn_serve(
                app, config, shutdown_trigger=trigger, task_status=task_status
            )
        )
        task_status.started(binds[0])
