"""Users' orders under the exchange's rules: off-tick prices, the daily band, halts, the closed
market and the opening auction, through the REST API in process."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marketsrv.app import create_app
from marketsrv.engine import Side
from marketsrv.market import Market, Simulator, load_universe
from marketsrv.market.calendar import Calendar
from marketsrv.market.days import keep_time
from marketsrv.trading import Trading
from marketsrv.trading.events import UserEvents
from tests.builders import FakeClock, check_invariants, in_process_runtime
from tests.test_market_days import at
from tests.test_trading import FAST_HASHER, Env


async def open_env(tmp_path: Path, clock: FakeClock, calendar: str = "always") -> Env:
    market = Market(load_universe(), clock=clock, calendar=Calendar(calendar))
    simulator = Simulator(market, seed=11)
    for _ in range(5):
        simulator.step()
    trading = Trading.open(str(tmp_path / "t.db"), market, synchronous="NORMAL", group_commit=True)
    trading.accounts.hasher = FAST_HASHER
    return Env(None, market, simulator, trading)  # type: ignore[arg-type]


@pytest.fixture
async def rules(tmp_path: Path) -> AsyncIterator[Env]:
    env = await open_env(tmp_path, FakeClock())
    async with create_app(in_process_runtime(env.market, env.trading)).test_app() as app:
        env.client = app.test_client()
        yield env


async def test_an_off_tick_price_is_rounded_in_the_user_s_favour_with_a_note(rules: Env) -> None:
    token = await rules.user("ann", cash=100_000)
    buy = await rules.call("POST", "/api/trading/orders/", token,
                           {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": 27.87}, 201)  # fmt: skip
    assert buy["price"] == 27.85 and "27.87" in buy["note"] and "27.85 was used" in buy["note"]
    assert (await rules.call("GET", "/api/trading/wallet/", token))["held"] == 278.5
    sell_first = await rules.call("POST", "/api/trading/orders/", token,
                                  {"symbol": "KCB", "side": "buy", "quantity": 10, "price": 55.30}, 201)  # fmt: skip
    assert sell_first["price"] == 55.25  # KCB is above KES 50: tick 0.25, a buy rounds down


async def test_off_tick_prices_can_be_refused(rules: Env) -> None:
    rules.trading.orders.off_tick_prices = "reject"
    token = await rules.user("bob", cash=100_000)
    refused = await rules.call("POST", "/api/trading/orders/", token,
                               {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": 28.87}, 400)  # fmt: skip
    assert refused["code"] == "invalid_price" and "0.05" in refused["message"]
    assert await rules.call("GET", "/api/trading/orders/", token) == []


async def test_a_price_outside_the_day_s_band_is_refused_with_the_range(rules: Env) -> None:
    token = await rules.user("cat", cash=100_000)
    for price in (31.40, 25.60):
        refused = await rules.call("POST", "/api/trading/orders/", token,
                                   {"symbol": "SCOM", "side": "buy", "quantity": 1, "price": price}, 400)  # fmt: skip
        assert refused["code"] == "price_out_of_band"
        assert "25.65 to 31.35" in refused["message"]
    await rules.call("POST", "/api/trading/orders/", token,
                     {"symbol": "SCOM", "side": "buy", "quantity": 1, "price": 25.65}, 201)  # fmt: skip
    stock = await rules.call("GET", "/api/stocks/SCOM/")
    assert (stock["lower_limit"], stock["upper_limit"]) == (25.65, 31.35)
    assert (stock["tick_size"], stock["lot_size"], stock["state"]) == (0.05, 1, "open")


async def test_a_halted_symbol_refuses_orders_until_it_resumes(rules: Env) -> None:
    token = await rules.user("dan", cash=100_000)
    rules.market.halt("SCOM", "trading halted by the operator")
    body = {"symbol": "SCOM", "side": "buy", "quantity": 1, "price": 28.00}
    refused = await rules.call("POST", "/api/trading/orders/", token, body, 409)
    assert refused["code"] == "symbol_halted"
    stock = await rules.call("GET", "/api/stocks/SCOM/")
    assert stock["state"] == "halted" and stock["is_active"] is False and stock["bid"]
    rules.market.resume("SCOM")
    await rules.call("POST", "/api/trading/orders/", token, body, 201)


async def test_a_closed_market_rests_limit_orders_and_the_auction_fills_them(
    tmp_path: Path,
) -> None:
    clock = FakeClock(at("2026-11-30 08:00:00"))  # a Monday, before the pre-open
    env = await open_env(tmp_path, clock, calendar="nse")
    async with create_app(in_process_runtime(env.market, env.trading)).test_app() as app:
        env.client = app.test_client()
        token = await env.user("eve", cash=100_000)
        market_order = {"symbol": "SCOM", "side": "buy", "quantity": 100, "order_type": "market"}
        closed = await env.call("POST", "/api/trading/orders/", token, market_order, 409)
        assert closed["code"] == "market_closed" and "closed" in closed["message"]
        ioc = {
            "symbol": "SCOM",
            "side": "buy",
            "quantity": 100,
            "price": 29,
            "time_in_force": "ioc",
        }
        assert (await env.call("POST", "/api/trading/orders/", token, ioc, 409))["code"] == (
            "market_closed"
        )
        clock.now = at("2026-11-30 09:10:00")
        keep_time(env.market)
        limit = {"symbol": "SCOM", "side": "buy", "quantity": 100, "price": 29.00}
        order = await env.call("POST", "/api/trading/orders/", token, limit, 201)
        assert order["status"] == "pending"  # resting through the pre-open, not matched
        env.market.submit("SCOM", Side.SELL, 100, 2860)  # a seller at 28.60, crossing it
        assert env.market.books["SCOM"].crossed()
        clock.now = at("2026-11-30 09:30:00")
        keep_time(env.market)  # the opening auction
        await env.settle()
        prices = {t.price for t in env.market.trades["SCOM"]}
        assert len(prices) == 1  # one uncrossing price, whoever's orders met
        (auction,) = prices
        assert 2850 < auction <= 2900  # the simulator's still ladder is in the book too
        done = await env.call("GET", f"/api/trading/orders/{order['id']}/", token)
        assert done["status"] == "executed" and done["average_price"] == auction / 100
        wallet = await env.call("GET", "/api/trading/wallet/", token)
        left = (10_000_000 - auction * 100) / 100  # the hold at 29.00 released, 100 x auction paid
        assert wallet == {"balance": left, "available": left, "held": 0.0, "currency": "KES"}
    env.trading.close()
    check_invariants(tmp_path / "t.db")


async def test_a_reloaded_order_outside_today_s_limits_is_cancelled_not_traded(
    tmp_path: Path,
) -> None:
    """An order accepted under other limits (an older day, an older version) would trade where
    today's market cannot: at restart it is cancelled and its hold released."""
    from marketsrv.trading import settlement, wallet
    from marketsrv.trading.accounts import insert_user
    from storage import Database

    path = tmp_path / "t.db"
    db = Database(path)
    db.open()

    def setup(conn: sqlite3.Connection) -> None:
        now = 1_700_000_000_000
        user = insert_user(conn, "stale", "x", now)
        wallet.deposit(conn, user.id, 100_000_00, now)
        for price in (3300, 2800):  # SCOM's limits today: 25.65 to 31.35
            settlement.accept(conn, UserEvents(now), settlement.NewOrder(
                user.id, "SCOM", "buy", "limit", "gtc", 100, price, price, price, None,
                str(price), now,
            ))  # fmt: skip

    db.write(setup)
    db.close()
    env = await open_env(tmp_path, FakeClock())
    for _ in range(20):
        env.sim.step()  # the simulator's asks around 28.50 would have met a bid at 33.00
    await env.settle()
    env.trading.close()
    assert all(t.price <= 3135 for t in env.market.trades["SCOM"])
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT book_price_cents, status, note FROM orders ORDER BY id").fetchall()
    assert rows[0][1] == "cancelled" and "25.65 to 31.35" in rows[0][2]
    assert rows[1][1] in ("pending", "partially_filled", "executed")
    check_invariants(path)


async def test_a_day_roll_cancels_resting_orders_the_new_band_excludes(tmp_path: Path) -> None:
    clock = FakeClock(at("2026-11-30 10:00:00"))
    env = await open_env(tmp_path, clock, calendar="nse")
    async with create_app(in_process_runtime(env.market, env.trading)).test_app() as app:
        env.client = app.test_client()
        token = await env.user("fay", cash=100_000)
        low = {"symbol": "SCOM", "side": "buy", "quantity": 100, "price": 25.70}
        order = await env.call("POST", "/api/trading/orders/", token, low, 201)
        # The day trades up: SCOM closes at 31.00, so tomorrow's lowest price is 27.90.
        env.market.submit("SCOM", Side.SELL, 100, 3100, owner="a")
        env.market.submit("SCOM", Side.BUY, 100, 3100, owner="b")
        env.market.stats["SCOM"].turnover = 3100 * env.market.stats["SCOM"].volume
        clock.now = at("2026-12-01 09:00:00")
        keep_time(env.market)
        assert env.market.limits["SCOM"].low == 2790
        await env.settle()
        gone = await env.call("GET", f"/api/trading/orders/{order['id']}/", token)
        assert gone["status"] == "cancelled" and "27.90 to 34.10" in gone["note"]
        assert (await env.call("GET", "/api/trading/wallet/", token))["held"] == 0
        assert all(env.market.allows("SCOM", o.price) for o in env.market.books["SCOM"].orders())
    env.trading.close()
    check_invariants(tmp_path / "t.db")


async def test_a_symbol_halted_through_the_auction_uncrosses_when_it_resumes(
    tmp_path: Path,
) -> None:
    from marketsrv.market.scenarios import Scenario, run

    clock = FakeClock(at("2026-11-30 09:10:00"))
    env = await open_env(tmp_path, clock, calendar="nse")
    env.market.submit("KCB", Side.BUY, 100, 5600, owner="a")
    env.market.submit("KCB", Side.SELL, 100, 5500, owner="b")
    run(env.market, env.sim, Scenario("halt", ("KCB",)))
    clock.now = at("2026-11-30 09:30:00")
    keep_time(env.market)
    assert env.market.books["KCB"].crossed()  # no auction while halted
    run(env.market, env.sim, Scenario("resume", ("KCB",)))
    assert not env.market.books["KCB"].crossed()
    assert {t.price for t in env.market.trades["KCB"]} and len(
        {t.price for t in env.market.trades["KCB"]}
    ) == 1
    env.trading.close()


async def test_candle_bounds_that_are_not_times_are_400s(rules: Env) -> None:
    for query in ("to=100000000000000000000", "from=-1", "from=5&to=5", "from=9&to=3"):
        answer = await rules.client.get(f"/api/stocks/SCOM/candles/?{query}")
        assert answer.status_code == 400, query
        assert (await answer.get_json())["code"] in ("invalid_to", "invalid_from", "invalid_range")
