"""A primary and its edges over a real redis-server (docs/scaling.md), as real processes: the
edges serve the primary's own frames (byte for byte), books that end equal to the primary's, and
the private stream. Their failures: test_scale_failures.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.builders import REPO, demo_token, next_of, open_ws, send
from tests.cluster import ClientBook, Cluster, in_step, keep_book, redis_server, subscribe_book

pytestmark = pytest.mark.timeout(180)


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
        token = await demo_token(via_edge)
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
