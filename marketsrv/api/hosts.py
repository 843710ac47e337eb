"""The `Host` allow-list, as ASGI middleware in front of everything (REST and WebSockets).

A server on loopback is still reachable from a browser through DNS rebinding: a page on
`evil.example` re-points its own name at 127.0.0.1 and its scripts then talk to us as a
same-origin site, with the `Host: evil.example` header as the only tell. So a server bound to
loopback answers only loopback names by default (setting `allowed_hosts`); other requests get a
400 `invalid_host` (a WebSocket is refused before its handshake completes).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from marketsrv.api.errors import error_body

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
LOOPBACK_NAMES = ("localhost", ".localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return bool((mapped or address).is_loopback)


def allowed_hosts(setting: str, bound_host: str) -> tuple[str, ...] | None:
    """The allowed names (lower case), or None for any. `auto` follows the bound address."""
    if setting.strip() == "auto":
        return LOOPBACK_NAMES if is_loopback(bound_host) else None
    entries = [n.strip().lower() for n in setting.split(",") if n.strip()]
    if "*" in entries:
        return None
    # An entry may be written as a Host header would be: "[::1]", "example.com:8000".
    names = []
    for entry in entries:
        dot = entry.startswith(".")
        name = host_name(entry[1:].encode() if dot else entry.encode())
        names.append(("." if dot else "") + (name or entry))
    return tuple(names)


_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::[0-9]{1,5})?")


def host_name(header: bytes) -> str | None:
    """The name of a Host header without its port (`[::1]:8000` -> `::1`); None when it is not
    a well-formed host[:port] at all (`localhost:80@evil`, `[::1]evil`)."""
    match = _HOST.fullmatch(header.decode("latin-1").strip().lower())
    if match is None:
        return None
    return match["ip6"] or match["name"]


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry.startswith("."):
            if name.endswith(entry) or name == entry[1:]:
                return True
        elif name == entry:
            return True
    return False


class HostGuard:
    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not scope.get("path", "").startswith("/"):
            # A request line such as `GET ?x=1` reaches the app with an empty path, which the
            # framework fails on (500): it is the client's error.
            await _refuse(scope, receive, send, "bad_request", "The request target must be a path.")
            return
        if self.allowed is None:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", ()) if k == b"host"), None)
        # HTTP/1.0 may omit Host; browsers never do, so there is nothing to rebind then.
        name = None if header is None else host_name(header)
        if header is None or (name is not None and host_allowed(name, self.allowed)):
            await self.app(scope, receive, send)
            return
        message = "This server does not answer to that Host name (setting allowed_hosts)."
        await _refuse(scope, receive, send, "invalid_host", message)


async def _refuse(scope: dict[str, Any], receive: Any, send: Any, code: str, message: str) -> None:
    """400 with the error body; a WebSocket is refused (1008, answered as HTTP 403)."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})
        return
    body = orjson.dumps(error_body(code, message))
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
