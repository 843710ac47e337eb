#!/usr/bin/env python3
"""Scale-out benchmark: one standalone process against a primary with one and two edges.

In one run, on the seed workload of scripts/bench_stream.py (50 symbols, 10 per client,
market_data + order_book, 200 updates/s offered per client), each configuration on fresh
processes and a fresh redis-server (unix socket, no persistence):

    standalone     C clients on one marketsrv
    primary+1      C clients on one edge; the primary publishes to Redis and serves no one
    primary+2      C/2 clients on each of two edges (one load generator per edge)

and, with no clients at all, the primary's CPU against a standalone's over the same window:
what publishing to the bus costs, per entry (the primary's /metrics counts them).

    scripts/bench_scale.py                      # 200 clients, 20 s windows
    scripts/bench_scale.py --clients 100 --duration 10 --warmup 2    # a quick look

Prints a table (delivered, p50/p99, CPU per delivered update of every process that serves:
marketsrv processes and redis-server) and, as the LAST line, one JSON object with every
figure and the bus's added p50/p99 (edges against standalone). This machine has 2 cores shared
by every process and the load generators: it shows the overhead and the per-edge cost, not the
gain of edges on machines of their own (docs/scaling.md projects that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import runner
from bench.env import (
    ROOT,
    SCRATCH,
    log,
    node_available,
    prepare_node_loadgen,
    prepare_python_loadgen,
)
from bench.report import table
from bench.servers import HOST, WS_PATH, Server, spawn, start_marketsrv, terminate

SYMBOLS, PER_CLIENT, EXPECT_PER_CLIENT = 50, 10, 200
READY_TIMEOUT = 60.0
UNIVERSE = ROOT / "scripts" / "data" / "universe-sym50.json"
MARKET_ARGS = ["--universe", str(UNIVERSE), "--seed", "1", "--takers-per-tick", "2",
               "--log-level", "warning"]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--clients", type=int, default=200, help="clients of every configuration")
    p.add_argument("--duration", type=float, default=20.0, help="measurement window, s")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    p.add_argument("--marketsrv-bin", type=Path, default=ROOT / ".venv" / "bin" / "marketsrv")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    p.add_argument("--loadgen", choices=["node", "python"], default=None)
    a = p.parse_args(argv)
    if not (2 <= a.clients <= 2000 and 0 < a.duration <= 600 and 0 <= a.warmup <= 60):
        p.error("need 2 <= --clients <= 2000, 0 < --duration <= 600, 0 <= --warmup <= 60")
    if a.loadgen is None:
        a.loadgen = "node" if node_available() else "python"
    return a


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """The processes of one configuration, stopped together."""

    def __init__(self, a: argparse.Namespace, folder: Path) -> None:
        self.a, self.folder = a, folder
        self.servers: list[Server] = []
        self.redis: subprocess.Popen[bytes] | None = None
        self.pids: dict[str, int] = {}

    def bus(self) -> str:
        sock = self.folder / "r.sock"
        self.redis = spawn(
            [self.a.redis_server, "--port", "0", "--unixsocket", str(sock), "--save", "",
             "--appendonly", "no"], self.folder / "redis.log",
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or self.redis.poll() is not None:
                raise RuntimeError(f"redis-server did not start: see {self.folder / 'redis.log'}")
            time.sleep(0.05)
        self.pids["redis"] = self.redis.pid
        return f"unix://{sock}"

    def start(self, name: str, args: list[str]) -> Server:
        srv = start_marketsrv(self.a.marketsrv_bin, ["--port", "0", *args], self.folder,
                              READY_TIMEOUT, f"{name}.log")  # fmt: skip
        self.servers.append(srv)
        self.pids[name] = srv.proc.pid
        return srv

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()
        if self.redis is not None:
            terminate(self.redis, 10.0)


def build(config: str, c: Cluster) -> list[Server]:
    """Start `config`'s processes; the servers the clients connect to."""
    db = ["--database", str(c.folder / "market.db")]
    if config in ("standalone", "idle standalone"):
        return [c.start("standalone", [*MARKET_ARGS, *db])]
    bus = c.bus()
    primary = c.start("primary", [*MARKET_ARGS, *db, "--role", "primary", "--bus-url", bus])
    edges = {"primary+1": 1, "primary+2": 2}.get(config, 0)
    primary_url = f"http://{HOST}:{primary.port}"
    return [
        c.start(f"edge{i + 1}", ["--universe", str(UNIVERSE), "--log-level", "warning",
                                 "--role", "edge", "--bus-url", bus, "--primary-url", primary_url])
        for i in range(edges)
    ] or [primary]  # fmt: skip


def loadgen(prefix: list[str], srv: Server, clients: int, a: argparse.Namespace) -> dict[str, Any]:
    cmd = [*prefix, "--url", f"ws://{HOST}:{srv.port}{WS_PATH}", "-c", str(clients)]
    cmd += ["-S", str(SYMBOLS), "-k", str(PER_CLIENT), "-T", f"{a.duration:g}"]
    cmd += ["--warmup", f"{a.warmup:g}", "--expect-per-client", str(EXPECT_PER_CLIENT)]
    return runner.run_json(cmd, 60.0 + a.warmup + a.duration + 30.0, need_exit_0=True)


def measure(config: str, prefix: list[str], a: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ms-scale-", dir=SCRATCH))
    c = Cluster(a, folder)
    try:
        targets = build(config, c)
        time.sleep(1.0)  # the edges join
        if config.startswith("idle"):
            pids = dict(c.pids)
            time.sleep(a.warmup)
            before = {n: cpu_s(p) for n, p in pids.items()}
            entries = published(targets[0])
            time.sleep(a.duration)
            used = {n: cpu_s(p) - before[n] for n, p in pids.items()}
            rate = (published(targets[0]) - entries) / a.duration if entries is not None else 0
            return {"config": config, "cpu_pct": {n: round(100 * u / a.duration, 2)
                                                  for n, u in used.items()},
                    "entries_per_s": round(rate, 1)}  # fmt: skip
        share = [a.clients // len(targets) + (i < a.clients % len(targets))
                 for i in range(len(targets))]  # fmt: skip
        before = {n: cpu_s(p) for n, p in c.pids.items()}
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(targets)) as pool:
            runs = list(
                pool.map(lambda t: loadgen(prefix, t[0], t[1], a), zip(targets, share, strict=True))
            )
        elapsed = time.monotonic() - t0
        used = {n: cpu_s(p) - before[n] for n, p in c.pids.items()}
        return summarize(config, runs, used, elapsed)
    finally:
        c.stop()
        shutil.rmtree(folder, ignore_errors=True)


def published(srv: Server) -> float | None:
    """The primary's count of bus entries written, from its /metrics (None: not a primary)."""
    with urllib.request.urlopen(f"http://{HOST}:{srv.port}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("marketsrv_bus_entries_published_total "):
                return float(line.split()[1])
    return None


def summarize(
    config: str, runs: list[dict[str, Any]], used: dict[str, float], elapsed: float
) -> dict[str, Any]:
    """One configuration's figures. CPU is measured over the load generators' whole run (connect,
    warm-up, window), so the µs per update divide by every update of that run, estimated from
    the window's rate."""
    updates = sum(r.get("updates") or 0 for r in runs)
    offered = sum(r.get("expected_updates_per_s") or 0 for r in runs)
    rate = sum(r.get("updates_per_s") or 0 for r in runs)
    lat = [r.get("lat_ms") or {} for r in runs]
    total_cpu = sum(used.values())
    return {
        "config": config,
        "clients": sum(r.get("connected") or 0 for r in runs),
        "updates_per_s": round(rate, 1),
        "delivery_ratio": round(rate / offered, 4) if offered else None,
        # Each load generator's own percentiles: the p50 of their clients' medians (weighted by
        # clients, as they are even) and the worst p99.
        "p50_ms": round(sum(x.get("p50", 0) for x in lat) / len(lat), 2) if lat else None,
        "p99_ms": max((x.get("p99", 0) for x in lat), default=None),
        "cpu_pct": {n: round(100 * u / elapsed, 1) for n, u in used.items()},
        "cpu_us_per_update": round(total_cpu / (rate * elapsed) * 1e6, 2) if rate else None,
        "updates_in_window": updates,
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    runner.trap_sigterm()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    loader = prepare_node_loadgen if a.loadgen == "node" else prepare_python_loadgen
    s = runner.setup(loader, True, None)
    if s is None:
        return 2
    results = []
    for config in ("standalone", "primary+1", "primary+2", "idle standalone", "idle primary"):
        log(f"measuring {config}")
        try:
            results.append(measure(config, s.prefix, a))
        except (runner.LoadgenError, RuntimeError, OSError) as exc:
            log(f"{config} failed: {exc}")
            results.append({"config": config, "error": str(exc)})
        log(json.dumps(results[-1]))
    by = {r["config"]: r for r in results}
    rows = [
        [r["config"], str(r.get("clients", "")), f"{100 * r['delivery_ratio']:.1f}%"
         if r.get("delivery_ratio") is not None else "", f"{r.get('p50_ms')} / {r.get('p99_ms')}",
         str(r.get("cpu_us_per_update", "")),
         ", ".join(f"{n} {v}%" for n, v in (r.get("cpu_pct") or {}).items()), r.get("error", "")]
        for r in results
    ]  # fmt: skip
    elapsed = time.monotonic() - t0
    print(
        f"\nScale-out, seed workload, {a.clients} clients, loadgen {a.loadgen}, {a.duration:g} s"
        f" window after {a.warmup:g} s, {os.cpu_count()} cores, {elapsed:.0f} s in all"
    )
    header = ("config", "clients", "delivered", "p50 / p99 ms", "µs CPU/update", "CPU by process",
              "error")  # fmt: skip
    print(table(rows, header))
    out: dict[str, Any] = {"bench": "scale", "clients": a.clients, "duration_s": a.duration,
                           "warmup_s": a.warmup, "loadgen": a.loadgen, "results": results,
                           "started": runner.started(elapsed)}  # fmt: skip
    alone = by.get("standalone", {})
    for config in ("primary+1", "primary+2"):
        r = by.get(config, {})
        if alone.get("p50_ms") is not None and r.get("p50_ms") is not None:
            out[f"{config} added p50/p99 ms"] = [
                round(r["p50_ms"] - alone["p50_ms"], 2),
                round(r["p99_ms"] - alone["p99_ms"], 2),
            ]
            out[f"{config} cpu per update ratio"] = round(
                r["cpu_us_per_update"] / alone["cpu_us_per_update"], 2
            )
    idle_alone, idle_primary = by.get("idle standalone", {}), by.get("idle primary", {})
    if "cpu_pct" in idle_alone and "cpu_pct" in idle_primary:
        extra = idle_primary["cpu_pct"]["primary"] - idle_alone["cpu_pct"]["standalone"]
        entries_per_s = idle_primary["entries_per_s"]  # stream_spread entries an interval
        out["publishing cpu pct"] = round(extra, 2)
        out["bus entries per s"] = entries_per_s
        if entries_per_s:
            out["publishing cpu us per entry"] = round(extra / 100 / entries_per_s * 1e6, 1)
        out["redis cpu pct idle"] = idle_primary["cpu_pct"].get("redis")
    for key in [k for k in out if k.endswith(("ms", "ratio", "entry", "pct", "idle", "per s"))]:
        print(f"{key}: {out[key]}")
    print(json.dumps(out), flush=True)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    runner.entry(main)
