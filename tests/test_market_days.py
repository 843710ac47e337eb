"""The market's day with an injected clock: phases, the opening auction, the day roll, halts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marketsrv.engine import Side, TimeInForce
from marketsrv.market import Market, Simulator, load_universe
from marketsrv.market.calendar import Calendar
from marketsrv.market.days import close_price, daily_bars, keep_time
from marketsrv.market.rules import price_limits
from marketsrv.market.scenarios import Scenario, run
from marketsrv.market.state import MarketRefused
from marketsrv.units import MINUTE_MS
from tests.builders import FakeClock


def at(text: str) -> int:
    """A Nairobi wall time (UTC+3, no daylight saving) as epoch ms."""
    local = datetime.fromisoformat(text)
    return int(local.replace(tzinfo=UTC).timestamp() * 1000) - 3 * 3600 * 1000


def nse_market(start: str) -> tuple[Market, FakeClock]:
    clock = FakeClock(at(start))
    return Market(load_universe(), clock=clock, calendar=Calendar("nse")), clock


def test_the_nse_day_goes_pre_open_auction_open_closed_at_the_published_times() -> None:
    market, clock = nse_market("2026-11-30 08:59:59")  # a Monday
    assert market.phase == "closed" and str(market.session.day) == "2026-11-27"  # Friday's
    phases = []
    for moment in ("09:00:00", "09:29:59", "09:30:00", "14:59:59", "15:00:00"):
        clock.now = at(f"2026-11-30 {moment}")
        keep_time(market)
        phases.append((moment, market.phase, str(market.session.day)))
    assert phases == [
        ("09:00:00", "pre_open", "2026-11-30"),
        ("09:29:59", "pre_open", "2026-11-30"),
        ("09:30:00", "open", "2026-11-30"),
        ("14:59:59", "open", "2026-11-30"),
        ("15:00:00", "closed", "2026-11-30"),
    ]
    clock.now = at("2026-12-05 12:00:00")  # Saturday: still Friday's day, closed
    keep_time(market)
    assert (market.phase, str(market.session.day)) == ("closed", "2026-12-04")


def test_pre_open_orders_rest_crossed_and_the_auction_prints_one_price() -> None:
    market, clock = nse_market("2026-11-30 09:05:00")
    keep_time(market)
    assert market.phase == "pre_open"
    book = market.books["SCOM"]  # previous close 28.50: limits 25.65 to 31.35
    for qty, price in ((300, 2900), (200, 2880), (400, 2850)):
        market.submit("SCOM", Side.BUY, qty, price, owner="buyers")
    for qty, price in ((250, 2820), (300, 2860), (500, 2950)):
        market.submit("SCOM", Side.SELL, qty, price, owner="sellers")
    assert book.crossed() and not market.trades["SCOM"]  # accepted, not matched
    with pytest.raises(MarketRefused) as refused:
        market.submit("SCOM", Side.BUY, 100, None, TimeInForce.IOC)
    assert refused.value.code == "market_closed"

    clock.now = at("2026-11-30 09:30:00")
    keep_time(market)
    assert market.phase == "open" and not book.crossed()
    prices = {t.price for t in market.trades["SCOM"]}
    # At 28.60 buyers of 500 (at 28.80+) meet sellers of 550 (28.20 and 28.60): 500 trade.
    assert prices == {2860} and sum(t.quantity for t in market.trades["SCOM"]) == 500
    assert market.stats["SCOM"].open == 2860


def test_a_day_roll_writes_a_daily_bar_and_moves_the_previous_close() -> None:
    clock = FakeClock(at("2026-11-30 23:58:00"))
    market = Market(load_universe(), clock=clock)  # always: the day rolls at midnight
    simulator = Simulator(market, seed=3)
    for _ in range(600):
        simulator.step()
        clock.advance(100)
        keep_time(market)
    stats = market.stats["KCB"]
    assert str(market.session.day) == "2026-11-30" and stats.last is not None
    last, high, volume = stats.last, stats.high, stats.volume
    clock.now = at("2026-12-01 00:00:00")
    keep_time(market)
    assert str(market.session.day) == "2026-12-01"
    bar = market.daily["KCB"][-1]
    assert bar.start_ms == at("2026-11-30 00:00:00")
    assert (bar.close, bar.high, bar.volume) == (last, high, volume)
    assert stats.previous_close == last and stats.volume == 0 and stats.open is None
    assert stats.change == 0 and stats.change_percent == 0.0
    ticks = market.instruments["KCB"].ticks
    assert market.limits["KCB"] == price_limits(last, 1000, ticks)  # the band moved with it
    assert daily_bars(market, "KCB")[-1] == bar  # no trade yet today: no bar for today yet


def test_the_nse_close_is_the_session_vwap_on_the_tick() -> None:
    market, clock = nse_market("2026-11-30 10:00:00")
    keep_time(market)
    market.submit("SCOM", Side.SELL, 100, 2850, owner="a")
    market.submit("SCOM", Side.BUY, 100, 2850, owner="b")
    market.submit("SCOM", Side.SELL, 300, 2900, owner="a")
    market.submit("SCOM", Side.BUY, 300, 2900, owner="b")
    # VWAP = (28.50 x 100 + 29.00 x 300) / 400 = 28.875: on the 0.05 grid, 28.90 (nearest).
    assert close_price(market, "SCOM") == 2890
    clock.now = at("2026-12-01 09:00:00")
    keep_time(market)
    assert market.stats["SCOM"].previous_close == 2890
    assert market.daily["SCOM"][-1].close == 2890


def test_a_halted_symbol_refuses_orders_keeps_its_book_and_resumes() -> None:
    clock = FakeClock()
    market = Market(load_universe(), clock=clock)
    simulator = Simulator(market, seed=5)
    for _ in range(20):
        simulator.step()
    depth = market.books["SCOM"].depth(5)
    version = market.state_version
    assert run(market, simulator, Scenario("halt", ("SCOM",))) == "halted SCOM"
    assert market.state_of("SCOM") == "halted" and market.state_version > version
    with pytest.raises(MarketRefused) as refused:
        market.submit("SCOM", Side.BUY, 100, 2850)
    assert refused.value.code == "symbol_halted"
    trades = len(market.trades["SCOM"])
    for _ in range(50):
        simulator.step()
    assert market.books["SCOM"].depth(5) == depth and len(market.trades["SCOM"]) == trades
    run(market, simulator, Scenario("resume", ("SCOM",)))
    assert market.state_of("SCOM") == "open"
    for _ in range(50):
        simulator.step()
    assert len(market.trades["SCOM"]) > trades


def test_the_simulator_never_trades_outside_the_band_even_in_a_crash() -> None:
    clock = FakeClock()
    market = Market(load_universe(), clock=clock)
    simulator = Simulator(market, seed=9, volatility_scale=20.0, takers_per_tick=3.0)
    run(market, simulator, Scenario("jump", ("SCOM",), percent=40.0))
    run(market, simulator, Scenario("flash_crash", ("KCB",), percent=30.0, duration_s=5))
    run(market, simulator, Scenario("volatile", (), factor=10.0))
    for _ in range(400):
        simulator.step()
        clock.advance(100)
    for symbol, log in market.trades.items():
        limits = market.limits[symbol]
        ticks = market.instruments[symbol].ticks
        assert all(limits.contains(t.price) and ticks.is_valid(t.price) for t in log), symbol
    assert market.stats["SCOM"].high == market.limits["SCOM"].high  # limit-up
    assert market.stats["KCB"].low is not None and market.stats["KCB"].low < 5525


def test_quotes_sit_on_the_tick_in_force_at_each_price() -> None:
    clock = FakeClock()
    market = Market(load_universe(), clock=clock)
    simulator = Simulator(market, seed=1)
    for _ in range(30):
        simulator.step()
        clock.advance(MINUTE_MS // 600)
    for symbol, book in market.books.items():
        ticks = market.instruments[symbol].ticks
        bids, asks = book.depth(50)
        assert all(ticks.is_valid(p) for p, _ in bids + asks), symbol


def test_the_vwap_close_is_the_nearest_tick_of_the_exact_vwap() -> None:
    market, _ = nse_market("2026-11-30 10:00:00")
    keep_time(market)
    stats = market.stats["HFCK"]  # 8.90: the 0.02 tick
    stats.record(890, 10_000, market.clock())
    stats.turnover = 8_905_100  # VWAP 8.9051: 8.90 is nearer than 8.92
    assert close_price(market, "HFCK") == 890
    stats.turnover = 8_910_000  # exactly between: half up
    assert close_price(market, "HFCK") == 892
