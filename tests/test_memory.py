"""The market's memory in process: a new database's history, and a save and restore round trip."""

from __future__ import annotations

from pathlib import Path

from marketsrv.market import Market, Simulator, load_universe
from marketsrv.market.days import keep_time
from marketsrv.memory import MarketMemory, MemorySettings
from storage import Database
from tests.builders import FakeClock


def open_db(path: Path) -> Database:
    db = Database(path, synchronous="NORMAL")
    db.open()
    return db


def fresh(clock: FakeClock, seed: int = 4, **memory: int) -> tuple[Market, Simulator, MarketMemory]:
    market = Market(load_universe(), clock=clock)
    simulator = Simulator(market, seed=seed)
    keeper = MarketMemory(market, simulator, MemorySettings(seed=seed, **memory))
    return market, simulator, keeper


def test_a_new_database_starts_with_a_year_of_history_ending_at_the_reference(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    market, _, keeper = fresh(clock, history_days=365, history_minute_days=1)
    db = open_db(tmp_path / "m.db")
    try:
        keeper.restore(db)
        saved = db.read(lambda c: c.execute("SELECT COUNT(*) FROM daily_bars").fetchone()[0])
    finally:
        db.close()
    assert saved == 365 * len(market.instruments)
    for symbol, inst in market.instruments.items():
        bars = market.daily[symbol]
        assert len(bars) == 365 and bars[-1].close == inst.reference_cents
        assert len(market.stats[symbol].candles) == 1440  # the last day's minutes
    again, _, other = fresh(FakeClock(), history_days=365, history_minute_days=1)
    db = open_db(tmp_path / "again.db")
    try:
        other.restore(db)
    finally:
        db.close()
    assert again.daily["SCOM"] == market.daily["SCOM"]  # deterministic for a seed


def test_a_restart_resumes_prices_candles_trades_and_the_previous_close(tmp_path: Path) -> None:
    clock = FakeClock()
    market, simulator, keeper = fresh(clock, history_days=5, history_minute_days=1)
    db = open_db(tmp_path / "m.db")
    try:
        keeper.restore(db)
        for _ in range(900):  # a minute and a half of market
            simulator.step()
            clock.advance(100)
            keep_time(market)
            if simulator.ticks % 10 == 0:
                keeper.save(db)
        keeper.save(db, clean=True)  # the server stops
    finally:
        db.close()
    stats = market.stats["SCOM"]
    fair = simulator.fair_values()["SCOM"]
    trade_id = market.books["SCOM"].trade_ids

    clock.advance(5_000)  # the restart takes five seconds
    again, resumed, keeper2 = fresh(clock, history_days=5, history_minute_days=1)
    db = open_db(tmp_path / "m.db")
    try:
        keeper2.restore(db)
    finally:
        db.close()
    got = again.stats["SCOM"]
    assert (got.last, got.previous_close, got.high, got.low, got.volume, got.turnover) == (
        stats.last, stats.previous_close, stats.high, stats.low, stats.volume, stats.turnover,
    )  # fmt: skip
    assert list(got.candles) == list(stats.candles)
    assert list(again.trades["SCOM"]) == list(market.trades["SCOM"])
    assert again.daily["SCOM"] == market.daily["SCOM"]
    assert abs(resumed.fair_values()["SCOM"] - fair) < 1e-6
    assert again.books["SCOM"].trade_ids == trade_id  # new trades get new ids
    for _ in range(50):
        resumed.step()
        clock.advance(100)
    assert again.trades["SCOM"][-1].trade_id > trade_id


def test_after_a_crash_trade_ids_jump_past_any_that_were_never_saved(tmp_path: Path) -> None:
    clock = FakeClock()
    market, simulator, keeper = fresh(clock, history_days=2, history_minute_days=1)
    db = open_db(tmp_path / "m.db")
    try:
        keeper.restore(db)
        for _ in range(100):
            simulator.step()
            clock.advance(100)
        keeper.save(db)  # a periodic save: then the process dies, later trades unsaved
        for _ in range(100):
            simulator.step()
            clock.advance(100)
    finally:
        db.close()
    streamed = market.books["SCOM"].trade_ids  # clients saw ids up to here
    again, _, keeper2 = fresh(clock, history_days=2, history_minute_days=1)
    db = open_db(tmp_path / "m.db")
    try:
        keeper2.restore(db)
    finally:
        db.close()
    assert again.books["SCOM"].trade_ids >= 1_000_000 > streamed
    assert again.stats["SCOM"].last is not None  # the saved second is there


def test_a_failed_save_is_collected_again(tmp_path: Path) -> None:
    clock = FakeClock()
    market, simulator, keeper = fresh(clock, history_days=2, history_minute_days=1)
    db = open_db(tmp_path / "m.db")
    try:
        keeper.restore(db)
        for _ in range(50):
            simulator.step()
            clock.advance(100)
        lost = keeper.collect()  # written nowhere: the disk was full
        assert lost.trades
        keeper.save(db)
        saved = db.read(lambda c: c.execute("SELECT COUNT(*) FROM market_trades").fetchone()[0])
    finally:
        db.close()
    assert saved == sum(len(t) for t in market.trades.values())
