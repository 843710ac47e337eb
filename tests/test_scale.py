"""A primary and its edges over a real redis-server (docs/scaling.md), as real processes.

The edges must serve the primary's own frames (byte for byte), books that end equal to the
primary's, the private stream, and recover by themselves from Redis, an edge or the primary
being killed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import coredis
import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tests.builders import REPO, next_of, open_ws, send
from tests.cluster import (
    Cluster,
    bus_url,
    kill,
    redis_server,
)

pytestmark = pytest.mark.timeout(180)


class ClientBook:
    """A book kept from diff mode as the protocol says a client keeps it."""

    def __init__(self) -> None:
        self.bids: dict[float, int] = {}
        self.asks: dict[float, int] = {}
        self.seq = -1
        self.snapshots = 0
        self.changed = trio.Event()

    def take(self, frame: dict[str, Any]) -> None:
        data = frame["data"]
        if frame["type"] == "order_book":
            self.bids = {lv["price"]: lv["quantity"] for lv in data["bids"]}
            self.asks = {lv["price"]: lv["quantity"] for lv in data["asks"]}
            self.snapshots += 1
        elif frame["type"] == "order_book_update":
            assert data["prev_seq"] <= self.seq < data["seq"], (self.seq, data)
            for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
                for lv in levels:
                    if lv["quantity"]:
                        side[lv["price"]] = lv["quantity"]
                    else:
                        side.pop(lv["price"], None)
        else:
            return
        self.seq = data["seq"]
        self.changed.set()
        self.changed = trio.Event()

    def top(self, depth: int) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        return (
            sorted(self.bids.items(), reverse=True)[:depth],
            sorted(self.asks.items())[:depth],
        )


async def keep_book(ws: WebSocketConnection, book: ClientBook) -> None:
    try:
        while True:
            book.take(orjson.loads(await ws.get_message()))
    except ConnectionClosed:
        return


async def subscribe_book(ws: WebSocketConnection, symbol: str) -> None:
    await send(ws, {"type": "subscribe", "symbols": [symbol], "book_mode": "diff"})


async def in_step(book: ClientBook, primary: str, symbol: str, after_seq: int = -1) -> int:
    """Wait until the client's book equals the primary's REST snapshot at the same seq (a seq
    past `after_seq`); that seq."""
    async with httpx.AsyncClient(base_url=primary, timeout=5) as http:
        with trio.fail_after(30):
            while True:
                await book.changed.wait()
                try:
                    answer = await http.get(f"/api/stocks/{symbol}/orderbook/?depth=50")
                except httpx.TransportError:
                    continue  # the primary is restarting
                rest = answer.json()
                if rest["seq"] == book.seq and rest["seq"] > after_seq:
                    bids, asks = book.top(50)
                    assert bids == [(lv["price"], lv["quantity"]) for lv in rest["bids"]]
                    assert asks == [(lv["price"], lv["quantity"]) for lv in rest["asks"]]
                    return book.seq


# -- with the bus off, nothing changes ---------------------------------------------------------


def test_a_standalone_server_never_imports_the_bus(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from marketsrv.app import build_runtime, create_asgi\n"
        "from marketsrv.settings import Settings\n"
        f"runtime = build_runtime(Settings(database={str(tmp_path / 'm.db')!r}))\n"
        "create_asgi(runtime)\n"
        "runtime.trading().close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('coredis', 'marketsrv.scale'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


async def test_an_edge_without_the_scale_extra_says_what_to_install(tmp_path: Path) -> None:
    """`coredis` hidden (a None entry in sys.modules makes its import fail)."""
    code = (
        "import sys; sys.modules['coredis'] = None\n"
        "from marketsrv.cli import run\n"
        "sys.argv = ['marketsrv', '--role', 'edge', '--bus-url', 'redis://127.0.0.1:1',"
        " '--primary-url', 'http://127.0.0.1:2', '--port', '0']\n"
        "sys.exit(run())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'marketsrv[scale]'" in done.stderr


# -- a primary and two edges -------------------------------------------------------------------


async def collect(url: str, path: str, hello: Any, seconds: float) -> list[str]:
    out: list[str] = []
    async with open_ws(url, path) as ws:
        await send(ws, hello)
        with trio.move_on_after(seconds):
            while True:
                out.append(await ws.get_message())
    return out


def by_key(frames: list[str]) -> dict[tuple[Any, ...], str]:
    """The updates after the subscription's snapshots (those carry the instant each server built
    them at), by what they are: type, symbol, seq or trade id, and the publish's instant."""
    out = {}
    for raw in frames:
        if ts(raw) == ts(frames[0]):
            continue
        frame = orjson.loads(raw)
        data = frame["data"]
        out[frame["type"], data.get("symbol"), data.get("seq", data.get("id")), frame["ts"]] = raw
    return out


def ts(frame: str) -> float:
    return float(orjson.loads(frame)["ts"])


async def test_edges_send_the_primarys_frames_and_its_books(bus_folder: Path) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(redis_server(bus_folder))
        cluster = Cluster(bus_folder, stack, ("--stream-interval-ms", "50"))
        await cluster.start_primary()
        edges = [(await cluster.start_edge())[1] for _ in range(2)]
        servers = [cluster.primary_url, *edges]
        hello = {"type": "subscribe", "symbols": ["SCOM", "KCB", "EQTY"], "book_mode": "diff",
                 "trades": True, "candles": True}  # fmt: skip
        got: dict[tuple[str, str], list[str]] = {}

        async def one(url: str, path: str, message: Any) -> None:
            got[url, path] = await collect(url, path, message, 3.0)

        async with trio.open_nursery() as nursery:
            for url in servers:
                nursery.start_soon(one, url, "/ws/market/", hello)
                nursery.start_soon(one, url, "/ws/orderbook/SCOM/", {"depth": 5})
        for path in ("/ws/market/", "/ws/orderbook/SCOM/"):
            primary = by_key(got[cluster.primary_url, path])
            for edge in edges:
                mine = by_key(got[edge, path])
                # The same frames, byte for byte: every update both clients got is the same...
                common = mine.keys() & primary.keys()
                assert all(mine[k] == primary[k] for k in common)
                kinds = {k[0] for k in common}
                if path == "/ws/market/":
                    assert {"market_data", "order_book_update", "trade", "candle"} <= kinds
                    # ...and neither misses a diff or a trade the other got while both listened
                    # (the only updates never replaced by a newer one in a client's outbox).
                    start = max(min(k[-1] for k in mine), min(k[-1] for k in primary)) + 0.3
                    end = min(max(k[-1] for k in mine), max(k[-1] for k in primary)) - 0.3
                    assert end - start > 1.0
                    for keys in (mine.keys(), primary.keys()):
                        kept = {k for k in keys if k[0] in ("order_book_update", "trade")}
                        assert {k for k in kept if start <= k[-1] <= end} <= common
                else:
                    assert kinds == {"order_book"} and len(common) > 10

        # A book kept from an edge's diffs equals the primary's snapshot at the same seq.
        async with open_ws(edges[1], "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            seq = await in_step(book, cluster.primary_url, "SCOM")
            await in_step(book, cluster.primary_url, "SCOM", seq)  # and again, later
            nursery.cancel_scope.cancel()


async def test_a_private_event_reaches_a_client_on_an_edge(bus_folder: Path) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(redis_server(bus_folder))
        cluster = Cluster(bus_folder, stack, ())
        await cluster.start_primary()
        edge_proc, edge = await cluster.start_edge()
        primary = await stack.enter_async_context(
            httpx.AsyncClient(base_url=cluster.primary_url, timeout=10)
        )
        via_edge = await stack.enter_async_context(httpx.AsyncClient(base_url=edge, timeout=10))
        # The REST API through the edge: the primary's answers.
        login = await via_edge.post(
            "/api/accounts/login/", json={"username": "demo", "password": "marketsrv-demo"}
        )
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        for path in ("/api/accounts/me/", "/api/trading/wallet/", "/api/nowhere/"):
            mine, theirs = (
                await via_edge.get(path, headers=auth),
                await primary.get(path, headers=auth),
            )
            assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content), path
        assert (await via_edge.get("/api/accounts/me/")).json()["code"] == "not_authenticated"
        # The edge's own: its page, its docs and its metrics (its streams' figures).
        for path in ("/", "/docs/scaling", "/metrics"):
            assert (await via_edge.get(path)).status_code == 200, path
        assert "marketsrv_bus_entries_applied_total" in (await via_edge.get("/metrics")).text
        assert "marketsrv_bus_entries_published_total" in (await primary.get("/metrics")).text

        async with open_ws(edge, f"/ws/user/?token={token}") as ws:
            ready = await next_of(ws, "ready")
            order = {"symbol": "SCOM", "side": "buy", "quantity": 100, "order_type": "market"}
            placed = await primary.post("/api/trading/orders/", json=order, headers=auth)
            assert placed.status_code == 201, placed.text
            answered = trio.current_time()
            event = await next_of(ws, "order.accepted")
            assert event["seq"] == ready["data"]["seq"] + 1
            assert trio.current_time() - answered < 5  # (docs/scaling.md has the measured figure)

        # A bad token is refused by the primary, through the edge, with the primary's code.
        async with open_ws(edge, "/ws/user/?token=nope") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 4002
        # The edge's own limits: a message over ws_max_message_bytes closes with 1009.
        async with open_ws(edge, f"/ws/user/?token={token}") as ws:
            await next_of(ws, "ready")
            await send(ws, {"type": "ping", "pad": "x" * 20_000})
            with pytest.raises(ConnectionClosed) as closed:
                await next_of(ws, "never")
            assert closed.value.reason.code == 1009
        # And when it stops, its private sockets are told so (1001), as its market ones.
        async with open_ws(edge, f"/ws/user/?token={token}") as ws:
            await next_of(ws, "ready")
            edge_proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await next_of(ws, "never", limit_s=10)
            assert closed.value.reason.code == 1001


# -- failures -----------------------------------------------------------------------------------


async def test_edges_recover_from_redis_an_edge_and_the_primary_being_killed(
    bus_folder: Path,
) -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server(bus_folder))
        cluster = Cluster(bus_folder, stack, ())
        primary = await cluster.start_primary()
        edge_proc, edge = await cluster.start_edge()
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        login = await http.post(f"{edge}/api/accounts/login/",
                                json={"username": "demo", "password": "marketsrv-demo"})  # fmt: skip
        token = login.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        order = {"symbol": "KCB", "side": "buy", "quantity": 100, "order_type": "market"}

        async with open_ws(edge, "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            seq = await in_step(book, cluster.primary_url, "SCOM")

            # Redis killed, and restarted empty: the edge joins again; the book goes on.
            await kill(redis)
            await stack.enter_async_context(redis_server(bus_folder))
            seq = await in_step(book, cluster.primary_url, "SCOM", seq)

            # The primary killed and restarted on its port and database: a new epoch, and a
            # fresh snapshot for the edge's client.
            async with open_ws(edge, f"/ws/user/?token={token}") as user:
                last = (await next_of(user, "ready"))["data"]["seq"]
                snapshots = book.snapshots
                await kill(primary)
                with pytest.raises(ConnectionClosed):  # the edge closes what it forwarded
                    with trio.fail_after(10):
                        while True:
                            last = orjson.loads(await user.get_message()).get("seq", last)
            primary = await cluster.start_primary()
            placed = await http.post(f"{cluster.primary_url}/api/trading/orders/", json=order,
                                     headers=auth)  # fmt: skip
            assert placed.status_code == 201, placed.text
            seq = await in_step(book, cluster.primary_url, "SCOM", -1)
            assert book.snapshots > snapshots
            # The private stream resumes through the edge: the event made while it was down.
            async with open_ws(edge, f"/ws/user/?token={token}&after={last}") as user:
                assert (await next_of(user, "order.accepted"))["seq"] == last + 1
            nursery.cancel_scope.cancel()

        # An edge killed and started again serves a correct book from its first frame.
        await kill(edge_proc)
        _, edge = await cluster.start_edge()
        async with open_ws(edge, "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            await in_step(book, cluster.primary_url, "SCOM")
            nursery.cancel_scope.cancel()


async def test_a_slow_edge_joins_again_with_fresh_books(bus_folder: Path) -> None:
    """An edge stopped (SIGSTOP) until the bus trimmed what it had not read."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(redis_server(bus_folder))
        cluster = Cluster(bus_folder, stack, ("--stream-interval-ms", "10", "--bus-max-entries", "100"))  # fmt: skip
        await cluster.start_primary()
        edge_proc, edge = await cluster.start_edge()
        async with open_ws(edge, "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            seq = await in_step(book, cluster.primary_url, "SCOM")
            snapshots = book.snapshots
            edge_proc.send_signal(signal.SIGSTOP)
            await trimmed_past_now(bus_folder)
            edge_proc.send_signal(signal.SIGCONT)
            await in_step(book, cluster.primary_url, "SCOM", seq)
            assert book.snapshots > snapshots
            nursery.cancel_scope.cancel()


async def trimmed_past_now(folder: Path) -> None:
    """Wait until the bus no longer holds the entry after the newest one now."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(bus_url(folder))
    async with client:
        newest = int((await client.xrevrange("marketsrv:market", count=1))[0].field_values[b"n"])
        with trio.fail_after(60):
            while True:
                oldest = (await client.xrange("marketsrv:market", count=1))[0].field_values[b"n"]
                if int(oldest) > newest + 1:
                    return
                await trio.sleep(0.1)


# -- an edge whose primary is away or refuses ---------------------------------------------------


async def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` as it is written (httpx would resolve its dot segments): (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body


async def refusing_server(stream: trio.SocketStream) -> None:
    """A "primary" that answers every request, upgrades included, with 403."""
    with trio.move_on_after(5):
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
    await stream.aclose()


async def test_an_edge_says_when_its_primary_is_away_or_refuses(
    nursery: trio.Nursery, bus_folder: Path
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, refusing_server, 0, host="127.0.0.1"))
    refusing = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        away = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with AsyncExitStack() as stack:
        for primary, http_status, ws_close in ((away, 502, 1011), (refusing, 403, 1008)):
            cluster = Cluster(bus_folder, stack, ())  # no redis-server: the bus is away too
            cluster.primary_url = primary
            _, edge = await cluster.start_edge()
            async with httpx.AsyncClient(base_url=edge, timeout=10) as http:
                origin = {"Origin": "http://localhost:3000"}  # a page the settings allow
                answer = await http.get("/api/stocks/SCOM/", headers=origin)
                assert answer.status_code == http_status
                if http_status == 502:
                    assert answer.json()["code"] == "primary_unavailable"
                    assert answer.headers["access-control-allow-origin"] == origin["Origin"]
                # A path that would resolve out of /api/ on the primary is not passed on.
                for sneaky in (
                    "/api/../metrics",
                    "/api/./../-/settings.json",
                    "/api/%2e%2e/metrics",
                ):
                    status, body = await raw_get(edge, sneaky)
                    assert (status, orjson.loads(body)["code"]) == (404, "not_found"), sneaky
            async with open_ws(edge, "/ws/user/?token=x") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == ws_close
