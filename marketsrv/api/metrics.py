"""`/metrics` in the Prometheus text format, through the official client library.

The server's own figures live where they happen, as plain numbers owned by the trio thread (the
hub's, the simulator's, the order service's) or as the client library's thread-safe histograms
(the storage writer's commits, the event loop's lag). A scrape reads the trio thread's numbers
there, into metric families (a few hundred objects: cheap), then renders them with the process's
own figures on a worker thread: the process collector reads files under /proc, which the event
loop must not wait on.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketsrv import __version__
from marketsrv.runtime import Runtime

CONTENT_TYPE = CONTENT_TYPE_LATEST


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def families(runtime: Runtime) -> list[Metric]:
    """The server's figures, read now: call on the trio thread, which owns most of them."""
    hub, sim, market = runtime.hub, runtime.simulator, runtime.market
    info = GaugeMetricFamily("marketsrv_info", "This server's version.", labels=["version"])
    info.add_metric([__version__], 1)
    out: list[Metric] = [
        info,
        gauge(
            "marketsrv_uptime_seconds",
            "Seconds since the server started.",
            time.monotonic() - runtime.started_monotonic,
        ),
    ]

    streams = Tally(conn.stream for conn in hub.connections)
    connections = GaugeMetricFamily(
        "marketsrv_ws_connections", "Open WebSocket connections, by stream.", labels=["stream"]
    )
    for stream in ("market", "orderbook", "user", "chat"):
        connections.add_metric([stream], streams.get(stream, 0))
    c = hub.counters
    out += [
        connections,
        counter("marketsrv_ws_frames_sent", "WebSocket messages sent.", c.frames_sent),
        counter("marketsrv_ws_bytes_sent", "Bytes of WebSocket messages sent.", c.bytes_sent),
        counter(
            "marketsrv_ws_updates_conflated",
            "Updates replaced by a newer one of the same symbol before a client took them.",
            c.conflated,
        ),
        counter(
            "marketsrv_ws_slow_closed",
            "Connections closed as slow consumers (4008).",
            hub.slow_closed,
        ),
        counter(
            "marketsrv_ws_dead_dropped",
            "Connections dropped: silent peers, or no reply to a close.",
            hub.dead_dropped,
        ),
        counter("marketsrv_stream_publishes", "Stream intervals published.", hub.publishes),
        counter("marketsrv_simulator_ticks", "Simulator ticks run.", sim.ticks if sim else 0),
        counter(
            "marketsrv_simulator_busy_seconds",
            "Seconds the simulator's ticks took.",
            sim.busy_s if sim else 0.0,
        ),
        gauge(
            "marketsrv_market_open",
            "1 while the market is open for continuous trading.",
            1 if market.phase == "open" else 0,
        ),
        *runtime.loop_lag.collect(),
        *runtime.tick_lag.collect(),
    ]
    trading = runtime.trading_services
    if trading is not None:
        orders = trading.orders
        rejected = CounterMetricFamily(
            "marketsrv_orders_rejected",
            "Orders refused, by the error code they were answered with.",
            labels=["reason"],
        )
        for reason, n in sorted(orders.rejected.items()):
            rejected.add_metric([reason], n)
        out += [
            counter("marketsrv_orders_accepted", "Orders accepted.", orders.accepted),
            rejected,
            counter(
                "marketsrv_fills", "Fills of users' orders (each side of a trade).", orders.fills
            ),
            *trading.store.db.commit_seconds.collect(),
            *trading.store.db.commit_batch.collect(),
        ]
    if runtime.bus is not None:
        for kind, name, doc, value in runtime.bus.figures():
            out.append(
                (counter if kind == "counter" else gauge)(f"marketsrv_bus_{name}", doc, value)
            )
    if runtime.relay is not None:
        out.append(
            counter(
                "marketsrv_user_events_delivered",
                "Private events queued to /ws/user/ sockets.",
                runtime.relay.delivered,
            )
        )
    return out


class _Families(Collector):
    def __init__(self, found: Iterable[Metric]) -> None:
        self.found = found

    def collect(self) -> Iterator[Metric]:
        yield from self.found
        # The process (CPU, memory, files), the interpreter and its collector: the library's own.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            yield from collector.collect()


def render(found: list[Metric]) -> bytes:
    """The exposition text (blocking: reads /proc)."""
    return generate_latest(_Families(found))


async def exposition(runtime: Runtime) -> bytes:
    found = families(runtime)
    return await trio.to_thread.run_sync(render, found)
