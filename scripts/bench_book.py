#!/usr/bin/env python3
"""Benchmark the matching engine against a bare sorted-dict book on the same order flow.

The flow is pre-generated with a fixed seed: 70% GTC limit adds within a few ticks of the touch,
20% cancels of random live orders, 10% marketable orders (half IOC limits, half market orders)
sized to eat one to three levels. Both books then replay the identical op list; the engine's
throughput, the baseline's, and their ratio are printed, the last line as one JSON object.

    .venv/bin/python scripts/bench_book.py [--orders N] [--repeat R] [--seed S] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

try:
    import marketsrv  # noqa: F401
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sortedcontainers import SortedDict

from marketsrv.engine import OrderBook, Side, TimeInForce

ADD, CANCEL, TAKE = 0, 1, 2
MID = 100_000  # ticks; far from zero so the walk of the mid never reaches it
Op = tuple[int, int, Side, int, int | None]  # kind, order id, side, quantity, price


class BaselineBook:
    """The least a price-time book needs: a SortedDict of FIFO deques per side and an id index.

    Cancels mark the entry dead (O(1)) and matching drops dead entries as it meets them; there
    are no events, trade objects, owners, depth totals or sequence numbers.
    """

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.index: dict[int, list[int]] = {}
        self.trades = 0

    def add(
        self, order_id: int, side: Side, qty: int, price: int | None, rest: bool = True
    ) -> None:
        """Match, then rest what is left of a limit order if `rest` (price None: market)."""
        if side is Side.BUY:
            book, opp, best = self.bids, self.asks, 0
        else:
            book, opp, best = self.asks, self.bids, -1
        while qty and opp:
            level_price, queue = opp.peekitem(best)
            if price is not None and (level_price > price if best == 0 else level_price < price):
                break
            while qty and queue:
                entry = queue[0]
                fill = entry[1] if entry[1] < qty else qty
                if fill:
                    entry[1] -= fill
                    qty -= fill
                    self.trades += 1
                if not entry[1]:
                    queue.popleft()
                    self.index.pop(entry[0], None)
            if not queue:
                del opp[level_price]
        if qty and rest and price is not None:
            entry = [order_id, qty]
            level = book.get(price)
            if level is None:
                book[price] = level = deque()
            level.append(entry)
            self.index[order_id] = entry

    def cancel(self, order_id: int) -> int | None:
        entry = self.index.pop(order_id, None)
        if entry is None:
            return None
        qty, entry[1] = entry[1], 0
        return qty


def generate(n: int, seed: int) -> list[Op]:
    """Pre-generate the flow by steering a real engine, so cancels and sweeps hit live state."""
    rng = random.Random(seed)
    book = OrderBook("GEN", clock=lambda: 0)
    live: list[int] = []
    where: dict[int, int] = {}  # order id -> index in `live`, for O(1) swap-removal

    def forget(order_id: int) -> None:
        i = where.pop(order_id)
        last = live.pop()
        if last != order_id:
            live[i] = last
            where[last] = i

    ops: list[Op] = []
    for order_id in range(1, n + 1):
        roll = rng.random()
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        bids, asks = book.depth(3)
        opposite = asks if side is Side.BUY else bids
        if 0.7 <= roll < 0.9 and live:
            victim = live[rng.randrange(len(live))]
            book.cancel(victim)
            forget(victim)
            ops.append((CANCEL, victim, side, 0, None))
            continue
        if roll >= 0.9 and opposite:
            levels = opposite[: rng.randint(1, 3)]
            qty = sum(q for _, q in levels)
            if rng.random() < 0.5:  # stop part-way into the last level
                qty = max(1, qty - rng.randint(0, levels[-1][1] - 1))
            price = levels[-1][0] if rng.random() < 0.5 else None
            result = book.submit(order_id, side, qty, price, TimeInForce.IOC)
            ops.append((TAKE, order_id, side, qty, price))
        else:
            best_bid, best_ask = book.best_bid(), book.best_ask()
            if side is Side.BUY:
                touch = best_ask if best_ask is not None else (best_bid or MID - 1) + 1
                price = touch - rng.randint(1, 5)
            else:
                touch = best_bid if best_bid is not None else (best_ask or MID + 1) - 1
                price = touch + rng.randint(1, 5)
            qty = rng.randint(1, 10) * 10
            result = book.submit(order_id, side, qty, price)
            ops.append((ADD, order_id, side, qty, price))
            live.append(order_id)
            where[order_id] = len(live) - 1
        for trade in result.trades:
            if not trade.maker_remaining:
                forget(trade.maker_order_id)
    return ops


def run_engine(ops: list[Op]) -> tuple[float, int]:
    book = OrderBook("BENCH")
    submit, cancel, ioc = book.submit, book.cancel, TimeInForce.IOC
    trades = 0
    start = time.perf_counter()
    for kind, order_id, side, qty, price in ops:
        if kind == ADD:
            trades += len(submit(order_id, side, qty, price).trades)
        elif kind == CANCEL:
            cancel(order_id)
        else:
            trades += len(submit(order_id, side, qty, price, ioc).trades)
    return time.perf_counter() - start, trades


def run_baseline(ops: list[Op]) -> tuple[float, int]:
    book = BaselineBook()
    add, cancel = book.add, book.cancel
    start = time.perf_counter()
    for kind, order_id, side, qty, price in ops:
        if kind == ADD:
            add(order_id, side, qty, price)
        elif kind == CANCEL:
            cancel(order_id)
        else:
            add(order_id, side, qty, price, False)
    return time.perf_counter() - start, book.trades


def timed(runner: Callable[[list[Op]], tuple[float, int]], ops: list[Op]) -> tuple[float, int]:
    gc.collect()
    gc.freeze()  # the op list is long-lived: keep the collector from rescanning it every pass
    try:
        return runner(ops)
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="ops in the flow")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each book; best kept")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--quick", action="store_true", help="20,000 ops, one run: a smoke test")
    args = parser.parse_args(argv)
    n, repeat = (20_000, 1) if args.quick else (args.orders, args.repeat)

    t0 = time.perf_counter()
    ops = generate(n, args.seed)
    counts = Counter(op[0] for op in ops)
    mix = {"add": counts[ADD], "cancel": counts[CANCEL], "take": counts[TAKE]}
    print(f"generated {n:,} ops in {time.perf_counter() - t0:.1f}s: {mix}")

    engine_s: list[float] = []
    base_s: list[float] = []
    for _ in range(repeat):  # interleaved, so a slow spell of the machine hits both alike
        seconds, trades = timed(run_engine, ops)
        engine_s.append(seconds)
        seconds, base_trades = timed(run_baseline, ops)
        base_s.append(seconds)
        if trades != base_trades:
            print(f"MISMATCH: engine made {trades} trades, baseline {base_trades}")
            return 1
    engine_rate, base_rate = n / min(engine_s), n / min(base_s)
    ratio = engine_rate / base_rate
    for name, rate, runs in (("engine", engine_rate, engine_s), ("baseline", base_rate, base_s)):
        times = ", ".join(f"{s:.2f}s" for s in runs)
        print(f"{name + ':':9} {rate:12,.0f} orders/s  (runs: {times})")
    print(f"ratio:    {ratio:.3f}   trades: {trades:,}")
    print(json.dumps({
        "orders_per_s": round(engine_rate),
        "baseline_orders_per_s": round(base_rate),
        "ratio": round(ratio, 3),
        "orders": n,
        "trades": trades,
        "seconds": round(min(engine_s), 3),
        "baseline_seconds": round(min(base_s), 3),
        "repeat": repeat,
        "mix": mix,
        "seed": args.seed,
        "python": platform.python_version(),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
