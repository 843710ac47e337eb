"""A primary and its edges over a real redis-server, as real processes, and a client's book kept
as the protocol says (test_scale.py, test_scale_failures.py, test_scaling_guide.py)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tests.builders import send, server_process

REDIS = shutil.which("redis-server") or "/usr/sbin/redis-server"


@asynccontextmanager
async def redis_server(folder: Path) -> AsyncIterator[trio.Process]:
    """redis-server on a unix socket in `folder` (no TCP port, no persistence)."""
    if not Path(REDIS).exists():
        pytest.fail("redis-server is missing: scripts/install --test installs it")
    sock = folder / "r.sock"
    sock.unlink(missing_ok=True)
    proc = await trio.lowlevel.open_process(
        [REDIS, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(10):
            while not sock.exists():  # redis-server says nothing else when it listens
                await trio.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        await proc.wait()


def bus_url(folder: Path) -> str:
    return f"unix://{folder / 'r.sock'}"


class Cluster:
    """A primary and edges, each started and stopped as a test says."""

    def __init__(
        self,
        folder: Path,
        stack: AsyncExitStack,
        primary_flags: tuple[str, ...],
        edge_flags: tuple[str, ...] = (),
    ):
        self.folder, self.stack = folder, stack
        self.primary_flags, self.edge_flags = primary_flags, edge_flags
        self.primary_url = ""
        self.port = 0

    async def start_primary(self) -> trio.Process:
        port = ("--port", str(self.port)) if self.port else ()
        proc, url = await self.stack.enter_async_context(server_process(
            "--role", "primary", "--bus-url", bus_url(self.folder),
            "--database", str(self.folder / "market.db"), *self.primary_flags, *port,
        ))  # fmt: skip
        self.primary_url, self.port = url, int(url.rsplit(":", 1)[1])
        return proc

    async def start_edge(self) -> tuple[trio.Process, str]:
        return await self.stack.enter_async_context(server_process(
            "--role", "edge", "--bus-url", bus_url(self.folder), "--primary-url", self.primary_url,
            *self.edge_flags,
        ))  # fmt: skip


async def kill(proc: trio.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


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
