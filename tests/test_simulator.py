"""The market simulator: deterministic for a seed, a deep uncrossed book, prices only from trades."""

from __future__ import annotations

from marketsrv.engine import Side
from marketsrv.market import Market, Simulator, load_universe
from tests.builders import SYM50, FakeClock, simulated_market


def fingerprint(market: Market) -> list[object]:
    trades = [
        (s, t.price, t.quantity, t.aggressor) for s in market.symbols for t in market.trades[s]
    ]
    books = [market.books[s].depth(20) for s in market.symbols]
    return [trades, books, [market.books[s].seq for s in market.symbols]]


def test_same_seed_same_market() -> None:
    a, _ = simulated_market(seed=42, steps=60)
    b, _ = simulated_market(seed=42, steps=60)
    c, _ = simulated_market(seed=43, steps=60)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)


def test_books_are_deep_and_never_crossed() -> None:
    market, simulator = simulated_market(seed=1)
    for _ in range(100):
        simulator.step()
        for symbol, book in market.books.items():
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is not None and ask is not None and bid < ask, symbol
            bids, asks = book.depth(10)
            assert len(bids) == 10 and len(asks) == 10, symbol


def test_statistics_are_the_trades() -> None:
    market, _ = simulated_market(seed=5, steps=200)
    for symbol in market.symbols:
        stats, trades = market.stats[symbol], list(market.trades[symbol])
        assert stats.volume == sum(t.quantity for t in trades)
        if trades:
            assert stats.last == trades[-1].price
            assert stats.high == max(t.price for t in trades)
            assert stats.low == min(t.price for t in trades)
    assert sum(market.stats[s].trade_count for s in market.symbols) > 100


def test_every_symbol_changes_every_tick_when_asked() -> None:
    clock = FakeClock()
    market = Market(load_universe(SYM50), clock=clock)
    simulator = Simulator(market, seed=9, active_fraction=1.0, takers_per_tick=2.0)
    simulator.step()
    for _ in range(20):
        before = {s: market.books[s].seq for s in market.symbols}
        volume = {s: market.stats[s].volume for s in market.symbols}
        simulator.step()
        clock.advance(100)
        assert all(market.books[s].seq > before[s] for s in market.symbols)
        assert all(market.stats[s].volume > volume[s] for s in market.symbols)


def test_quiet_settings_keep_the_fair_value_still() -> None:
    market, simulator = simulated_market(seed=2, volatility_scale=0.0, takers_per_tick=0.0)
    for _ in range(50):
        simulator.step()
    assert all(not market.trades[s] for s in market.symbols)
    scom = market.books["SCOM"]
    assert scom.best_bid() == 2845 and scom.best_ask() == 2855  # one tick either side of 28.50


def test_user_orders_meet_simulated_liquidity() -> None:
    market, simulator = simulated_market(seed=3, steps=5)
    ask = market.books["SCOM"].best_ask()
    assert ask is not None
    result = market.submit("SCOM", Side.BUY, 100, ask, owner="alice")
    assert result.filled == 100 and result.trades[0].price == ask
    resting = market.submit("SCOM", Side.SELL, 100, ask + 50, owner="alice")
    assert resting.resting == 100
    simulator.step()
    assert market.books["SCOM"].get(resting.order_id) is not None  # far away: still resting
