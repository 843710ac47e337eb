"""P&L a trader can trust: every figure of holdings, summary, metrics and history against what
this test computes itself from the fills and prices, with a market whose prices the test sets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from marketsrv.app import create_app
from marketsrv.engine import Side
from marketsrv.market import Market, load_universe
from marketsrv.market.days import keep_time
from marketsrv.trading import Trading
from marketsrv.trading.equity import EquityRecorder
from tests.builders import FakeClock, check_invariants, in_process_runtime
from tests.test_market_days import at
from tests.test_trading import FAST_HASHER, Env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = FakeClock(at("2026-12-01 10:00:00"))
    market = Market(load_universe(), clock=clock)  # no simulator: only these orders trade
    trading = Trading.open(str(tmp_path / "t.db"), market, synchronous="NORMAL", group_commit=True)
    trading.accounts.hasher = FAST_HASHER
    async with create_app(in_process_runtime(market, trading)).test_app() as app:
        env = Env(app.test_client(), market, None, trading)  # type: ignore[arg-type]
        env.clock = clock  # type: ignore[attr-defined]
        yield env
    trading.close()
    check_invariants(tmp_path / "t.db")


async def order(env: Env, token: str, symbol: str, side: str, qty: int, price: str) -> Any:
    body = {"symbol": symbol, "side": side, "quantity": qty, "price": price}
    return await env.call("POST", "/api/trading/orders/", token, body, 201)


def maker(env: Env, symbol: str, side: Side, qty: int, cents: int) -> None:
    env.market.submit(symbol, side, qty, cents, owner="mm")  # another trader's resting order


async def test_every_figure_is_what_the_fills_and_prices_say(env: Env) -> None:
    token = await env.user("tess", cash=100_000)
    maker(env, "SCOM", Side.SELL, 100, 2800)
    maker(env, "SCOM", Side.SELL, 100, 2850)
    assert (await order(env, token, "SCOM", "buy", 100, "28.00"))["status"] == "executed"
    assert (await order(env, token, "SCOM", "buy", 100, "28.50"))["status"] == "executed"
    maker(env, "KCB", Side.SELL, 50, 5500)
    await order(env, token, "KCB", "buy", 50, "55.00")
    maker(env, "SCOM", Side.BUY, 60, 2900)
    await order(env, token, "SCOM", "sell", 60, "29.00")  # a partial sell
    maker(env, "KCB", Side.BUY, 50, 5600)
    await order(env, token, "KCB", "sell", 50, "56.00")  # sold out
    resting = await order(env, token, "SCOM", "buy", 10, "27.00")
    assert resting["status"] == "pending"

    # Computed here, in cents, from the fills above and the last trades (SCOM 29.00, KCB 56.00).
    scom_cost = 2800 * 100 + 2850 * 100
    sold_cost = scom_cost * 60 // 200  # average cost of the 60 sold: 28.25 each
    scom_realized = 2900 * 60 - sold_cost  # 45.00
    kcb_realized = 5600 * 50 - 5500 * 50  # 50.00
    held_cost = scom_cost - sold_cost
    value = 2900 * 140
    cash = 100_000_00 - scom_cost - 5500 * 50 + 2900 * 60 + 5600 * 50
    # Day P&L: every share was bought today: 140 x (29.00 - 28.25) + realized today.
    day = 140 * (2900 - 2825) + scom_realized + kcb_realized

    summary = await env.call("GET", "/api/trading/portfolio/summary/", token)
    (scom,) = summary["holdings"]
    assert scom == {
        "symbol": "SCOM", "name": "Safaricom PLC", "quantity": 140, "available_quantity": 140,
        "avg_price": 28.25, "current_price": 29.0, "previous_close": 28.5,
        "market_value": value / 100, "cost_basis": held_cost / 100,
        "unrealized_pnl": (value - held_cost) / 100,
        "pnl_percent": round((value - held_cost) * 100 / held_cost, 2),
        "day_pnl": (140 * (2900 - 2825) + scom_realized) / 100,
        "realized_pnl": scom_realized / 100,
    }  # fmt: skip
    assert summary["closed_today"] == [
        {"symbol": "KCB", "name": "KCB Group PLC", "realized_pnl": kcb_realized / 100}
    ]
    assert summary["wallet"] == {
        "balance": cash / 100, "available": (cash - 2700 * 10) / 100, "held": 2700 * 10 / 100,
    }  # fmt: skip
    assert summary["summary"] == {
        "total_cash": cash / 100, "total_holdings_value": value / 100,
        "total_portfolio_value": (cash + value) / 100,
        "total_unrealized_pnl": (value - held_cost) / 100,
        "total_realized_pnl": (scom_realized + kcb_realized) / 100,
        "today_realized_pnl": (scom_realized + kcb_realized) / 100,
        "today_pnl": day / 100, "holdings_count": 1,
    }  # fmt: skip

    metrics = await env.call("GET", "/api/trading/portfolio/metrics/", token)
    stats = metrics["trading_statistics"]
    assert (stats["total_trades"], stats["winning_trades"], stats["losing_trades"]) == (2, 2, 0)
    assert stats["total_trades"] == (
        stats["winning_trades"] + stats["losing_trades"] + stats["break_even_trades"]
    )
    assert (stats["win_rate"], stats["profit_factor"], stats["total_fills"]) == (100.0, None, 5)
    assert (stats["average_win"], stats["largest_win"]) == (47.5, 50.0)
    assert metrics["performance"]["today"]["pnl"] == (scom_realized + kcb_realized) / 100
    assert metrics["performance"]["today"]["trades"] == 2

    # A second deposit moves cash and equity, never a P&L or a return figure.
    recorder = EquityRecorder(env.trading.store, env.market, 300)
    await recorder.snapshot("intraday")
    env.clock.advance(60_000)  # type: ignore[attr-defined]
    await env.call("POST", "/api/trading/wallet/", token, {"amount": 5000}, 200)
    after = await env.call("GET", "/api/trading/portfolio/summary/", token)
    assert after["summary"]["total_portfolio_value"] == (cash + value + 5000_00) / 100
    for key in ("today_pnl", "total_unrealized_pnl", "total_realized_pnl", "today_realized_pnl"):
        assert after["summary"][key] == summary["summary"][key], key
    history = await env.call("GET", "/api/trading/portfolio/history/?period=1D", token)
    # Around the first deposit (nothing, then the money), the snapshot, around the second
    # deposit, and now (at the same ms: the clock has not moved).
    before, after = (cash + value) / 100, (cash + value + 5000_00) / 100
    assert history["equity"] == [0.0, 100_000.0, before, before, after, after], history
    assert history["cash_flow"] == [0.0, 100_000.0, 0.0, 0.0, 5000.0, 0.0]
    pl = day / 100
    assert history["profit_loss"] == [0.0, 0.0, pl, pl, pl, pl]  # the deposits are not profit
    assert history["profit_loss_pct"][2] == pytest.approx(day / 100_000_00 * 100, abs=1e-4)
    assert history["profit_loss_pct"][-1] == history["profit_loss_pct"][2]
    again = await env.call("GET", "/api/trading/portfolio/metrics/", token)
    # 200.00 earned on the 100,000 deposited: 0.2% today, before the second deposit and after.
    assert metrics["performance"]["today"]["return_percent"] == pytest.approx(0.2)
    assert again["performance"]["today"]["return_percent"] == pytest.approx(0.2)
    assert again["trading_statistics"]["max_drawdown_percent"] == 0.0


async def test_a_holding_that_fell_since_the_previous_close_has_a_negative_day_pnl(
    env: Env,
) -> None:
    token = await env.user("uri", cash=100_000)
    maker(env, "EQTY", Side.SELL, 100, 6100)
    await order(env, token, "EQTY", "buy", 100, "61.00")
    env.clock.now = at("2026-12-02 00:00:01")  # type: ignore[attr-defined]
    keep_time(env.market)  # a new trading day: EQTY's previous close is 61.00
    maker(env, "EQTY", Side.BUY, 10, 5800)
    env.market.submit("EQTY", Side.SELL, 10, 5800, owner="other")  # trades at 58.00, not us
    (holding,) = await env.call("GET", "/api/trading/holdings/", token)
    assert holding["previous_close"] == 61.0 and holding["current_price"] == 58.0
    assert holding["day_pnl"] == 100 * (58.00 - 61.00)
    summary = await env.call("GET", "/api/trading/portfolio/summary/", token)
    assert summary["summary"]["today_pnl"] == -300.0
    assert summary["summary"]["today_realized_pnl"] == 0.0


async def test_the_activity_lists_everything_newest_first_and_a_reset_starts_again(
    env: Env,
) -> None:
    token = await env.user("val", cash=50_000)
    maker(env, "SCOM", Side.SELL, 100, 2800)
    await order(env, token, "SCOM", "buy", 100, "28.00")
    resting = await order(env, token, "SCOM", "buy", 10, "26.00")
    await env.call("DELETE", f"/api/trading/orders/{resting['id']}/", token)
    await env.call("POST", "/api/trading/wallet/withdraw/", token, {"amount": 100}, 200)
    page = await env.call("GET", "/api/trading/activities/", token)
    kinds = [a["type"] for a in page["results"]]
    assert kinds == ["withdrawal", "order_cancelled", "fill", "deposit"], kinds
    fill = page["results"][2]
    assert (fill["symbol"], fill["side"], fill["quantity"], fill["price"], fill["amount"]) == (
        "SCOM", "buy", 100, 28.0, -2800.0,
    )  # fmt: skip
    only = await env.call("GET", "/api/trading/activities/?type=deposit,withdrawal", token)
    assert [a["type"] for a in only["results"]] == ["withdrawal", "deposit"]
    bad = await env.call("GET", "/api/trading/activities/?type=nope", token, status=400)
    assert bad["code"] == "invalid_type"

    open_order = await order(env, token, "SCOM", "buy", 10, "26.50")
    reset = await env.call("POST", "/api/trading/account/reset/", token, {"cash": 20000}, 200)
    assert reset["wallet"] == {
        "balance": 20000.0,
        "available": 20000.0,
        "held": 0.0,
        "currency": "KES",
    }
    assert not [o for o in env.market.books["SCOM"].orders() if o.order_id == -open_order["id"]]
    assert await env.call("GET", "/api/trading/holdings/", token) == []
    assert await env.call("GET", "/api/trading/orders/", token) == []
    page = await env.call("GET", "/api/trading/activities/", token)
    assert [a["type"] for a in page["results"]] == ["reset", "deposit"]  # its cash, same ms
    refused = await env.call("POST", "/api/trading/account/reset/", token, {"cash": -1}, 400)
    assert refused["code"] == "invalid_cash"


async def test_a_reset_tells_the_stream_of_each_cancelled_order_as_it_was(env: Env) -> None:
    """The reset archives the orders (and clears their client ids) in its own transaction: the
    `order.cancelled` events are written before that, with the order as its owner knew it."""
    from marketsrv.private.relay import _history

    token = await env.user("ria", cash=50_000)
    body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": "26.00",
            "client_order_id": "mine-1"}  # fmt: skip
    placed = await env.call("POST", "/api/trading/orders/", token, body, 201)
    await env.call("POST", "/api/trading/account/reset/", token, {"cash": 1000}, 200)
    me = await env.call("GET", "/api/accounts/me/", token)
    history = env.trading.store.db.read(lambda conn: _history(conn, me["id"], 0, 100))
    frames = [orjson.loads(event[3]) for event in history.events]
    kinds = [f["type"] for f in frames]
    cancelled = [f["data"] for f in frames if f["type"] == "order.cancelled"]
    assert [(o["id"], o["client_order_id"]) for o in cancelled] == [(placed["id"], "mine-1")]
    assert kinds.index("order.cancelled") < kinds.index("account.reset")
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))


async def test_a_reset_never_gives_an_order_or_fill_id_again(env: Env) -> None:
    """Ids of a reset account's orders and fills stay taken: another user's next order and fill
    must not collide with them (in the outbox, or in a client's memory)."""
    amy = await env.user("amy", cash=50_000)
    ben = await env.user("ben", cash=50_000)
    maker(env, "SCOM", Side.SELL, 100, 2800)
    done = await order(env, amy, "SCOM", "buy", 100, "28.00")  # amy holds the highest ids
    await env.call("POST", "/api/trading/account/reset/", amy, {"cash": 1000}, 200)
    resting = await order(env, ben, "SCOM", "buy", 10, "27.00")
    assert resting["id"] > done["id"]
    env.market.submit("SCOM", Side.SELL, 10, 2700, owner="mm")  # fills ben's resting order
    await env.settle()
    assert env.trading.orders.suspended is None
    filled = await env.call("GET", f"/api/trading/orders/{resting['id']}/", ben)
    assert filled["status"] == "executed" and filled["fills"][0]["id"] > done["fills"][0]["id"]


async def test_selling_shares_held_from_before_today_counts_from_the_previous_close(
    env: Env,
) -> None:
    token = await env.user("wes", cash=100_000)
    maker(env, "EQTY", Side.SELL, 100, 5600)
    await order(env, token, "EQTY", "buy", 100, "56.00")
    maker(env, "EQTY", Side.SELL, 10, 6200)
    env.market.submit("EQTY", Side.BUY, 10, 6200, owner="other")  # the day closes at 62.00
    env.clock.now = at("2026-12-02 00:00:01")  # type: ignore[attr-defined]
    keep_time(env.market)
    maker(env, "EQTY", Side.BUY, 40, 6200)
    await order(env, token, "EQTY", "sell", 40, "62.00")  # no move since the close
    (holding,) = await env.call("GET", "/api/trading/holdings/", token)
    assert holding["day_pnl"] == 0.0  # the 6.00 a share was made yesterday
    summary = await env.call("GET", "/api/trading/portfolio/summary/", token)
    assert summary["summary"]["today_pnl"] == 0.0
    assert summary["summary"]["today_realized_pnl"] == 40 * 6.0  # against average cost
