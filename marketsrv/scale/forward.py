"""An edge's way to its primary: every REST call and the private sockets, passed on as they are.

An edge keeps no ledger, so `/api/...` (orders, accounts, portfolio, history, and the market's
REST too, which then answers from the one true market), `/ws/user/` and `/ws/chat/` go to
`primary_url`: the request with its own headers and body (the caller's token with them), the
answer back unchanged. HTTP goes over a pool of keep-alive connections; each private socket is
one socket to the primary, so the primary checks every token itself and a logout closes the
socket at once, wherever it was opened. The primary sees the caller's address in
X-Forwarded-For: give it `proxy_hops = 1` (docs/scaling.md).
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import trio
import trio_websocket

from marketsrv.api.errors import error_body
from marketsrv.streams.endpoint import ASGIApp, Receive, Scope, Send

log = logging.getLogger("marketsrv.scale")

PRIVATE_SOCKETS = re.compile(r"^/ws/(user|chat)/?$")
# Hop-by-hop headers, and the forwarding ones, which the edge sets itself.
_NOT_PASSED = {
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"forwarded",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
}  # fmt: skip
_SOCKET_HEADERS = {b"authorization", b"origin", b"user-agent", b"cookie"}
_UNSENDABLE_CLOSE = {1005, 1006, 1015}  # codes that describe a close but may not be sent
CONNECT_S = 5.0  # to connect to the primary, and to close a socket to it


class Forwarder:
    """ASGI: the REST API and the private sockets to the primary, the rest to `app`."""

    def __init__(
        self, app: ASGIApp, primary_url: str, max_body: int, max_message: int, max_sockets: int
    ) -> None:
        self.app = app
        self.base = primary_url.rstrip("/")
        self.ws_base = "ws" + self.base[len("http") :]  # http -> ws, https -> wss
        self.max_body, self.max_message, self.max_sockets = max_body, max_message, max_sockets
        self.sockets = 0  # private sockets open through this edge
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/api/"):
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket" and PRIVATE_SOCKETS.match(path):
            await self.websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_with(send))
        else:
            await self.app(scope, receive, send)

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

    def _headers(self, scope: Scope, keep: set[bytes] | None = None) -> list[tuple[bytes, bytes]]:
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if (name.lower() in keep if keep is not None else name.lower() not in _NOT_PASSED)
        ]
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", str(client[0]).encode()))
        headers.append(
            (b"x-forwarded-proto", b"https" if scope["scheme"] in ("https", "wss") else b"http")
        )
        return headers

    # -- HTTP ---------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                why = f"the request body is over {self.max_body} bytes"
                await _answer(send, 413, error_body("body_too_large", why))
                return
            if not message.get("more_body"):
                break
        if self._client is None:
            self._client = httpx.AsyncClient(
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
            await _answer(send, 502, error_body("primary_unavailable", why))
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

    # -- WebSocket ----------------------------------------------------------------------------

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if self.sockets >= self.max_sockets:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1013,
                        "reason": "the server is at its connection limit"})  # fmt: skip
            return
        self.sockets += 1
        accepted = False
        target = urlsplit(self._target(self.ws_base, scope))
        resource = target.path + ("?" + target.query if target.query else "")
        try:
            with trio.fail_after(CONNECT_S):
                raw = await trio.open_tcp_stream(
                    target.hostname or "", target.port or (443 if target.scheme == "wss" else 80)
                )
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = raw
            if target.scheme == "wss":
                context = ssl.create_default_context()
                stream = trio.SSLStream(raw, context, server_hostname=target.hostname)
            # A stream of our own, closed here whoever closes first (trio-websocket's
            # open_websocket_url can leave its socket to the garbage collector).
            async with stream, trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_S):
                    upstream = await trio_websocket.wrap_client_stream(
                        nursery, stream, target.hostname or "", resource,
                        subprotocols=scope.get("subprotocols") or None,
                        extra_headers=self._headers(scope, _SOCKET_HEADERS),
                        max_message_size=self.max_message,
                    )  # fmt: skip
                await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
                accepted = True
                down = trio.CancelScope()
                nursery.start_soon(self._down, upstream, send, down, nursery.cancel_scope)
                await self._up(receive, upstream)  # returns when the client has gone
                down.cancel()
                with trio.move_on_after(CONNECT_S):
                    await upstream.aclose()
                nursery.cancel_scope.cancel()
        except (OSError, trio_websocket.HandshakeError, trio.TooSlowError) as exc:
            log.warning("the primary refused a %s socket: %r", scope["path"], exc)
            if not accepted:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1011,
                        "reason": "the primary server cannot be reached; try again"})  # fmt: skip
        finally:
            self.sockets -= 1

    async def _up(self, receive: Receive, upstream: trio_websocket.WebSocketConnection) -> None:
        """The client's messages to the primary, until the client goes."""
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] == "websocket.receive":
                try:
                    await upstream.send_message(message.get("text") or message.get("bytes") or "")
                except trio_websocket.ConnectionClosed:
                    await trio.sleep_forever()  # _down closes the client with the primary's code

    async def _down(
        self,
        upstream: trio_websocket.WebSocketConnection,
        send: Send,
        scope: trio.CancelScope,
        everything: trio.CancelScope,
    ) -> None:
        """The primary's messages to the client, then its close code and reason; then the end
        of the socket (`everything`). `scope` stops it first when the client goes."""
        with scope:
            try:
                await self._relay_down(upstream, send)
            except Exception as exc:  # the client went while we wrote: _up sees it too
                log.debug("a forwarded socket's client went: %r", exc)
            everything.cancel()

    async def _relay_down(self, upstream: trio_websocket.WebSocketConnection, send: Send) -> None:
        try:
            while True:
                message = await upstream.get_message()
                key = "text" if isinstance(message, str) else "bytes"
                await send({"type": "websocket.send", key: message})
        except trio_websocket.ConnectionClosed as closed:
            reason = closed.reason
            code = reason.code if reason is not None else 1011
            await send({
                "type": "websocket.close",
                "code": 1011 if code in _UNSENDABLE_CLOSE else code,
                "reason": (reason.reason if reason is not None else None) or "",
            })  # fmt: skip


async def _answer(send: Send, status: int, error: dict[str, Any]) -> None:
    body = orjson.dumps(error)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
