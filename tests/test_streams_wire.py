"""The streams on the wire: a real hypercorn on 127.0.0.1 port 0, driven by trio-websocket clients.

Every test runs twice: with the batched hypercorn write path (`ws_fast_path`) and with plain ASGI
sends. Each waits on frames or on the server's own counters, never on fixed sleeps, under a
`trio.fail_after` limit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tests.builders import ServerFactory, next_of, open_ws, send

pytestmark = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "asgi"])


async def test_seed_client_sequence(start_server: ServerFactory, fast_path: bool) -> None:
    url, _ = await start_server(ws_fast_path=fast_path)
    async with open_ws(url, "/ws/market/") as ws:
        await send(ws, {"type": "subscribe", "symbols": ["SCOM", "KCB"], "order_book": True})
        first = orjson.loads(await ws.get_message())
        assert first["type"] == "subscription_confirmed" and first["data"] == {
            "symbols": ["KCB", "SCOM"]
        }
        for symbol in ("SCOM", "KCB"):
            md = (await next_of(ws, "market_data", symbol=symbol))["data"]
            for field in (
                "price",
                "volume",
                "high",
                "low",
                "change",
                "changePercent",
                "bid",
                "ask",
            ):
                assert isinstance(md[field], (int, float)) and not isinstance(md[field], bool), (
                    field
                )
            assert isinstance(md["bid_size"], int) and isinstance(md["ask_size"], int)
            assert abs(md["timestamp"] - time.time() * 1000) < 60_000
            book = (await next_of(ws, "order_book", symbol=symbol))["data"]
            bids, asks = book["bids"], book["asks"]
            assert len(bids) == len(asks) == 10 and bids[0]["price"] < asks[0]["price"]
            assert [b["price"] for b in bids] == sorted((b["price"] for b in bids), reverse=True)
            assert [a["price"] for a in asks] == sorted(a["price"] for a in asks)
            assert bids[0]["total"] == pytest.approx(bids[0]["price"] * bids[0]["quantity"])
        await send(ws, {"type": "unsubscribe", "symbols": ["KCB"]})
        confirmed = await next_of(ws, "subscription_confirmed")
        assert confirmed["data"]["symbols"] == ["SCOM"]
        for _ in range(30):  # only SCOM from here on
            frame = orjson.loads(await ws.get_message())
            assert frame["data"]["symbol"] == "SCOM", frame
    # A reconnect starts from scratch and re-subscribes.
    async with open_ws(url, "/ws/market/") as ws:
        await send(ws, {"type": "subscribe", "symbols": ["EQTY"], "order_book": True})
        assert (await next_of(ws, "subscription_confirmed"))["data"]["symbols"] == ["EQTY"]
        assert (await next_of(ws, "market_data"))["data"]["symbol"] == "EQTY"


BAD_INPUTS = [
    ("not json", "invalid_json"),
    ('"a string"', "invalid_message"),
    ({"type": "explode"}, "unknown_type"),
    ({"symbols": ["SCOM"]}, "missing_type"),
    ({"type": "subscribe", "symbols": "SCOM"}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": ["NOPE"]}, "unknown_symbols"),
    ({"type": "subscribe", "symbols": ["SCOM"], "depth": 2.5}, "invalid_depth"),
    ({"type": "subscribe", "symbols": ["SCOM"], "order_book": 1}, "invalid_field"),
    (b"\x00binary", "binary_not_supported"),
]


async def test_bad_input_gets_an_error_frame_and_the_connection_lives(
    start_server: ServerFactory, fast_path: bool
) -> None:
    url, _ = await start_server(ws_fast_path=fast_path)
    async with open_ws(url, "/ws/market/") as bystander:
        await send(bystander, {"type": "subscribe", "symbols": ["KCB"]})
        await next_of(bystander, "subscription_confirmed")
        async with open_ws(url, "/ws/market/") as ws:
            for message, code in BAD_INPUTS:
                await send(ws, message)
                assert (await next_of(ws, "error"))["data"]["code"] == code
                await send(ws, {"type": "ping", "timestamp": 7})
                assert (await next_of(ws, "pong"))["data"]["timestamp"] == 7
        assert (await next_of(bystander, "market_data"))["data"]["symbol"] == "KCB"


async def test_oversized_message_closes_1009_and_the_server_lives(
    start_server: ServerFactory, fast_path: bool
) -> None:
    url, _ = await start_server(ws_fast_path=fast_path, ws_max_message_bytes=1024)
    async with open_ws(url, "/ws/market/") as ws:
        await send(ws, {"type": "subscribe", "symbols": ["SCOM" * 10] * 100})
        with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
        assert closed.value.reason.code == 1009
    async with open_ws(url, "/ws/market/") as ws:
        await send(ws, {"type": "ping"})
        await next_of(ws, "pong")


async def test_orderbook_endpoint(start_server: ServerFactory, fast_path: bool) -> None:
    url, _ = await start_server(ws_fast_path=fast_path)
    async with open_ws(url, "/ws/orderbook/scom/") as ws:
        await send(ws, {"depth": 5})
        # A book of the default depth may already be on its way; the new depth follows it.
        with trio.fail_after(5):
            while len((book := (await next_of(ws, "order_book"))["data"])["bids"]) != 5:
                pass
        assert book["symbol"] == "SCOM" and len(book["asks"]) == 5
        later = (await next_of(ws, "order_book"))["data"]  # then pushed as it changes
        assert later["seq"] >= book["seq"] and len(later["bids"]) == 5
        await send(ws, {"type": "snapshot", "depth": 3})
        assert len((await next_of(ws, "order_book"))["data"]["asks"]) == 3
        await send(ws, {"type": "ping", "timestamp": 1})
        await next_of(ws, "pong")
    async with open_ws(url, "/ws/orderbook/NOPE/") as ws:
        assert (await next_of(ws, "error"))["data"]["code"] == "unknown_symbol"
        with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4004


async def test_connection_limit(start_server: ServerFactory, fast_path: bool) -> None:
    url, _ = await start_server(ws_fast_path=fast_path, ws_max_connections=1)
    async with open_ws(url, "/ws/market/") as first:
        async with open_ws(url, "/ws/market/") as second:
            assert (await next_of(second, "error"))["data"]["code"] == "too_many_connections"
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                await second.get_message()
            assert closed.value.reason.code == 1013
        await send(first, {"type": "ping"})
        await next_of(first, "pong")


@asynccontextmanager
async def slow_client(url: str) -> AsyncIterator[WebSocketConnection]:
    """A client with a tiny receive buffer whose messages nobody reads until the test says so."""
    async with open_ws(url, "/ws/market/", rcvbuf=4096) as ws:
        yield ws


async def test_a_slow_client_is_closed_and_never_delays_the_others(
    start_server: ServerFactory, fast_path: bool
) -> None:
    url, runtime = await start_server(ws_fast_path=fast_path, ws_slow_client_timeout_s=1.0)
    everything = sorted(runtime.market.instruments)
    with trio.fail_after(60):
        async with (
            slow_client(url) as slow,
            open_ws(url, "/ws/market/") as healthy,
        ):
            await send(slow, {"type": "subscribe", "symbols": everything, "order_book": True,
                              "depth": 50, "trades": True, "candles": True})  # fmt: skip
            await send(healthy, {"type": "subscribe", "symbols": ["SCOM"], "order_book": True})
            await next_of(healthy, "subscription_confirmed")
            # While the slow one backs up, the healthy one sees every interval's update.
            seq = -1
            while runtime.hub.slow_closed == 0:
                book = (await next_of(healthy, "order_book"))["data"]
                assert book["seq"] > seq
                seq = book["seq"]
            for _ in range(5):
                book = (await next_of(healthy, "order_book"))["data"]
                assert book["seq"] > seq
                seq = book["seq"]
            # Reading again, the slow client finds the documented close at the end of its backlog
            # (or, if it stayed stuck past the grace period, a dropped connection).
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await slow.get_message()
            assert closed.value.reason.code in (4008, 1006)
            if closed.value.reason.code == 4008:
                assert "slow consumer" in (closed.value.reason.reason or "")
            else:
                assert fast_path and runtime.hub.dead_dropped >= 1
    async with httpx.AsyncClient(base_url=url) as http:
        streams = (await http.get("/api/health/")).json()["streams"]
    assert streams["slow_closed"] == 1 and streams["publishes"] > 0


@pytest.mark.parametrize("compression", [False, True])
async def test_permessage_deflate_is_a_setting(
    start_server: ServerFactory, fast_path: bool, compression: bool
) -> None:
    url, _ = await start_server(ws_fast_path=fast_path, ws_compression=compression)
    frames = await deflate_client(
        url, {"type": "subscribe", "symbols": ["SCOM"], "order_book": True}
    )
    assert frames.negotiated == compression
    assert [f["type"] for f in frames.received[:1]] == ["subscription_confirmed"]
    assert {"market_data", "order_book"} <= {f["type"] for f in frames.received}


class DeflateResult:
    def __init__(self, negotiated: bool, received: list[dict[str, Any]]) -> None:
        self.negotiated, self.received = negotiated, received


async def deflate_client(url: str, subscribe: dict[str, Any]) -> DeflateResult:
    """A browser-like client offering permessage-deflate (wsproto over a trio socket)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)
    ws = WSConnection(ConnectionType.CLIENT)
    deflate = PerMessageDeflate()
    await stream.send_all(
        ws.send(Request(host=parts.netloc, target="/ws/market/", extensions=[deflate]))
    )
    received: list[dict[str, Any]] = []
    negotiated = False
    partial = ""
    with trio.fail_after(10):
        while len(received) < 6:
            ws.receive_data(await stream.receive_some(65536))
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    negotiated = any(isinstance(e, PerMessageDeflate) for e in event.extensions)
                    await stream.send_all(
                        ws.send(TextMessage(data=orjson.dumps(subscribe).decode()))
                    )
                elif isinstance(event, TextMessage):
                    partial += event.data
                    if event.message_finished:
                        received.append(orjson.loads(partial))
                        partial = ""
    await stream.aclose()
    return DeflateResult(negotiated, received)


async def test_pings_keep_live_clients_and_drop_dead_ones(
    start_server: ServerFactory, fast_path: bool
) -> None:
    url, runtime = await start_server(ws_fast_path=fast_path, ws_ping_interval_s=0.2)
    parts = urlsplit(url)
    with trio.fail_after(20):
        async with open_ws(url, "/ws/market/") as live:  # trio-websocket answers pings
            dead = await trio.open_tcp_stream(parts.hostname or "", parts.port or 0)
            async with dead:
                await dead.send_all(
                    b"GET /ws/market/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )  # and then never a byte more, not even a pong
                await send(live, {"type": "subscribe", "symbols": ["SCOM"]})
                while runtime.hub.dead_dropped == 0:  # the live client keeps receiving meanwhile
                    await next_of(live, "market_data")
                received = b""
                while chunk := await dead.receive_some(65536):
                    received += chunk  # the handshake and pings, then the server hangs up
                assert received.startswith(b"HTTP/1.1 101")
            await send(live, {"type": "ping", "timestamp": 3})
            assert (await next_of(live, "pong"))["data"]["timestamp"] == 3
            assert len(runtime.hub.connections) == 1


async def test_shutdown_tells_clients_1001_going_away_at_once(
    start_server: ServerFactory, fast_path: bool
) -> None:
    """Clients hear 1001 when the server stops, not a dropped socket after the graceful wait."""
    stop = trio.Event()
    url, _ = await start_server(
        ws_fast_path=fast_path, graceful_timeout_s=60.0, shutdown_trigger=stop.wait
    )
    async with open_ws(url, "/ws/market/") as ws:
        await send(ws, {"type": "subscribe", "symbols": ["SCOM"]})
        await next_of(ws, "market_data")
        stop.set()
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:  # not 60
            while True:
                await ws.get_message()
        assert closed.value.reason.code == 1001
