"""Client addresses behind reverse proxies (setting `proxy_hops`), as ASGI middleware.

Behind nginx or Caddy every request's TCP peer is the proxy. With `proxy_hops = N` the client is
the N-th address from the right of `X-Forwarded-For` (each trusted proxy appends the address it
saw) and the scheme is `X-Forwarded-Proto`, so the login throttles count real clients, the access
log names them, and the operator endpoints see a remote client as remote. Nothing else is taken
from the headers (not the Host: the allow-list judges the Host the proxy passed on). Only for a
server that the proxies alone can reach: anyone else could claim any address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class ForwardedFor:
    def __init__(self, app: ASGIApp, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            addresses: list[str] = []
            proto = None
            for name, value in scope.get("headers") or ():
                if name == b"x-forwarded-for":
                    addresses += [a.strip() for a in value.decode("latin-1").split(",")]
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").split(",")[-1].strip().lower()
            if addresses or proto:
                scope = dict(scope)  # the server's scope is not ours to change
                if addresses:
                    # Fewer addresses than trusted proxies, or one that is not an IP address:
                    # the client is unknown, never the proxy's own (loopback) address.
                    found = addresses[-self.hops] if len(addresses) >= self.hops else ""
                    scope["client"] = (_address(found), 0)
                if proto in ("http", "https"):
                    websocket = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if websocket else proto
        await self.app(scope, receive, send)


def _address(text: str) -> str:
    """An IP address as written by a proxy (nginx's `$remote_addr`), or "" for anything else."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""
