"""Session statistics and one-minute candles of one symbol, built only from its trades.

Prices are cents and turnover is cents × shares, both exact integers; the REST layer turns them
into KES. Candles are kept in a bounded deque so memory stays flat over a long session; the
session's figures restart at each trading day (`reset`), the candles run on across days.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from marketsrv.units import MINUTE_MS


@dataclass(slots=True)
class Candle:
    start_ms: int  # the candle's open time, a multiple of its interval
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int


class SessionStats:
    """Open, high, low, last, change, volume, turnover, VWAP and candles of one trading session."""

    __slots__ = (
        "candles",
        "high",
        "last",
        "last_trade_ms",
        "low",
        "open",
        "previous_close",
        "trade_count",
        "turnover",
        "volume",
    )

    def __init__(self, previous_close: int, candle_history: int = 1440) -> None:
        self.previous_close = previous_close
        self.open: int | None = None
        self.high: int | None = None
        self.low: int | None = None
        self.last: int | None = None
        self.volume = 0
        self.turnover = 0  # sum of price cents × quantity
        self.trade_count = 0
        self.last_trade_ms: int | None = None
        self.candles: deque[Candle] = deque(maxlen=candle_history)

    def record(self, price: int, quantity: int, timestamp_ms: int) -> None:
        if self.open is None:
            self.open = self.high = self.low = price
        else:
            if price > self.high:  # type: ignore[operator]
                self.high = price
            if price < self.low:  # type: ignore[operator]
                self.low = price
        self.last = price
        self.volume += quantity
        self.turnover += price * quantity
        self.trade_count += 1
        self.last_trade_ms = timestamp_ms

        start = timestamp_ms - timestamp_ms % MINUTE_MS
        candles = self.candles
        if candles and candles[-1].start_ms == start:
            c = candles[-1]
            if price > c.high:
                c.high = price
            if price < c.low:
                c.low = price
            c.close = price
            c.volume += quantity
            c.trades += 1
        elif not candles or candles[-1].start_ms < start:
            candles.append(Candle(start, price, price, price, price, quantity, 1))
        # A trade stamped before the newest candle (a clock step backwards) still counts in the
        # session figures above but does not reopen a closed candle.

    def reset(self, previous_close: int) -> None:
        """A new trading day: the close becomes the previous close, the day's figures restart."""
        self.previous_close = previous_close
        self.open = self.high = self.low = self.last = None
        self.volume = self.turnover = self.trade_count = 0

    def day_bar(self, start_ms: int, close: int) -> Candle:
        """The day's bar, closing at `close`; a day without trades is flat at the previous close."""
        if self.open is None:
            p = self.previous_close
            return Candle(start_ms, p, p, p, p, 0, 0)
        assert self.high is not None and self.low is not None
        high, low = max(self.high, close), min(self.low, close)
        return Candle(start_ms, self.open, high, low, close, self.volume, self.trade_count)

    @property
    def current(self) -> int:
        """The last traded price, or the previous close before the first trade."""
        return self.previous_close if self.last is None else self.last

    @property
    def change(self) -> int:
        return self.current - self.previous_close

    @property
    def change_percent(self) -> float:
        return round(self.change * 100 / self.previous_close, 2) if self.previous_close else 0.0

    @property
    def vwap(self) -> float | None:
        """Volume-weighted average price in cents (a ratio, so not an exact cent)."""
        return self.turnover / self.volume if self.volume else None

    def candles_for(
        self, interval_ms: int, limit: int, start: int | None = None, end: int | None = None
    ) -> list[Candle]:
        """The newest `limit` candles of `interval_ms` (a multiple of a minute) that begin in
        [start, end), oldest first."""
        return merge_candles(self.candles, interval_ms, limit, start, end)


def merge_candles(
    candles: Iterable[Candle],
    interval_ms: int,
    limit: int,
    start: int | None = None,
    end: int | None = None,
    bucket: Callable[[int], int] | None = None,
) -> list[Candle]:
    """`candles` (oldest first) merged into bars of `interval_ms`, or of `bucket(start_ms)` (the
    bar a candle belongs to, for calendar weeks), keeping the newest `limit` in [start, end)."""
    merged: list[Candle] = []
    for c in candles:
        at = bucket(c.start_ms) if bucket else c.start_ms - c.start_ms % interval_ms
        if (start is not None and at < start) or (end is not None and at >= end):
            continue
        if merged and merged[-1].start_ms == at:
            m = merged[-1]
            m.high = max(m.high, c.high)
            m.low = min(m.low, c.low)
            m.close = c.close
            m.volume += c.volume
            m.trades += c.trades
        else:
            merged.append(Candle(at, c.open, c.high, c.low, c.close, c.volume, c.trades))
    return merged[-limit:]
