#!/usr/bin/env python3
"""How soon a user's events reach their `/ws/user/` socket after the REST answer that caused them.

Starts a real server (`python -m marketsrv --port 0`, simulator on, a fresh database in a temp
folder), registers a user, opens `/ws/user/?token=`, and places N market buys over REST, one at a
time. For each order it takes the time the 201 arrived and the time the order's last event
arrived (the `holding` after its fill): the delay is the second minus the first (negative when the
events beat the answer, which is usual: they commit before it is sent). The baseline, measured in
the same run, is the REST round trip itself. Reports both, p50/p95/p99/max in ms.

    .venv/bin/python scripts/bench_user_stream.py            # 300 orders; --orders N

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


async def run(orders: int, database: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")}
    cmd = [sys.executable, "-m", "marketsrv", "--port", "0", "--database", database,
           "--demo-user", "off", "--seed", "3"]  # fmt: skip
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
    url = output.decode().split("listening on ", 1)[1].split()[0]
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            reg = await http.post(
                "/api/accounts/register/", json={"username": "bench", "password": "bench-pw"}
            )
            token = reg.json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await http.post("/api/trading/wallet/", json={"amount": 10_000_000}, headers=auth)
            ws_url = url.replace("http://", "ws://") + f"/ws/user/?token={token}"
            async with trio_websocket.open_websocket_url(ws_url) as ws:
                # One `holding` event per market buy, after its fill: when it came.
                arrived: list[float] = []

                async def listen() -> None:
                    while True:
                        frame = json.loads(await ws.get_message())
                        if frame["type"] == "holding":
                            arrived.append(time.perf_counter())

                delays, round_trips = [], []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(listen)
                    body = {"symbol": "SCOM", "side": "buy", "quantity": 10,
                            "order_type": "market"}  # fmt: skip
                    for _ in range(orders):
                        arrived.clear()
                        sent = time.perf_counter()
                        answer = await http.post("/api/trading/orders/", json=body, headers=auth)
                        answered = time.perf_counter()
                        assert answer.status_code == 201, answer.text
                        with trio.fail_after(5):
                            while not arrived:
                                await trio.sleep(0.0002)
                        delays.append((arrived[0] - answered) * 1000)
                        round_trips.append((answered - sent) * 1000)
                    nursery.cancel_scope.cancel()
    finally:
        proc.terminate()
        await proc.wait()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(statistics.median(values), 2),
            "p95": round(pct(values, 0.95), 2),
            "p99": round(pct(values, 0.99), 2),
            "max": round(max(values), 2),
        }

    return {
        "orders": orders,
        "event_after_answer_ms": summary(delays),
        "rest_round_trip_ms": summary(round_trips),
        "within_100ms": sum(d <= 100 for d in delays) / len(delays),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = trio.run(run, args.orders, str(Path(folder) / "bench.db"))
    print(f"events after the REST answer (ms): {result['event_after_answer_ms']}")
    print(f"REST round trip, baseline (ms):    {result['rest_round_trip_ms']}")
    print(f"within 100 ms: {result['within_100ms']:.1%}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
