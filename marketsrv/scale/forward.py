"""An edge's way to its primary: every REST call and the private sockets, passed on as they are.

An edge keeps no ledger, so `/api/...` (orders, accounts, portfolio, history, and the market's
REST too, which then answers from the one true market), `/ws/user/` and `/ws/chat/` go to
`primary_url`: the request with its own headers and body (the caller's token with them), the
answer back unchanged. HTTP goes over a pool of keep-alive connections; each private socket is
one socket to the primary (sockets.py), so the primary checks every token itself and a logout
closes the socket at once, wherever it was opened. The primary sees the caller's address in
X-Forwarded-For: give it `proxy_hops = 1` (docs/scaling.md).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import orjson
import trio

from marketsrv.api.errors import error_body
from marketsrv.scale.sockets import PrivateSockets
from marketsrv.streams.endpoint import ASGIApp, Receive, Scope, Send

log = logging.getLogger("marketsrv.scale")
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line for every forwarded request

PRIVATE_SOCKETS = re.compile(r"/ws/(user|chat)/?")
# What an edge answers itself over HTTP: its page and files, its docs, its operator endpoints.
# Everything else (the whole REST API, under any spelling) is the primary's.
_LOCAL = re.compile(r"/|/static/.+|/docs(/[^/]*)?/?|/metrics/?|/-/[^/]+")
_UNSAFE = re.compile(r"(^|/)\.{1,2}(/|$)|#")
BODY_TIMEOUT_S = 60.0  # for a request's body to arrive, as the primary allows (then 408)
# Hop-by-hop headers, and the forwarding ones, which the edge sets itself.
_NOT_PASSED = {
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"content-length", b"forwarded",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
}  # fmt: skip


class Forwarder:
    """ASGI: the REST API and the private sockets to the primary, the rest to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        primary_url: str,
        max_body: int,
        sockets: PrivateSockets,
        cors_origins: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.cors = cors_origins
        self.base = primary_url.rstrip("/")
        self.max_body = max_body
        self.sockets = sockets
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind, path = scope["type"], scope.get("path", "")
        if kind == "lifespan":
            await self.app(scope, receive, self._closing_with(send))
        elif (kind == "http" and _LOCAL.fullmatch(path)) or kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
        elif _UNSAFE.search(path) or not (scope.get("raw_path") or b"/").startswith(b"/"):
            # Never pass on a path that the primary (or httpx) would read otherwise: dot
            # segments, a fragment, an absolute-form target.
            if kind == "http":
                why = "no such endpoint (a path with . or .. segments, or not a path); see /docs"
                await self._answer(scope, send, 404, error_body("not_found", why))
        elif kind == "http":
            await self.http(scope, receive, send)
        elif PRIVATE_SOCKETS.fullmatch(path):
            await self.sockets(scope, receive, send, self._target("", scope))
        else:
            await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, status: int, error: dict[str, Any]) -> None:
        """An error of the edge's own, with the CORS headers the primary's answers carry, so a
        page of another origin reads it rather than a CORS failure."""
        body = orjson.dumps(error)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        origin = dict(scope["headers"]).get(b"origin")
        if origin is not None and ("*" in self.cors or origin.decode("latin-1") in self.cors):
            allowed = b"*" if "*" in self.cors else origin
            headers += [(b"access-control-allow-origin", allowed), (b"vary", b"Origin")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _closing_with(self, send: Send) -> Send:
        async def lifespan_send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self._client is not None:
                await self._client.aclose()
            await send(message)

        return lifespan_send

    def _target(self, base: str, scope: Scope) -> str:
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        return base + path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")

    def _headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The caller's headers but the hop-by-hop ones (and those its Connection names)."""
        hop = set(_NOT_PASSED)
        for name, value in scope["headers"]:
            if name.lower() == b"connection":
                hop.update(v.strip().lower() for v in value.split(b","))
        headers = [(name, value) for name, value in scope["headers"] if name.lower() not in hop]
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", str(client[0]).encode()))
        headers.append(
            (b"x-forwarded-proto", b"https" if scope["scheme"] in ("https", "wss") else b"http")
        )
        return headers

    # -- HTTP ---------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = error_body("body_too_large", f"the request body is over {self.max_body} bytes")
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body:
            await self._answer(scope, send, 413, too_large)
            return
        body = bytearray()
        with trio.move_on_after(BODY_TIMEOUT_S) as waited:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if len(body) > self.max_body:
                    await self._answer(scope, send, 413, too_large)
                    return
                if not message.get("more_body"):
                    break
        if waited.cancelled_caught:
            why = f"the request body did not arrive within {BODY_TIMEOUT_S:g} s"
            await self._answer(scope, send, 408, error_body("request_timeout", why))
            return
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False,  # never through an HTTP(S)_PROXY of the environment
                timeout=httpx.Timeout(30.0, connect=5.0),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        request = self._client.build_request(
            scope["method"], self._target(self.base, scope),
            headers=self._headers(scope), content=bytes(body),
        )  # fmt: skip
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("the primary did not answer %s %s: %r", scope["method"], scope["path"], exc)
            why = "the primary server cannot be reached; try again"
            await self._answer(scope, send, 502, error_body("primary_unavailable", why))
            return
        try:
            headers = [  # hypercorn adds its own Date
                (k, v) for k, v in response.headers.raw if k.lower() not in _NOT_PASSED | {b"date"}
            ]
            if "content-length" in response.headers:
                headers.append((b"content-length", response.headers["content-length"].encode()))
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": headers})  # fmt: skip
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError as exc:  # the answer broke off: end ours (its status is sent)
            log.warning("the primary's answer to %s broke off: %r", scope["path"], exc)
        finally:
            await response.aclose()
