"""The access log (setting `access_log`), as ASGI middleware: one line per request.

hypercorn 0.18's own access log writes a second line, as an aborted request, whenever a client
hangs up while the last write of its answer is under way (as curl does), so marketsrv logs here
instead, where the request's end is certain: when the app sent its last body part, accepted or
refused a WebSocket, or returned without answering (`-`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

log = logging.getLogger("marketsrv.access")
MAX_AGENT = 256  # characters of the User-Agent logged
MAX_TARGET = 2048  # and of the path and query


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int | str] = ["-"]
        size = [0]
        logged = [False]

        def line() -> None:
            if logged[0]:
                return
            logged[0] = True
            client = scope.get("client") or ("-", 0)
            headers = dict(scope.get("headers") or ())
            agent = _clean(headers.get(b"user-agent", b"-").decode("latin-1"), MAX_AGENT)
            method = scope.get("method", "GET")
            path = scope.get("raw_path") or scope["path"].encode()
            query = (
                f"?{_redact(scope['query_string'].decode('latin-1'))}"
                if scope.get("query_string")
                else ""
            )
            target = _clean(path.decode("latin-1") + query, MAX_TARGET)
            ms = round((time.perf_counter() - started) * 1000, 1)
            log.info(
                '%s:%s "%s %s HTTP/%s" %s %s %.1fms "%s"',
                client[0], client[1], method, target, scope.get("http_version", "1.1"),
                status[0], size[0], ms, agent,
                # The same facts as fields, for log_format = json.
                extra={"client": client[0], "method": method, "path": target,
                       "status": status[0], "bytes": size[0], "ms": ms, "agent": agent},
            )  # fmt: skip

        async def logging_send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                status[0] = message["status"]
            elif kind == "http.response.body":
                size[0] += len(message.get("body", b""))
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                line()
            elif kind == "websocket.accept":
                status[0] = 101
                line()
            elif kind == "websocket.close" and status[0] == "-":
                status[0] = 403  # refused before the handshake: hypercorn answers 403
                line()

        try:
            await self.app(scope, receive, logging_send)
        finally:
            line()


def _redact(query: str) -> str:
    """A bearer token in the query (`/ws/user/?token=`) never reaches the log, however its name
    is written (`TOKEN`, `%74oken`): a parameter whose decoded name is `token` loses its value."""
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        parts.append(f"{name}=[redacted]" if unquote_plus(name).lower() == "token" else part)
    return "&".join(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str, limit: int) -> str:
    """At most `limit` characters, control characters escaped: one request, one log line."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
