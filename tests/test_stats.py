"""Session statistics and candles, computed from trades only."""

from __future__ import annotations

from marketsrv.market.stats import MINUTE_MS, SessionStats

T0 = 1_700_000_040_000  # a minute boundary


def test_session_figures() -> None:
    stats = SessionStats(previous_close=100)
    assert (stats.current, stats.change, stats.change_percent, stats.vwap) == (100, 0, 0.0, None)
    stats.record(102, 10, T0)
    stats.record(98, 30, T0 + 1)
    stats.record(101, 10, T0 + 2)
    assert (stats.open, stats.high, stats.low, stats.last) == (102, 102, 98, 101)
    assert stats.volume == 50 and stats.trade_count == 3
    assert stats.turnover == 102 * 10 + 98 * 30 + 101 * 10
    assert stats.vwap == stats.turnover / 50
    assert stats.change == 1 and stats.change_percent == 1.0


def test_candles_bucket_by_minute_and_merge() -> None:
    stats = SessionStats(previous_close=100, candle_history=3)
    for minute, (price, qty) in enumerate([(100, 1), (105, 2), (95, 3), (101, 4)]):
        stats.record(price, qty, T0 + minute * MINUTE_MS)
        stats.record(price + 1, qty, T0 + minute * MINUTE_MS + 59_999)
    assert len(stats.candles) == 3  # bounded: the oldest minute fell off
    first = stats.candles[0]
    assert (first.start_ms, first.open, first.close, first.high, first.low) == (
        T0 + MINUTE_MS,
        105,
        106,
        106,
        105,
    )
    assert first.volume == 4 and first.trades == 2
    five = stats.candles_for(5 * MINUTE_MS, 10)
    assert sum(c.volume for c in five) == sum(c.volume for c in stats.candles)
    assert all(c.start_ms % (5 * MINUTE_MS) == 0 for c in five)
    assert [c.start_ms for c in stats.candles_for(MINUTE_MS, 2)] == [
        T0 + 2 * MINUTE_MS,
        T0 + 3 * MINUTE_MS,
    ]


def test_late_trade_does_not_reopen_a_candle() -> None:
    stats = SessionStats(previous_close=100)
    stats.record(100, 1, T0 + MINUTE_MS)
    stats.record(90, 1, T0)  # the clock stepped back
    assert len(stats.candles) == 1 and stats.candles[0].low == 100
    assert stats.low == 90 and stats.volume == 2
