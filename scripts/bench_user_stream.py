#!/usr/bin/env python3
"""How soon a user's events reach their `/ws/user/` socket after the REST answer that caused them.

Starts a real server (`python -m marketsrv --port 0`, simulator on, a fresh database in a temp
folder), registers a user, opens `/ws/user/?token=`, and places N market buys over REST, one at a
time. For each order it takes the time the 201 arrived and the time the order's last event
arrived (the `holding` after its fill): the delay is the second minus the first (negative when the
events beat the answer, which is usual: they commit before it is sent). The baseline, measured in
the same run, is the REST round trip itself. Reports both, p50/p95/p99/max in ms.

    .venv/bin/python scripts/bench_user_stream.py            # 300 orders; --orders N
    .venv/bin/python scripts/bench_user_stream.py --edge     # and through an edge (issue 14)

With `--edge` the server is a primary on a fresh redis-server (unix socket, `redis-server` on the
PATH) with one edge in front; the user has a socket on each, and each order's delay is measured
on both in the same run: the edge's extra is the hop through it (a forwarded socket).

The issue's target: every event within 100 ms of the REST answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
import trio_websocket

REPO = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start(*flags: str) -> tuple[trio.Process, str]:
    """`python -m marketsrv --port 0 FLAGS`: the process and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")}
    cmd = [sys.executable, "-m", "marketsrv", "--port", "0", *flags]
    proc = await trio.lowlevel.open_process(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=env
    )
    assert proc.stdout is not None
    output = b""
    while b"listening on http://" not in output:
        chunk = await proc.stdout.receive_some()
        if not chunk:
            raise SystemExit(f"the server exited: {output.decode()}")
        output += chunk
    return proc, output.decode().split("listening on ", 1)[1].split()[0]


async def run(orders: int, database: str, edge: bool) -> dict[str, object]:
    procs: list[trio.Process] = []
    flags = ["--database", database, "--demo-user", "off", "--seed", "3"]
    if edge:
        sock = Path(database).parent / "r.sock"
        procs.append(await trio.lowlevel.open_process(
            ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", ""],
            stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        with trio.fail_after(10):
            while not sock.exists():
                await trio.sleep(0.02)
        flags += ["--role", "primary", "--bus-url", f"unix://{sock}"]
    proc, url = await start(*flags)
    procs.append(proc)
    sockets = {"primary": url}
    if edge:
        proc, sockets["edge"] = await start(
            "--role", "edge", "--bus-url", f"unix://{sock}", "--primary-url", url
        )
        procs.append(proc)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            reg = await http.post(
                "/api/accounts/register/", json={"username": "bench", "password": "bench-pw"}
            )
            token = reg.json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await http.post("/api/trading/wallet/", json={"amount": 10_000_000}, headers=auth)
            # One `holding` event per market buy, after its fill: when it came, on each socket.
            arrived: dict[str, list[float]] = {name: [] for name in sockets}

            async def listen(name: str, base: str) -> None:
                ws_url = base.replace("http://", "ws://") + f"/ws/user/?token={token}"
                async with trio_websocket.open_websocket_url(ws_url) as ws:
                    while True:
                        frame = json.loads(await ws.get_message())
                        if frame["type"] == "holding":
                            arrived[name].append(time.perf_counter())

            delays: dict[str, list[float]] = {name: [] for name in sockets}
            round_trips = []
            async with trio.open_nursery() as nursery:
                for name, base in sockets.items():
                    nursery.start_soon(listen, name, base)
                await trio.sleep(1.0)  # the sockets open (and, through the edge, reach the primary)
                body = {"symbol": "SCOM", "side": "buy", "quantity": 10,
                        "order_type": "market"}  # fmt: skip
                for _ in range(orders):
                    for got in arrived.values():
                        got.clear()
                    sent = time.perf_counter()
                    answer = await http.post("/api/trading/orders/", json=body, headers=auth)
                    answered = time.perf_counter()
                    assert answer.status_code == 201, answer.text
                    with trio.fail_after(5):
                        while not all(arrived.values()):
                            await trio.sleep(0.0002)
                    for name, got in arrived.items():
                        delays[name].append((got[0] - answered) * 1000)
                    round_trips.append((answered - sent) * 1000)
                nursery.cancel_scope.cancel()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            await proc.wait()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(statistics.median(values), 2),
            "p95": round(pct(values, 0.95), 2),
            "p99": round(pct(values, 0.99), 2),
            "max": round(max(values), 2),
        }

    result: dict[str, object] = {"orders": orders, "rest_round_trip_ms": summary(round_trips)}
    for name, values in delays.items():
        result[f"event_after_answer_ms_{name}"] = summary(values)
        result[f"within_100ms_{name}"] = sum(d <= 100 for d in values) / len(values)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--edge", action="store_true", help="a primary and an edge on Redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ms-us-") as folder:
        result = trio.run(run, args.orders, str(Path(folder) / "bench.db"), args.edge)
    for name in ("primary", "edge") if args.edge else ("primary",):
        print(f"events after the REST answer, on the {name} (ms): "
              f"{result[f'event_after_answer_ms_{name}']}; within 100 ms: "
              f"{result[f'within_100ms_{name}']:.1%}")  # fmt: skip
    print(f"REST round trip, baseline (ms): {result['rest_round_trip_ms']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
