"""The NSE's price rules: tick sizes by price band, rounding, and the daily price band."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketsrv.market.instruments import UniverseError, load_universe, parse_instrument
from marketsrv.market.rules import NO_LIMITS, NSE_TICKS, TickTable, price_limits


@pytest.mark.parametrize(
    ("price", "tick"),
    [(1, 1), (499, 1), (500, 2), (999, 2), (1000, 5), (4999, 5), (5000, 25), (49999, 25),
     (50000, 100), (99999, 100), (100000, 500), (10**9, 500)],
)  # fmt: skip
def test_nse_tick_by_price_band(price: int, tick: int) -> None:
    # Below KES 5: 0.01; 5 to under 10: 0.02; 10 to under 50: 0.05; 50 to under 500: 0.25;
    # 500 to under 1,000: 1.00; 1,000 and above: 5.00.
    assert NSE_TICKS.tick_at(price) == tick


def test_rounding_on_the_grid_and_across_band_edges() -> None:
    assert (NSE_TICKS.floor(2887), NSE_TICKS.ceil(2887)) == (2885, 2890)
    assert NSE_TICKS.ceil(4999) == 5000 and NSE_TICKS.floor(5010) == 5000
    assert NSE_TICKS.down(5000) == 4995 and NSE_TICKS.up(4995) == 5000
    assert NSE_TICKS.up(5000) == 5025 and NSE_TICKS.down(1000) == 998
    assert NSE_TICKS.ceil(999) == 1000  # 9.99 on the 0.02 grid rounds up to 10.00
    assert NSE_TICKS.down(1) == 0  # nothing below the lowest tick


@given(st.integers(min_value=1, max_value=2_000_000))
def test_floor_and_ceil_are_the_nearest_valid_prices(price: int) -> None:
    low, high = NSE_TICKS.floor(price), NSE_TICKS.ceil(price)
    assert NSE_TICKS.is_valid(high) and low <= price <= high
    if low:
        assert NSE_TICKS.is_valid(low)
    assert all(not NSE_TICKS.is_valid(p) for p in range(low + 1, high))
    assert NSE_TICKS.down(NSE_TICKS.up(high)) == high


def test_a_table_must_start_its_bands_on_both_ticks() -> None:
    with pytest.raises(ValueError, match="multiple"):
        TickTable(((0, 2), (501, 5)))
    with pytest.raises(ValueError, match="start at 0"):
        TickTable(((100, 1),))


def test_the_daily_band_is_ten_percent_on_the_grid() -> None:
    limits = price_limits(2850, 1000, NSE_TICKS)  # SCOM closed at 28.50
    assert (limits.low, limits.high) == (2565, 3135)
    assert limits.describe() == "25.65 to 31.35"
    odd = price_limits(2855, 1000, NSE_TICKS)  # 25.695 and 31.405: inside, on the grid
    assert (odd.low, odd.high) == (2570, 3140)
    assert price_limits(2850, None, NSE_TICKS) is NO_LIMITS
    assert price_limits(3, 1000, NSE_TICKS).low >= 1


def test_the_bundled_universe_follows_the_nse() -> None:
    for inst in load_universe():
        assert inst.ticks is NSE_TICKS and inst.lot_size == 1 and inst.band_bps == 1000
        assert inst.ticks.is_valid(inst.reference_cents), inst.symbol


def test_a_universe_file_may_fix_the_tick_or_set_its_own_bands() -> None:
    fixed = parse_instrument({"symbol": "A", "reference_price": "10", "tick_size": "0.5"}, "t")
    assert fixed.ticks == TickTable.fixed(50)
    banded = parse_instrument(
        {"symbol": "B", "reference_price": "10", "price_band_percent": 0,
         "tick_size": [{"from": 0, "tick": "0.01"}, {"from": "5", "tick": "0.10"}]},
        "t",
    )  # fmt: skip
    assert banded.ticks.tick_at(600) == 10 and banded.band_bps is None
    with pytest.raises(UniverseError, match="tick grid"):
        parse_instrument({"symbol": "C", "reference_price": "28.52"}, "t")
    with pytest.raises(UniverseError, match="price_band_percent"):
        parse_instrument({"symbol": "D", "reference_price": "1", "price_band_percent": 120}, "t")


@given(
    st.integers(min_value=1, max_value=200_000),
    st.integers(min_value=1, max_value=20),
    st.booleans(),
    st.integers(min_value=0, max_value=250_000),
)
def test_a_ladder_is_the_walk_of_the_grid(price: int, count: int, down: bool, bound: int) -> None:
    start = NSE_TICKS.ceil(price)
    walked, p = [], start
    while len(walked) < count and p > 0 and (p >= bound if down else p <= bound):
        walked.append(p)
        p = NSE_TICKS.down(p) if down else NSE_TICKS.up(p)
    assert NSE_TICKS.ladder(start, count, down, bound) == walked
