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
from marketsrv.market.stats import Candle
from marketsrv.memory import tables
from marketsrv.memory.tables import Batch, CandleRow
from marketsrv.units import DAY_MS
from storage import Database

log = logging.getLogger("marketsrv.memory")

SAVE_INTERVAL_S = 1.0
# After a crash the trades of the last second were never saved, but their ids may have reached
# clients: new trades start at the next multiple of this, so no id is ever given twice.
CRASH_ID_STEP = 1_000_000
# The most one-minute candles one candles request reads from the database.
MAX_CANDLE_ROWS = 100_000


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
        self.db: Database | None = None  # the database restored from, saved to and read from
        # For the health page and docs/performance.md (changed on the trio thread only).
        self.saves = 0
        self.rows_saved = 0
        self.collect_s = 0.0
        self.write_s = 0.0

    # -- start -------------------------------------------------------------------------------

    def restore(self, db: Database) -> None:
        """Load the saved market into the (new, empty) market; make up a history if none."""
        market = self.market
        self.db = db
        saved = db.read(
            lambda conn: tables.load(
                conn,
                list(market.instruments),
                market.stats[next(iter(market.stats))].candles.maxlen or 1440,
                market.trades[next(iter(market.trades))].maxlen or 1000,
            )
        )
        if saved.empty:
            for symbol, book in market.books.items():  # users' fills may know trade ids
                book.resume_trade_ids(saved.fills_trade_id[symbol])
                self._trade_cursor[symbol] = book.trade_ids
            if self.settings.history_days > 0:
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
            if not saved.clean:
                last_trade_id = (last_trade_id // CRASH_ID_STEP + 1) * CRASH_ID_STEP
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

    def collect(self, clean: bool = False) -> Batch:
        """What changed since the last save, as rows (trio thread). The cursors move only when
        the batch is written (`saved`): a batch lost to a full disk is collected again."""
        started = time.perf_counter()
        market = self.market
        batch = Batch(clean=clean)
        trade_cursor, candle_cursor, daily_saved = (
            dict(self._trade_cursor), dict(self._candle_cursor), dict(self._daily_saved),
        )  # fmt: skip
        day = market.session.day.isoformat()
        now = market.clock()
        fair = self.simulator.fair_values() if self.simulator is not None else {}
        for symbol, stats in market.stats.items():
            log_ = market.trades[symbol]
            batch.symbols.append((
                symbol, day, now, stats.previous_close, stats.open, stats.high, stats.low,
                stats.last, stats.volume, stats.turnover, stats.trade_count, stats.last_trade_ms,
                market.books[symbol].trade_ids, fair.get(symbol), market.halted.get(symbol),
            ))  # fmt: skip
            cursor = trade_cursor[symbol]
            if log_ and log_[-1].trade_id > cursor:
                new = []
                for t in reversed(log_):
                    if t.trade_id <= cursor:
                        break
                    new.append((symbol, t.trade_id, t.price, t.quantity, t.aggressor,
                                t.timestamp_ms))  # fmt: skip
                batch.trades.extend(reversed(new))
                trade_cursor[symbol] = log_[-1].trade_id
                batch.keep_trades_from[symbol] = log_[0].trade_id
            candles = stats.candles
            since = candle_cursor[symbol]
            if candles and candles[-1].start_ms >= since:
                for c in reversed(candles):  # the last saved one again: it may have grown
                    if c.start_ms < since:
                        break
                    batch.candles.append(_row(symbol, c))
                candle_cursor[symbol] = candles[-1].start_ms
            bars = market.daily[symbol]
            if len(bars) > daily_saved[symbol]:
                batch.daily.extend(_row(symbol, c) for c in bars[daily_saved[symbol] :])
                daily_saved[symbol] = len(bars)
        if now - self._pruned_at >= 3_600_000:  # retention: once an hour is plenty
            batch.prune_candles_before = now - self.settings.candle_retention_days * DAY_MS
        batch.cursors = (trade_cursor, candle_cursor, daily_saved)
        self.collect_s += time.perf_counter() - started
        return batch

    def write(self, db: Database, batch: Batch) -> float:
        """Write a collected batch through the storage writer; the seconds it took. Blocking:
        run it in a thread, then call `saved` on the trio thread."""
        started = time.perf_counter()
        db.write(lambda conn: tables.save(conn, batch))
        return time.perf_counter() - started

    def saved(self, batch: Batch, seconds: float) -> None:
        """`batch` is durable: move the cursors past it (trio thread)."""
        self._trade_cursor, self._candle_cursor, self._daily_saved = batch.cursors
        if batch.prune_candles_before is not None:
            self._pruned_at = self.market.clock()
        self.saves += 1
        self.rows_saved += batch.rows
        self.write_s += seconds

    def save(self, db: Database, clean: bool = False) -> int:
        """Collect, write and commit, blocking on this thread: for tests and tools."""
        batch = self.collect(clean)
        self.saved(batch, self.write(db, batch))
        return batch.rows

    def older_candles(self, symbol: str, start: int, end: int, limit: int) -> list[Candle]:
        """Saved one-minute candles opening in [start, end), the newest `limit` (at most
        MAX_CANDLE_ROWS). Blocking: a database read, run it in a thread."""
        if self.db is None:
            return []
        count = min(limit, MAX_CANDLE_ROWS)
        return self.db.read(lambda conn: tables.candles_between(conn, symbol, start, end, count))

    def figures(self) -> dict[str, Any]:
        return {
            "saves": self.saves,
            "rows_saved": self.rows_saved,
            "collect_ms": round(self.collect_s * 1000, 3),
        }


def _row(symbol: str, c: Any) -> CandleRow:
    return (symbol, c.start_ms, c.open, c.high, c.low, c.close, c.volume, c.trades)
