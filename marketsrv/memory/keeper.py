"""The market's memory: restore the market from the database at start, save what changed since.

`restore` runs once, blocking, before serving (and before users' resting orders go back in the
books, so they meet the market as it was). A new database gets a synthetic history first.
`collect` runs on the trio thread: it copies what changed since the last call into plain rows,
a cost proportional to the changes (a few hundred trades and a few dozen candles a second), and
`tables.save` writes them on the storage writer, beside the orders, in one transaction. The
server saves once a second and at shutdown, so after a `kill -9` at most the last second or so of
market history is missing; users' orders and fills are durable on their own path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from marketsrv.market import Market, Simulator
from marketsrv.market.history import synthetic_history
from marketsrv.market.state import TradeRecord
from marketsrv.memory import tables
from marketsrv.memory.tables import Batch, CandleRow
from marketsrv.units import DAY_MS
from storage import Database

log = logging.getLogger("marketsrv.memory")

SAVE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class MemorySettings:
    history_days: int = 365  # daily bars made up for a new database (0: none)
    history_minute_days: int = 2  # of which the last days also get one-minute candles
    candle_retention_days: int = 7  # one-minute candles kept in the database
    seed: int = 0


class MarketMemory:
    def __init__(
        self, market: Market, simulator: Simulator | None, settings: MemorySettings
    ) -> None:
        self.market = market
        self.simulator = simulator
        self.settings = settings
        symbols = list(market.instruments)
        self._trade_cursor = dict.fromkeys(symbols, 0)  # last trade id saved
        self._candle_cursor = dict.fromkeys(symbols, 0)  # start of the last candle saved
        self._daily_saved = dict.fromkeys(symbols, 0)  # daily bars saved
        self._pruned_at = 0
        # For the health page and docs/performance.md.
        self.saves = 0
        self.rows_saved = 0
        self.collect_s = 0.0
        self.write_s = 0.0

    # -- start -------------------------------------------------------------------------------

    def restore(self, db: Database) -> None:
        """Load the saved market into the (new, empty) market; make up a history if none."""
        market = self.market
        saved = db.read(
            lambda conn: tables.load(
                conn,
                list(market.instruments),
                market.stats[next(iter(market.stats))].candles.maxlen or 1440,
                market.trades[next(iter(market.trades))].maxlen or 1000,
            )
        )
        if saved.empty and self.settings.history_days > 0:
            self._make_history(db)
            return
        newest_save = 0
        fair: dict[str, float] = {}
        for symbol, stats in market.stats.items():
            stats.candles.extend(saved.candles[symbol])
            market.daily[symbol] = saved.daily[symbol]
            self._daily_saved[symbol] = len(saved.daily[symbol])
            if saved.candles[symbol]:
                self._candle_cursor[symbol] = saved.candles[symbol][-1].start_ms
            market.trades[symbol].extend(
                TradeRecord(r["trade_id"], r["price"], r["quantity"], r["aggressor"],
                            r["created_at"])
                for r in saved.trades[symbol]
            )  # fmt: skip
            last_trade_id = saved.trades[symbol][-1]["trade_id"] if saved.trades[symbol] else 0
            row = saved.symbols.get(symbol)
            if row is not None:
                newest_save = max(newest_save, row["saved_at"])
                stats.previous_close = row["previous_close"]
                stats.open, stats.high, stats.low = row["open"], row["high"], row["low"]
                stats.last = row["last"]
                stats.volume, stats.turnover = row["volume"], row["turnover"]
                stats.trade_count, stats.last_trade_ms = row["trades"], row["last_trade_ms"]
                last_trade_id = max(last_trade_id, row["last_trade_id"])
                if row["fair"] is not None:
                    fair[symbol] = row["fair"]
                if row["halted"]:
                    market.halted[symbol] = row["halted"]
                market.updated_ms[symbol] = row["saved_at"]
            # Trade ids go on from the highest any table knows, users' fills included (they
            # are durable even when the last second of market history is not).
            last_trade_id = max(last_trade_id, saved.fills_trade_id[symbol])
            market.books[symbol].resume_trade_ids(last_trade_id)
            self._trade_cursor[symbol] = last_trade_id
            market.update_limits(symbol)
        if newest_save:
            # The day it was saved in: keep_time then rolls the days (and runs the auctions)
            # that passed while the server was down.
            market.session = market.calendar.session_at(newest_save)
        if self.simulator is not None:
            self.simulator.resume_from(fair)
        log.info(
            "market restored from %s (trading day %s)",
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(newest_save / 1000))
            if newest_save
            else "its history",
            market.session.day,
        )

    def _make_history(self, db: Database) -> None:
        market, settings = self.market, self.settings
        started = time.perf_counter()
        today: date = market.session.day
        daily_rows: list[CandleRow] = []
        minute_rows: list[CandleRow] = []
        for symbol, inst in market.instruments.items():
            bars, minutes = synthetic_history(
                inst, settings.seed, market.calendar, today, settings.history_days,
                settings.history_minute_days,
            )  # fmt: skip
            market.daily[symbol] = bars
            market.stats[symbol].candles.extend(minutes)
            daily_rows.extend(_row(symbol, c) for c in bars)
            minute_rows.extend(_row(symbol, c) for c in minutes)
            self._daily_saved[symbol] = len(bars)
            if minutes:
                self._candle_cursor[symbol] = market.stats[symbol].candles[-1].start_ms
        db.write(lambda conn: tables.insert_history(conn, daily_rows, minute_rows, settings.seed))
        log.info(
            "a new database: %d days of synthetic history (seed %d) in %.2f s",
            settings.history_days, settings.seed, time.perf_counter() - started,
        )  # fmt: skip

    # -- running -----------------------------------------------------------------------------

    def collect(self) -> Batch:
        """What changed since the last call, as rows (trio thread; advances the cursors)."""
        started = time.perf_counter()
        market = self.market
        batch = Batch()
        day = market.session.day.isoformat()
        now = market.clock()
        fair = self.simulator.fair_values() if self.simulator is not None else {}
        for symbol, stats in market.stats.items():
            log_ = market.trades[symbol]
            book_trade_id = market.books[symbol].trade_ids
            batch.symbols.append((
                symbol, day, now, stats.previous_close, stats.open, stats.high, stats.low,
                stats.last, stats.volume, stats.turnover, stats.trade_count, stats.last_trade_ms,
                book_trade_id, fair.get(symbol), market.halted.get(symbol),
            ))  # fmt: skip
            cursor = self._trade_cursor[symbol]
            if log_ and log_[-1].trade_id > cursor:
                new = []
                for t in reversed(log_):
                    if t.trade_id <= cursor:
                        break
                    new.append((symbol, t.trade_id, t.price, t.quantity, t.aggressor,
                                t.timestamp_ms))  # fmt: skip
                batch.trades.extend(reversed(new))
                self._trade_cursor[symbol] = log_[-1].trade_id
                batch.keep_trades_from[symbol] = log_[0].trade_id
            candles = stats.candles
            since = self._candle_cursor[symbol]
            if candles and candles[-1].start_ms >= since:
                for c in reversed(candles):  # the last saved one again: it may have grown
                    if c.start_ms < since:
                        break
                    batch.candles.append(_row(symbol, c))
                self._candle_cursor[symbol] = candles[-1].start_ms
            bars = market.daily[symbol]
            if len(bars) > self._daily_saved[symbol]:
                batch.daily.extend(_row(symbol, c) for c in bars[self._daily_saved[symbol] :])
                self._daily_saved[symbol] = len(bars)
        if now - self._pruned_at >= 3_600_000:  # retention: once an hour is plenty
            self._pruned_at = now
            batch.prune_candles_before = now - self.settings.candle_retention_days * DAY_MS
        self.collect_s += time.perf_counter() - started
        return batch

    def save(self, db: Database) -> int:
        """Collect (on the calling thread) and write, blocking: for shutdown and tests."""
        batch = self.collect()
        return self.write(db, batch)

    def write(self, db: Database, batch: Batch) -> int:
        """Write a collected batch through the storage writer (blocking: run it in a thread)."""
        started = time.perf_counter()
        rows: int = db.write(lambda conn: tables.save(conn, batch))
        self.write_s += time.perf_counter() - started
        self.saves += 1
        self.rows_saved += rows
        return rows

    def figures(self) -> dict[str, Any]:
        return {
            "saves": self.saves,
            "rows_saved": self.rows_saved,
            "collect_ms": round(self.collect_s * 1000, 3),
        }


def _row(symbol: str, c: Any) -> CandleRow:
    return (symbol, c.start_ms, c.open, c.high, c.low, c.close, c.volume, c.trades)
