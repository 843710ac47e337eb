"""The SQL of the market's memory: save a batch of market rows, and read them back at start.

Each function runs inside one storage transaction (the writer's, or a reader's snapshot); the
rows are plain tuples copied on the trio thread, so the writer thread never touches live market
objects. Prices are cents, as in the books.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from marketsrv.market.stats import Candle

CandleRow = tuple[str, int, int, int, int, int, int, int]  # symbol, start, o, h, l, c, v, n
TradeRow = tuple[str, int, int, int, str, int]  # symbol, id, price, quantity, aggressor, time
SymbolRow = tuple[
    str, str, int, int, int | None, int | None, int | None, int | None, int, int, int,
    int | None, int, float | None, str | None,
]  # fmt: skip


@dataclass
class Batch:
    """What changed in the market since the last save."""

    symbols: list[SymbolRow] = field(default_factory=list)
    candles: list[CandleRow] = field(default_factory=list)
    daily: list[CandleRow] = field(default_factory=list)
    trades: list[TradeRow] = field(default_factory=list)
    # Per symbol, the oldest trade id to keep: the trade log is as long as the one in memory.
    keep_trades_from: dict[str, int] = field(default_factory=dict)
    prune_candles_before: int | None = None  # one-minute candles' retention
    clean: bool = False  # the last save of a server that stops: its trade ids are exact
    # Where the collector's cursors stand once this batch is written (MarketMemory.saved).
    cursors: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})

    @property
    def rows(self) -> int:
        return len(self.symbols) + len(self.candles) + len(self.daily) + len(self.trades)


def save(conn: sqlite3.Connection, batch: Batch) -> int:
    """Write `batch`; the number of rows written."""
    conn.executemany(
        "INSERT OR REPLACE INTO market_symbols (symbol, day, saved_at, previous_close, open, high,"
        " low, last, volume, turnover, trades, last_trade_ms, last_trade_id, fair, halted)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        batch.symbols,
    )
    conn.executemany(
        "INSERT OR REPLACE INTO candles_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.candles
    )
    conn.executemany(
        "INSERT OR REPLACE INTO daily_bars VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.daily
    )
    conn.executemany("INSERT OR IGNORE INTO market_trades VALUES (?, ?, ?, ?, ?, ?)", batch.trades)
    conn.executemany(
        "DELETE FROM market_trades WHERE symbol = ? AND trade_id < ?",
        list(batch.keep_trades_from.items()),
    )
    if batch.prune_candles_before is not None:  # per symbol: the primary key finds the range
        conn.executemany(
            "DELETE FROM candles_1m WHERE symbol = ? AND start_ms < ?",
            [(row[0], batch.prune_candles_before) for row in batch.symbols],
        )
    conn.execute(
        "INSERT OR REPLACE INTO market_meta VALUES ('clean_shutdown', ?)", (str(int(batch.clean)),)
    )
    return batch.rows


def was_clean(conn: sqlite3.Connection) -> bool:
    """Whether the server that saved last stopped cleanly (its final save said so)."""
    row = conn.execute("SELECT value FROM market_meta WHERE key = 'clean_shutdown'").fetchone()
    return row is not None and row[0] == "1"


@dataclass
class Saved:
    """The market as it was last saved, per symbol."""

    symbols: dict[str, sqlite3.Row]
    candles: dict[str, list[Candle]]
    daily: dict[str, list[Candle]]
    trades: dict[str, list[sqlite3.Row]]
    fills_trade_id: dict[str, int]  # the highest trade id a user's fill recorded
    clean: bool  # the last server stopped cleanly

    @property
    def empty(self) -> bool:
        return not self.symbols and not any(self.daily.values())


def _candle(row: sqlite3.Row) -> Candle:
    return Candle(
        row["start_ms"], row["open"], row["high"], row["low"], row["close"], row["volume"],
        row["trades"],
    )  # fmt: skip


def load(
    conn: sqlite3.Connection, symbols: list[str], candle_limit: int, trade_limit: int
) -> Saved:
    rows = {r["symbol"]: r for r in conn.execute("SELECT * FROM market_symbols")}
    candles, daily, trades, fills = {}, {}, {}, {}
    for symbol in symbols:
        newest = conn.execute(
            "SELECT * FROM candles_1m WHERE symbol = ? ORDER BY start_ms DESC LIMIT ?",
            (symbol, candle_limit),
        ).fetchall()
        candles[symbol] = [_candle(r) for r in reversed(newest)]
        daily[symbol] = [
            _candle(r)
            for r in conn.execute(
                "SELECT * FROM daily_bars WHERE symbol = ? ORDER BY start_ms", (symbol,)
            )
        ]
        recent = conn.execute(
            "SELECT * FROM market_trades WHERE symbol = ? ORDER BY trade_id DESC LIMIT ?",
            (symbol, trade_limit),
        ).fetchall()
        trades[symbol] = recent[::-1]
        top = conn.execute("SELECT MAX(trade_id) FROM fills WHERE symbol = ?", (symbol,))
        fills[symbol] = top.fetchone()[0] or 0
    return Saved(rows, candles, daily, trades, fills, was_clean(conn))


def candles_between(
    conn: sqlite3.Connection, symbol: str, start: int, end: int, limit: int
) -> list[Candle]:
    """Saved one-minute candles of `symbol` beginning in [start, end), the newest `limit`."""
    rows = conn.execute(
        "SELECT * FROM candles_1m WHERE symbol = ? AND start_ms >= ? AND start_ms < ?"
        " ORDER BY start_ms DESC LIMIT ?",
        (symbol, start, end, limit),
    ).fetchall()
    return [_candle(r) for r in reversed(rows)]


def insert_history(
    conn: sqlite3.Connection, daily: list[CandleRow], minutes: list[CandleRow], seed: int
) -> None:
    """The synthetic history of a new database, and a note of the seed that made it."""
    conn.executemany("INSERT OR REPLACE INTO daily_bars VALUES (?, ?, ?, ?, ?, ?, ?, ?)", daily)
    conn.executemany("INSERT OR REPLACE INTO candles_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?)", minutes)
    conn.execute("INSERT OR REPLACE INTO market_meta VALUES ('history_seed', ?)", (str(seed),))
