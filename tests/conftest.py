"""Shared builders for the tests.

Network rules for every test module: servers bind 127.0.0.1 on port 0 only, every network test runs
under a `trio.fail_after` limit (and pytest-timeout's global one), and tests wait on conditions,
never on fixed sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
from marketsrv.streams import Hub
from tests.builders import FakeClock, simulated_market


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
    runtime = Runtime(
        settings=Settings(simulate=False), market=market, simulator=None, hub=Hub(market)
    )
    app = create_app(runtime)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture(autouse=True)
def isolated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's settings (and the CLI's) point at a database of its own."""
    path = tmp_path / "marketsrv.db"
    monkeypatch.setenv("MARKETSRV_DATABASE", str(path))
    return path


@pytest.fixture
def fast_settings(isolated_database: Path) -> Iterator[Settings]:
    yield Settings(
        host="127.0.0.1", port=0, seed=3, tick_interval_ms=50, graceful_timeout_s=1.0,
        database=str(isolated_database),
    )  # fmt: skip


@pytest.fixture
async def live_server(
    nursery: trio.Nursery, fast_settings: Settings
) -> AsyncIterator[tuple[str, Runtime]]:
    """A real hypercorn on 127.0.0.1, port 0, with the simulator running; yields (url, runtime)."""
    runtime = build_runtime(fast_settings)
    url = await nursery.start(
        lambda task_status: serve(fast_settings, runtime=runtime, task_status=task_status)
    )
    yield url, runtime
    nursery.cancel_scope.cancel()


@pytest.fixture
async def http(live_server: tuple[str, Runtime]) -> AsyncIterator[httpx.AsyncClient]:
    url, _ = live_server
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        yield c


ServerFactory = Callable[..., Awaitable[tuple[str, Runtime]]]


@pytest.fixture
def start_server(nursery: trio.Nursery, isolated_database: Path) -> ServerFactory:
    """Start a real server on 127.0.0.1:0 with settings overridden; returns (url, runtime)."""

    async def start(**overrides: Any) -> tuple[str, Runtime]:
        base = {
            "host": "127.0.0.1", "port": 0, "seed": 5, "tick_interval_ms": 50,
            "stream_interval_ms": 50, "graceful_timeout_s": 1.0,
            "database": str(isolated_database), "demo_user": "off",
        }  # fmt: skip
        settings = Settings(**{**base, **overrides})
        runtime = build_runtime(settings)
        url: str = await nursery.start(
            lambda task_status: serve(settings, runtime=runtime, task_status=task_status)
        )
        return url, runtime

    return start
