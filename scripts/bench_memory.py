#!/usr/bin/env python3
"""What persisting the market costs (`marketsrv.memory`), for docs/performance.md.

The default universe (the bundled NSE file, 29 symbols) and the default simulator (seed 1, a
100 ms tick, 0.5 takers per symbol and tick) run on a fake clock moved 100 ms per step, as
`run_market` drives them (`keep_time`, then `step`). Every 10 steps, one simulated second, the
market's memory collects what changed (`MarketMemory.collect`, the trio thread's part) and writes
the batch to a real SQLite file in a temporary directory (`Database(..., synchronous="FULL")`, the
writer thread's part), blocking, so the timings do not overlap. The database is new: `restore`
first makes up a short history (5 days of daily bars, 1 day of one-minute candles).

Reported, in one run:
- the event loop: time in `collect()`, total and per call, against the simulator's own step time
  (`Simulator.busy_s`), the baseline: the ratio is what persistence adds to the loop's market work;
- the writer: wall time of each save (`db.write`, fsync included) and the CPU time of the writer
  thread (its own CPU clock), rows, trades and candles per save;
- the share of one core the server spends on persistence: (collect + writer CPU) / simulated
  seconds, since the real server saves once per wall second;
- the database file's size (after close, i.e. checkpointed) and its growth per simulated hour,
  extrapolated from the run's second half (the trade table stops growing once it holds as many
  trades per symbol as the memory does, 1,000; candles grow by one per symbol and minute).

    .venv/bin/python scripts/bench_memory.py [--seconds 600] [--quick] [--dir D]   # --quick: 60 s

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketsrv.market import Market, Simulator, load_universe  # noqa: E402
from marketsrv.market.days import keep_time  # noqa: E402
from marketsrv.memory import MarketMemory, MemorySettings  # noqa: E402
from storage import Database  # noqa: E402

TICK_MS = 100
STEPS_PER_SAVE = 10  # one simulated second, the server's SAVE_INTERVAL_S


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (q=0.99: p99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def used_bytes(db: Database) -> int:
    """Pages in use (page count minus free pages) of the committed database, WAL included."""

    def query(conn: sqlite3.Connection) -> int:
        size, count, free = (
            conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_size", "page_count", "freelist_count")
        )
        return int(size * (count - free))

    return db.read(query)


def table_rows(db: Database) -> dict[str, int]:
    tables = ("market_symbols", "market_trades", "candles_1m", "daily_bars")
    return db.read(
        lambda c: {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600, help="simulated seconds")
    parser.add_argument("--quick", action="store_true", help="60 simulated seconds")
    parser.add_argument("--dir", default=None, help="where the temporary database goes")
    args = parser.parse_args()
    seconds = 60 if args.quick else args.seconds

    now = [1_700_000_000_000]  # 01:13 in Nairobi: no day roll within the run
    market = Market(load_universe(), clock=lambda: now[0])
    sim = Simulator(market, seed=1, tick_interval_ms=TICK_MS)
    memory = MarketMemory(
        market, sim, MemorySettings(history_days=5, history_minute_days=1, seed=1)
    )

    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=args.dir) as tmp:
        path = Path(tmp) / "market.db"
        db = Database(path, synchronous="FULL")
        db.open()
        memory.restore(db)  # a new database: the tables, and a made-up history
        size_restored = used_bytes(db)
        # The writer thread's own CPU clock (Linux, macOS); None elsewhere.
        writer = db._writer  # private, but a benchmark may look
        try:
            clock_id = time.pthread_getcpuclockid(writer.ident or 0) if writer else None
        except (AttributeError, OSError):
            clock_id = None
        writer_cpu = (lambda: time.clock_gettime(clock_id)) if clock_id is not None else None
        gc.collect()
        gc.freeze()  # as run_market does once started

        collect_s: list[float] = []  # per save, on the "trio" thread
        write_s: list[float] = []  # per save, wall time of db.write (the caller waits)
        cpu_s: list[float] = []  # per save, CPU of the writer thread
        rows, trades, candles = [], [], []
        size_half = trades_half = 0
        busy0 = sim.busy_s
        for i in range(1, seconds * STEPS_PER_SAVE + 1):
            keep_time(market)
            sim.step()
            now[0] += TICK_MS
            if i % STEPS_PER_SAVE:
                continue
            started = time.perf_counter()
            batch = memory.collect()
            collect_s.append(time.perf_counter() - started)
            rows.append(batch.rows)
            trades.append(len(batch.trades))
            candles.append(len(batch.candles))
            cpu0 = writer_cpu() if writer_cpu else 0.0
            started = time.perf_counter()
            written = memory.write(db, batch)
            write_s.append(time.perf_counter() - started)
            cpu_s.append(writer_cpu() - cpu0 if writer_cpu else 0.0)
            if hasattr(memory, "saved"):  # a keeper whose cursors move once the batch is durable
                memory.saved(batch, written)
            if i == seconds * STEPS_PER_SAVE // 2:
                size_half = used_bytes(db)
                trades_half = table_rows(db)["market_trades"]
        step_s = sim.busy_s - busy0
        size_end = used_bytes(db)
        rows_end = table_rows(db)
        db.close()  # the last connection checkpoints the WAL into the file and removes it
        file_bytes = path.stat().st_size
    gc.unfreeze()

    saves = len(collect_s)
    collect_total, cpu_total = sum(collect_s), sum(cpu_s)
    # The figures (ms where per call or save): printed as a table, then as one JSON line.
    r: dict[str, Any] = {
        "bench": "memory",
        "symbols": len(market.instruments),
        "seconds": seconds,
        "saves": saves,
        "step_s": round(step_s, 4),
        "collect_s": round(collect_total, 4),
        "collect_ms_mean": round(collect_total / saves * 1000, 4),
        "collect_ms_p99": round(pct(collect_s, 0.99) * 1000, 4),
        "ratio_collect_to_step": round(collect_total / step_s, 4),
        "write_ms_mean": round(sum(write_s) / saves * 1000, 3),
        "write_ms_p99": round(pct(write_s, 0.99) * 1000, 3),
        "write_ms_max": round(max(write_s) * 1000, 3),
        "writer_cpu_ms_mean": round(cpu_total / saves * 1000, 3) if writer_cpu else None,
        "writer_cpu_ms_p99": round(pct(cpu_s, 0.99) * 1000, 3) if writer_cpu else None,
        "rows_mean": round(sum(rows) / saves, 1),
        "rows_max": max(rows),
        "trades_mean": round(sum(trades) / saves, 1),
        "trades_max": max(trades),
        "candles_mean": round(sum(candles) / saves, 2),
        "candles_max": max(candles),
        "core_share": round((collect_total + cpu_total) / seconds, 5),
        "db_bytes_restored": size_restored,
        "db_bytes_end": size_end,
        "db_file_bytes": file_bytes,
        "growth_bytes_per_hour": int((size_end - size_half) / (seconds - seconds // 2) * 3600),
        "table_rows": rows_end,
        # The trade table holds as many trades per symbol as the market's trade log.
        "trade_table_full_at_half": trades_half
        >= sum(log.maxlen or 0 for log in market.trades.values()),
        "python": sys.version.split()[0],
    }
    table = [
        ("simulated seconds / saves", f"{seconds} / {saves}", ""),
        ("simulator step (baseline)", f"{step_s:.3f} s", f"{step_s / seconds:.2%} of a core"),
        ("collect(), total", f"{collect_total:.3f} s", f"/ step {r['ratio_collect_to_step']}"),
        ("collect(), per call", f"{r['collect_ms_mean']} ms", f"p99 {r['collect_ms_p99']} ms"),
        ("db.write wall, per save", f"{r['write_ms_mean']:.2f} ms",
         f"p99 {r['write_ms_p99']:.2f} ms, max {r['write_ms_max']:.2f} ms"),
        ("writer CPU, per save", f"{r['writer_cpu_ms_mean']} ms",
         f"p99 {r['writer_cpu_ms_p99']} ms"),
        ("rows per save", f"{r['rows_mean']}", f"max {r['rows_max']}"),
        ("trades / candles per save", f"{r['trades_mean']} / {r['candles_mean']}",
         f"max {r['trades_max']} / {r['candles_max']}"),
        ("persistence, share of a core", f"{r['core_share']:.3%}",
         "(collect + writer CPU) / simulated seconds"),
        ("database bytes in use", f"{size_restored:,} -> {size_end:,}", f"file {file_bytes:,}"),
        ("growth per simulated hour", f"{r['growth_bytes_per_hour'] / 1e6:.2f} MB",
         "from the run's second half" + ("" if r["trade_table_full_at_half"] else
                                          " (too high: the trade table was still filling)")),
    ]  # fmt: skip
    width = max(len(row[0]) for row in table)
    for name, value, note in table:
        print(f"{name:<{width}}  {value:<24} {note}")
    print("rows at the end:", ", ".join(f"{t} {n:,}" for t, n in rows_end.items()))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
