"""What one running server owns, and the loop that drives the market and its streams.

`Runtime` is reachable from request handlers through `current_runtime()`. `run_market` is the one
long-lived task of the market: each tick the market keeps time (phases, day rolls, the opening
auction) and the simulator trades, at each stream interval the hub publishes what changed, in that
order, so every published update carries that tick's trades, and once a second the market's
memory saves what changed.
"""

from __future__ import annotations

import gc
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

import trio
from prometheus_client import Histogram
from quart import current_app

from marketsrv.chat.presence import Presence
from marketsrv.errors import Unavailable
from marketsrv.market import Market, Simulator
from marketsrv.market.days import keep_time
from marketsrv.memory import SAVE_INTERVAL_S, MarketMemory
from marketsrv.private.relay import Relay
from marketsrv.settings import Settings
from marketsrv.streams import Hub
from marketsrv.trading import Trading
from marketsrv.trading.equity import EquityRecorder

EXTENSION_KEY = "marketsrv"
log = logging.getLogger("marketsrv")
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LAG_PROBE_S = 0.25  # how often the event loop's lag is sampled


def _lag(name: str, doc: str) -> Histogram:
    return Histogram(name, doc, registry=None, buckets=LAG_BUCKETS)


Figure = tuple[str, str, str, float]  # (kind: counter or gauge, name, help, value), for /metrics


class BusFigures(Protocol):
    """A primary's publisher or an edge's hub, for /metrics: its figures, named under
    marketsrv_bus_."""

    def figures(self) -> list[Figure]: ...


@dataclass
class Runtime:
    settings: Settings
    market: Market
    simulator: Simulator | None
    hub: Hub
    trading_services: Trading | None = None
    memory: MarketMemory | None = None
    relay: Relay | None = None  # the private stream's, when trading is on
    equity: EquityRecorder | None = None  # the accounts' equity snapshots
    presence: Presence = field(default_factory=Presence)  # who is online in the chat
    bus: BusFigures | None = None  # a primary's or an edge's side of the bus (scale/)
    # Lets `marketsrv scenario` act as an admin: written beside the database at start.
    operator_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    started_monotonic: float = field(default_factory=time.monotonic)
    running: bool = False
    # For /metrics: how late the event loop wakes a sleeper (everything waits that long), and how
    # late the simulator's ticks run behind their schedule.
    loop_lag: Histogram = field(
        default_factory=lambda: _lag(
            "marketsrv_event_loop_lag_seconds", "How late the event loop wakes a sleeping task."
        )
    )
    tick_lag: Histogram = field(
        default_factory=lambda: _lag(
            "marketsrv_simulator_tick_lag_seconds", "How late simulator ticks run."
        )
    )

    async def save_market(self, final: bool = False) -> None:
        """Save what changed in the market: collected here, written on the storage writer.
        `final`: the last save of a server that stops (its trade ids need no margin)."""
        memory = self.memory
        if memory is None or memory.db is None:
            return
        batch = memory.collect(clean=final)
        seconds = await trio.to_thread.run_sync(memory.write, memory.db, batch)
        memory.saved(batch, seconds)

    def trading(self) -> Trading:
        if self.trading_services is None:
            raise Unavailable("trading_unavailable", "this server runs without accounts")
        return self.trading_services


async def watch_loop_lag(
    runtime: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Sample the event loop's lag until cancelled: a task that asks to sleep until T and wakes
    at T + lag waited `lag` for the loop (busy with other work) to come round to it."""
    task_status.started()
    while True:
        due = trio.current_time() + LAG_PROBE_S
        await trio.sleep_until(due)
        runtime.loop_lag.observe(max(0.0, trio.current_time() - due))


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions[EXTENSION_KEY]
    return runtime


async def run_market(
    runtime: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Tick the simulator and publish the streams on their schedules until cancelled.

    A late tick is skipped rather than made up in a burst. The hub's watchdog (slow and dead
    clients) runs once a second in a nursery of its own, since dropping a client may await; so
    does the market's save, one at a time (a slow disk delays the next save, never the market).
    """
    sim, hub, market = runtime.simulator, runtime.hub, runtime.market
    tick_s = runtime.settings.tick_interval_ms / 1000
    parts = runtime.settings.stream_spread  # one interval's publish in this many calls
    publish_s = runtime.settings.stream_interval_ms / 1000 / parts
    async with trio.open_nursery() as nursery:
        now = trio.current_time()
        next_tick = next_publish = now
        next_watch = now + 1.0
        next_save = now + SAVE_INTERVAL_S
        saving = False
        part = 0

        async def save() -> None:
            nonlocal saving
            try:
                await runtime.save_market()
            except Exception:  # a full disk must not stop the market: log, try again later
                log.exception("the market's state could not be saved")
            finally:
                saving = False

        runtime.running = True
        task_status.started()
        # Everything imported and built at start-up lives as long as the process: move it out of
        # the cyclic collector's view, so its full passes only walk what the market makes.
        gc.freeze()
        try:
            while True:
                now = trio.current_time()
                keep_time(market)  # the hub publishes a change of phase with the next update
                if sim is not None and now >= next_tick:
                    runtime.tick_lag.observe(now - next_tick)
                    sim.step()
                    next_tick = max(next_tick + tick_s, now)
                if now >= next_publish:
                    hub.publish(part, parts)
                    part = (part + 1) % parts
                    next_publish = max(next_publish + publish_s, now)
                if now >= next_watch:
                    hub.watch(nursery)
                    next_watch = now + 1.0
                if now >= next_save and not saving:
                    saving = True
                    nursery.start_soon(save)
                    next_save = now + SAVE_INTERVAL_S
                wake = min(next_publish, next_watch, next_save)
                if sim is not None:
                    wake = min(wake, next_tick)
                await trio.sleep_until(wake)
        finally:
            runtime.running = False
