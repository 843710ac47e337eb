"""A primary and its edges over a real redis-server, as real processes (test_scale.py,
test_scaling_guide.py)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.builders import server_process

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
