#!/usr/bin/env python3
"""Streaming benchmark: marketsrv against the Django Channels peer (Daphne), side by side.

For each point it starts a FRESH server, waits for a quiet host, drives `ws/market/` with the
shared load generator on the seed workload (50 symbols, 10 per client, market_data + order_book
for each, 10 times a second: 200 updates/s per client), then stops the server. Points alternate
marketsrv / Daphne at each client count, then one extra pair where the clients offer
permessage-deflate as browsers do (node load generator only; marketsrv may refuse it, which is
what that point measures).

    scripts/bench_stream.py                                # 25,50,100 clients + deflate at 100
    scripts/bench_stream.py --clients 100 --ramp --deflate-clients 0   # the most clients served
    scripts/bench_stream.py --clients 10 --duration 5 --warmup 1 --skip-django   # quick look
    scripts/bench_stream.py --loadgen python --out /tmp/stream.jsonl
    scripts/bench_stream.py --marketsrv-arg=--tick-interval-ms --marketsrv-arg=100

Stdlib only; any python3 >= 3.11 runs it. The first run installs, in `<tmp>/marketsrv-bench/`:
the node load generator (`npm ci`, needs the npm registry) or a venv for loadgen.py (pip), and a
copy of `shared/peers/django_channels` whose run.sh makes its own venv (pip) and, if no
redis-server is installed, installs one with apt-get. Later runs reuse all of it.

Output: progress on stderr; on stdout a table of the points, a table of marketsrv/Daphne CPU
per delivered update, the most clients each server served (at least 95% delivered with a p99
under 100 ms), and as the LAST line one JSON object (`cpu_per_update_ratio`: median of
that ratio over the non-deflate points; `most_clients_served`; every point's `p50_ms`; `delivery_ratio`, `p99_ms`, `daphne_delivery_ratio`,
`daphne_p99_ms` at the highest client count; every point's figures under `points`).
Compare servers only by ratios from one run: the host's speed changes between sessions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import options, runner
from bench.env import (
    ROOT,
    SCRATCH,
    log,
    node_available,
    prepare_node_loadgen,
    prepare_python_loadgen,
)
from bench.report import (
    SERVED_DELIVERY,
    SERVED_P99_MS,
    Point,
    most_served,
    point_table,
    ratio_table,
    row,
    summary,
)
from bench.servers import HOST, WS_PATH, Server, handshake, start_django, start_marketsrv

SYMBOLS, PER_CLIENT, EXPECT_PER_CLIENT = 50, 10, 200  # the seed workload
READY_TIMEOUT = 60.0  # a server not ready by then fails its point
RAMP_TIMEOUT = 60.0  # the load generators' default connect phase bound
RAMP_MAX = 3200  # --ramp stops at this many clients


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    clients = options.client_counts(2000, unique=False)
    p = options.new_parser(__doc__, clients, [25, 50, 100], 20.0, "seconds before the window")
    p.add_argument(
        "--deflate-clients",
        type=clients,
        default=None,
        help="client counts of the extra permessage-deflate points "
        "(default: the highest --clients; 0 for none)",
    )
    p.add_argument("--skip-django", action="store_true", help="measure marketsrv only")
    p.add_argument(
        "--ramp",
        action="store_true",
        help="then double the highest count while a server still serves it "
        f"(>= {SERVED_DELIVERY * 100:g}%% delivered, p99 < {SERVED_P99_MS:g} ms), up to {RAMP_MAX}",
    )
    p.add_argument(
        "--loadgen",
        choices=["node", "python"],
        default=None,
        help="load generator (default: node when node and npm exist, else python)",
    )
    options.add_server_options(p, "longest wait for a quiet host before a point, s")
    a = p.parse_args(argv)
    options.check_common(
        p,
        a,
        0 < a.duration <= 600 and 0 <= a.warmup <= 60,
        "need 0 < --duration <= 600 and 0 <= --warmup <= 60",
    )
    if a.deflate_clients is None:
        a.deflate_clients = [max(a.clients)]
    if a.loadgen is None:
        a.loadgen = "node" if node_available() else "python"
    return a


def run_loadgen(
    prefix: list[str], srv: Server, clients: int, deflate: bool, a: argparse.Namespace
) -> dict[str, Any]:
    cmd = [*prefix, "--url", f"ws://{HOST}:{srv.port}{WS_PATH}", "-c", str(clients)]
    cmd += ["-S", str(SYMBOLS), "-k", str(PER_CLIENT), "-T", f"{a.duration:g}"]
    cmd += ["--warmup", f"{a.warmup:g}", "--expect-per-client", str(EXPECT_PER_CLIENT)]
    cmd += ["--label", f"bench_stream {srv.name} c={clients}{' deflate' if deflate else ''}"]
    for name, pid in srv.pids.items():
        cmd += ["--pid", f"{name}={pid}"]
    if deflate:
        cmd.append("--deflate")
    timeout = RAMP_TIMEOUT + a.warmup + a.duration + 30.0  # the load generators' own bound + slack
    return runner.run_json(cmd, timeout, need_exit_0=True)


def start(server: str, a: argparse.Namespace, peer: Path | None) -> Server:
    if server == "daphne":
        assert peer is not None
        return start_django(peer, READY_TIMEOUT)
    universe = ROOT / "scripts" / "data" / "universe-sym50.json"
    args = ["--port", "0", "--universe", str(universe), "--seed", "1", "--takers-per-tick", "2"]
    args += ["--log-level", "warning", *a.marketsrv_arg]
    logdir = SCRATCH / "marketsrv"
    logdir.mkdir(parents=True, exist_ok=True)
    return start_marketsrv(a.marketsrv_bin, args, logdir, READY_TIMEOUT)


def measure(
    server: str, clients: int, deflate: bool, a: argparse.Namespace, s: runner.Setup, attempt: int
) -> Point:
    """One attempt (the number is not needed here): fresh server, handshake check, quiet host,
    load generator, stop."""
    p = Point(server, clients, deflate)

    def check(srv: Server) -> bool:
        hs = handshake(srv.port, deflate)
        if hs.status != 101:
            p.error = f"{WS_PATH} handshake: " + (
                f"HTTP {hs.status}" if hs.status else str(hs.error)
            )
            return False
        p.deflate_accepted = hs.deflate_accepted if deflate else None
        return True

    def run(srv: Server) -> None:
        p.fill(run_loadgen(s.prefix, srv, clients, deflate, a), a.max_other)

    return runner.measure(p, server, a, lambda: start(server, a, s.peer), run, check)


def label(p: Point) -> str:
    return f"{p.server} c={p.clients}{' deflate' if p.deflate else ''}"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    runner.trap_sigterm()
    t0 = time.monotonic()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    servers = ["marketsrv"] if a.skip_django else ["marketsrv", "daphne"]
    deflate_clients = a.deflate_clients
    if a.loadgen == "python" and deflate_clients:
        log("loadgen.py never offers permessage-deflate: the deflate points are skipped")
        deflate_clients = []
    plan = [(s, c, False) for c in a.clients for s in servers]
    plan += [(s, c, True) for c in deflate_clients for s in servers]

    loadgen = prepare_node_loadgen if a.loadgen == "node" else prepare_python_loadgen
    s = runner.setup(loadgen, a.skip_django, None)
    if s is None:
        return 2
    log(
        f"loadgen {a.loadgen}; {len(plan)} points of {a.duration:g} s; shared {s.shared}; "
        f"scratch {SCRATCH}"
    )

    points = runner.run_plan(plan, a, s, Point, label, measure, row)
    count = max(a.clients)
    while a.ramp and count * 2 <= RAMP_MAX:
        # Each server goes on until it no longer serves its clients, side by side while both do.
        still = [v for v in servers if most_served(points, v) == count]
        if not still:
            break
        count *= 2
        a.clients.append(count)
        points += runner.run_plan([(v, count, False) for v in still], a, s, Point, label,
                                  measure, row)  # fmt: skip

    elapsed = round(time.monotonic() - t0, 1)
    print(
        f"\nStreaming benchmark, seed workload ({SYMBOLS} symbols, {PER_CLIENT} per client, "
        f"{EXPECT_PER_CLIENT} updates/s per client offered), loadgen {a.loadgen}, "
        f"{a.duration:g} s window after {a.warmup:g} s warm-up, a fresh server per point, "
        f"{os.cpu_count()} cores, {elapsed:.0f} s in all"
    )
    print(point_table(points))
    print("\nServer CPU per delivered update, marketsrv / Daphne (lower is better for marketsrv):")
    print(ratio_table(points))
    meta = {
        "bench": "stream",
        "loadgen": a.loadgen,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "clients": a.clients,
        "deflate_clients": deflate_clients,
        "marketsrv_args": a.marketsrv_arg,
        "elapsed_s": elapsed,
        "started": runner.started(elapsed),
    }
    served = ", ".join(f"{v} {most_served(points, v)}" for v in servers)
    print(
        f"\nThe most clients one process served (>= {SERVED_DELIVERY:.0%} of updates delivered,"
        f" p99 under {SERVED_P99_MS:g} ms, of the counts tried): {served}"
    )
    return runner.finish(summary(points, a.clients, meta), points)


if __name__ == "__main__":
    runner.entry(main)
