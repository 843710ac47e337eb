"""The tests' fixtures (the builders they use are in tests/builders.py, which test modules import;
nothing imports this file or another test module).

Network rules for every test module: servers bind 127.0.0.1 on port 0 only, every network test runs
under a `trio.fail_after` limit (and pytest-timeout's global one), and tests wait on conditions,
never on fixed sleeps.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart.typing import TestClientProtocol as Client

from marketsrv.app import build_runtime, create_app
from marketsrv.market import Market, Simulator
from marketsrv.runtime import Runtime
from marketsrv.server import serve
from marketsrv.settings import Settings
from tests.builders import FakeClock, ServerFactory, in_process_runtime, simulated_market


@pytest.fixture
def stepped() -> tuple[Market, Simulator, FakeClock]:
    clock = FakeClock()
    market, simulator = simulated_market(seed=11, steps=20, clock=clock)
    return market, simulator, clock


@pytest.fixture
async def client(
    stepped: tuple[Market, Simulator, FakeClock],
) -> AsyncIterator[Client]:
    """An in-process client over a market that moves only when a test steps its simulator."""
    market, _, _ = stepped
    app = create_app(in_process_runtime(market))
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture(autouse=True)
def isolated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's settings (and the CLI's) point at a database of its own."""
    path = tmp_path / "marketsrv.db"
    monkeypatch.setenv("MARKETSRV_DATABASE", str(path))
    return path


@pytest.fixture
def start_server(nursery: trio.Nursery, isolated_database: Path) -> ServerFactory:
    """The one way tests start a real server: hypercorn on 127.0.0.1 port 0 in the test's
    nursery, settings overridden by keyword (`shutdown_trigger=` too); returns (url, runtime)."""

    async def start(**overrides: Any) -> tuple[str, Runtime]:
        trigger = overrides.pop("shutdown_trigger", None)
        base = {
            "host": "127.0.0.1", "port": 0, "seed": 5, "tick_interval_ms": 50,
            "stream_interval_ms": 50, "graceful_timeout_s": 1.0,
            "database": str(isolated_database), "demo_user": "off",
            # A new database's made-up history: three weeks, not a year, so tests start fast.
            "history_days": 20, "history_minute_days": 1,
        }  # fmt: skip
        settings = Settings(**{**base, **overrides})
        runtime = build_runtime(settings)
        url: str = await nursery.start(
            lambda task_status: serve(
                settings, runtime=runtime, shutdown_trigger=trigger, task_status=task_status
            )
        )
        return url, runtime

    return start


@pytest.fixture
async def live_server(start_server: ServerFactory) -> tuple[str, Runtime]:
    """A real server with the simulator running; (url, runtime)."""
    return await start_server(seed=3)


@pytest.fixture
async def http(live_server: tuple[str, Runtime]) -> AsyncIterator[httpx.AsyncClient]:
    url, _ = live_server
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        yield c


@pytest.fixture
def bus_folder() -> Iterator[Path]:
    """A folder for a redis-server's socket (tests/cluster.py), with a short path: a unix
    socket's name must fit in 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="ms-bus-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
