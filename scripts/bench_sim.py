#!/usr/bin/env python3
"""How much CPU the market simulator costs, for docs/performance.md.

Runs the simulator over a universe (default: the 50-symbol benchmark universe) for a number of
ticks with a fake clock, recording every order and cancel it sends. Then, in the same run, replays
exactly that order flow into fresh books: the baseline is the matching work alone, so the ratio is
what the simulator's own decisions add on top of the engine. The CPU share is the measured CPU per
tick over the tick interval.

    .venv/bin/python scripts/bench_sim.py [--ticks 3000] [--universe FILE] [--takers-per-tick 0.5]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketsrv.market import Market, Simulator, load_universe  # noqa: E402
from marketsrv.market.state import wall_clock_ms  # noqa: E402


class RecordingMarket(Market):
    """A Market that remembers every call the simulator makes, to replay it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[Any, ...]] = []

    def submit(
        self,
        symbol: str,
        side: Any,
        quantity: int,
        price: int | None = None,  # type: ignore[override]
        tif: Any = None,
        owner: str | None = None,
        order_id: int | None = None,
    ) -> Any:
        order_id = order_id if order_id is not None else self.next_order_id()
        self.calls.append(("submit", symbol, order_id, side, quantity, price, tif))
        return super().submit(symbol, side, quantity, price, tif, owner, order_id)

    def cancel(self, symbol: str, order_id: int) -> int | None:
        self.calls.append(("cancel", symbol, order_id))
        return super().cancel(symbol, order_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--universe", default=str(ROOT / "scripts/data/universe-sym50.json"))
    parser.add_argument("--takers-per-tick", type=float, default=0.5)
    parser.add_argument("--tick-interval-ms", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    instruments = load_universe(args.universe)
    now = [1_700_000_000_000]
    market = RecordingMarket(instruments, clock=lambda: now[0])
    sim = Simulator(
        market,
        seed=args.seed,
        tick_interval_ms=args.tick_interval_ms,
        takers_per_tick=args.takers_per_tick,
    )
    sim.step()  # the first tick builds every ladder; measure the steady state
    market.calls.clear()
    cpu0 = time.process_time()
    for _ in range(args.ticks):
        sim.step()
        now[0] += args.tick_interval_ms
    sim_cpu = time.process_time() - cpu0
    calls = market.calls

    # Baseline: the same flow into a fresh market seeded with the first tick's ladders.
    replay = Market(instruments, clock=wall_clock_ms)
    warm = Simulator(
        replay,
        seed=args.seed,
        tick_interval_ms=args.tick_interval_ms,
        takers_per_tick=args.takers_per_tick,
    )
    warm.step()
    books = replay.books
    cpu0 = time.process_time()
    for call in calls:
        if call[0] == "submit":
            _, symbol, order_id, side, quantity, price, tif = call
            books[symbol].submit(order_id, side, quantity, price, tif)
        else:
            books[call[1]].cancel(call[2])
    engine_cpu = time.process_time() - cpu0

    per_tick_ms = sim_cpu / args.ticks * 1000
    trades = sum(s.trade_count for s in market.stats.values())
    result = {
        "symbols": len(instruments),
        "ticks": args.ticks,
        "tick_interval_ms": args.tick_interval_ms,
        "takers_per_tick": args.takers_per_tick,
        "orders_and_cancels": len(calls),
        "trades": trades,
        "cpu_per_tick_ms": round(per_tick_ms, 4),
        "cpu_share_of_one_core": round(per_tick_ms / args.tick_interval_ms, 4),
        "engine_only_cpu_per_tick_ms": round(engine_cpu / args.ticks * 1000, 4),
        "ratio_vs_engine_only": round(sim_cpu / engine_cpu, 2) if engine_cpu else None,
        "python": sys.version.split()[0],
    }
    print(
        f"simulator: {per_tick_ms:.3f} ms CPU per tick for {len(instruments)} symbols "
        f"= {100 * per_tick_ms / args.tick_interval_ms:.2f}% of one core at a "
        f"{args.tick_interval_ms} ms tick"
    )
    print(
        f"baseline (same {len(calls)} orders/cancels into the engine alone): "
        f"{engine_cpu / args.ticks * 1000:.3f} ms per tick; ratio {result['ratio_vs_engine_only']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
