"""Accounts and trading through the REST API, in-process, over a real SQLite file.

The market moves only when a test steps its simulator; `settle()` waits until every write queued
so far (including fills of resting orders made by simulated takers) is committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from argon2 import PasswordHasher
from quart.typing import TestClientProtocol as Client

from marketsrv.app import create_app
from marketsrv.engine import Side
from marketsrv.market import Market, Simulator
from marketsrv.trading import Trading
from marketsrv.trading.events import UserEvents
from tests.builders import (
    FakeClock,
    check_invariants,
    in_process_runtime,
    make_instrument,
    simulated_market,
)

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Env:
    def __init__(self, client: Client, market: Market, sim: Simulator, trading: Trading) -> None:
        self.client, self.market, self.sim, self.trading = client, market, sim, trading

    async def settle(self) -> None:
        await self.trading.store.write(lambda conn: None)  # FIFO: all earlier writes are in

    async def call(self, method: str, path: str, token: str | None = None, json: Any = None,
                   status: int | None = None) -> Any:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.open(path, method=method, json=json, headers=headers)
        body = await response.get_json()
        if status is not None:
            assert response.status_code == status, (response.status_code, body)
        return body

    async def user(self, name: str, cash: int = 0) -> str:
        body = await self.call("POST", "/api/accounts/register/", json={"username": name, "password": "secret-pw"}, status=201)  # fmt: skip
        if cash:
            await self.call("POST", "/api/trading/wallet/", body["token"], {"amount": cash}, 200)
        return str(body["token"])


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    market, sim = simulated_market(seed=31, steps=5, clock=FakeClock())
    trading = Trading.open(str(tmp_path / "t.db"), market, synchronous="NORMAL", group_commit=True)
    trading.accounts.hasher = FAST_HASHER
    app = create_app(in_process_runtime(market, trading))
    async with app.test_app() as test_app:
        yield Env(test_app.test_client(), market, sim, trading)


async def test_the_trader_story(env: Env, tmp_path: Path) -> None:
    token = await env.user("alice")
    wallet = await env.call("POST", "/api/trading/wallet/", token, {"amount": 100000}, 200)
    assert wallet == {"balance": 100000.0, "available": 100000.0, "held": 0.0, "currency": "KES"}

    buy = await env.call("POST", "/api/trading/orders/", token,
                         {"stock_symbol": "SCOM", "quantity": 1000, "order_type": "market", "side": "buy"}, 201)  # fmt: skip
    assert buy["status"] == "executed" and buy["filled_quantity"] == 1000
    for field in ("order_id", "status", "note", "executed_at", "profit_loss", "id", "stock_symbol",
                  "quantity", "price", "order_type", "side", "created_at"):  # fmt: skip
        assert field in buy, field
    cost = sum(f["price"] * f["quantity"] for f in buy["fills"])
    wallet = await env.call("GET", "/api/trading/wallet/", token, status=200)
    assert wallet["balance"] == pytest.approx(100000 - cost) and wallet["held"] == 0
    holding = (await env.call("GET", "/api/trading/holdings/", token, status=200))[0]
    assert holding["symbol"] == "SCOM" and holding["quantity"] == 1000
    assert holding["avg_price"] == pytest.approx(cost / 1000, abs=0.005)  # shown to the cent

    ask = env.market.books["SCOM"].best_ask()
    assert ask is not None
    limit = env.market.instruments["SCOM"].price(ask + 20)
    sell = await env.call("POST", "/api/trading/orders/", token,
                          {"symbol": "SCOM", "side": "sell", "price": limit, "quantity": 400}, 201)  # fmt: skip
    assert sell["status"] == "pending" and sell["remaining_quantity"] == 400
    assert env.market.books["SCOM"].level_quantity(Side.SELL, ask + 20) >= 400
    cancelled = await env.call("DELETE", f"/api/trading/orders/{sell['id']}/", token, status=200)
    assert cancelled["status"] == "cancelled"
    assert (await env.call("GET", "/api/trading/holdings/", token))[0]["available_quantity"] == 1000

    sold = await env.call("POST", "/api/trading/orders/", token,
                          {"symbol": "SCOM", "side": "sell", "quantity": 1000, "order_type": "market"}, 201)  # fmt: skip
    assert sold["status"] == "executed"
    proceeds = sum(f["price"] * f["quantity"] for f in sold["fills"])
    assert sold["profit_loss"] == pytest.approx(proceeds - cost)
    assert await env.call("GET", "/api/trading/holdings/", token) == []
    summary = await env.call("GET", "/api/trading/portfolio/summary/", token, status=200)
    assert summary["summary"]["total_cash"] == pytest.approx(100000 - cost + proceeds)
    metrics = await env.call("GET", "/api/trading/portfolio/metrics/", token, status=200)
    assert metrics["account_summary"]["total_realized_pnl"] == pytest.approx(proceeds - cost)
    stats = metrics["trading_statistics"]
    assert stats["total_fills"] == len(buy["fills"]) + len(sold["fills"])
    assert stats["total_trades"] == 1  # one closing (sell) order, however many fills it took
    listed = await env.call("GET", "/api/trading/orders/list/", token, status=200)
    assert [o["id"] for o in listed["results"]] == [sold["id"], sell["id"], buy["id"]]
    assert (await env.call("GET", "/api/trading/orders/list/?status=cancelled", token))[
        "count"
    ] == 1
    assert len(await env.call("GET", "/api/trading/orders/", token)) == 3
    await env.settle()
    check_invariants(tmp_path / "t.db")


async def test_overdraft_and_overselling_change_nothing(env: Env, tmp_path: Path) -> None:
    token = await env.user("bob", cash=1000)
    too_much = await env.call("POST", "/api/trading/orders/", token,
                              {"symbol": "SCOM", "side": "buy", "quantity": 10000, "order_type": "market"}, 400)  # fmt: skip
    assert too_much["error"] == "Insufficient funds" and too_much["code"] == "insufficient_funds"
    oversell = await env.call("POST", "/api/trading/orders/", token,
                              {"symbol": "SCOM", "side": "sell", "quantity": 1, "order_type": "market"}, 400)  # fmt: skip
    assert oversell["detail"] == "Insufficient holdings"
    assert await env.call("GET", "/api/trading/wallet/", token) == {
        "balance": 1000.0, "available": 1000.0, "held": 0.0, "currency": "KES"}  # fmt: skip
    assert await env.call("GET", "/api/trading/orders/", token) == []
    withdraw = await env.call(
        "POST", "/api/trading/wallet/withdraw/", token, {"amount": 1000.01}, 400
    )
    assert withdraw["code"] == "insufficient_funds"
    check_invariants(tmp_path / "t.db")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"symbol": "NOPE", "side": "buy", "quantity": 1}, "unknown_symbol"),
        ({"symbol": "SCOM", "side": "hold", "quantity": 1}, "invalid_side"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 0}, "invalid_quantity"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1.5}, "invalid_quantity"),
        ({"symbol": "SCOM", "side": "buy", "quantity": "lots"}, "invalid_quantity"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "price": 28.525}, "invalid_price"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "price": -5}, "invalid_price"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "price": 99.0}, "price_out_of_band"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "order_type": "limit"}, "invalid_price"),
        (
            {"symbol": "SCOM", "side": "buy", "quantity": 1, "order_type": "stop"},
            "invalid_order_type",
        ),
        (
            {"symbol": "SCOM", "side": "buy", "quantity": 1, "time_in_force": "day"},
            "invalid_time_in_force",
        ),
        ([1, 2], "invalid_body"),
        # Wrong types are refused with the field's code, never read as "use the default".
        (
            {"symbol": "SCOM", "side": "buy", "quantity": 1, "order_type": False},
            "invalid_order_type",
        ),
        (
            {"symbol": "SCOM", "side": "buy", "quantity": 1, "time_in_force": 0},
            "invalid_time_in_force",
        ),
        ({"symbol": "SCOM", "side": 1, "quantity": 1}, "invalid_side"),
        ({"symbol": ["SCOM"], "side": "buy", "quantity": 1}, "invalid_symbol"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "price": "2_8.00"}, "invalid_price"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "price": "２８"}, "invalid_price"),
        ({"symbol": "SCOM", "side": "buy", "quantity": 1, "price": "28.5e0"}, "invalid_price"),
        (
            {"symbol": "SCOM", "side": "buy", "quantity": 1, "order_type": "market", "price": "x"},
            "invalid_price",
        ),
    ],
)
async def test_bad_orders_are_refused(env: Env, body: Any, code: str) -> None:
    token = await env.user("carol", cash=100000)
    assert (await env.call("POST", "/api/trading/orders/", token, body, 400))["code"] == code
    assert await env.call("GET", "/api/trading/orders/", token) == []


@pytest.mark.parametrize(
    "amount",
    [-5, 0, "1.001", "abc", None, True, 10**12, "1_000", "１０００", "١٠٠٠", " 100 ", "1e3", ".5",
     "100.", "+100", "NaN", "Infinity"],
)  # fmt: skip
async def test_bad_deposits_are_refused(env: Env, amount: Any) -> None:
    token = await env.user("dave")
    body = await env.call("POST", "/api/trading/wallet/", token, {"amount": amount}, 400)
    assert body["code"] == "invalid_amount"


async def test_every_trading_endpoint_needs_a_token(env: Env) -> None:
    paths = ["/api/trading/wallet/", "/api/trading/orders/", "/api/trading/orders/list/",
             "/api/trading/orders/1/", "/api/trading/fills/", "/api/trading/holdings/",
             "/api/trading/portfolio/", "/api/trading/portfolio/summary/", "/api/trading/portfolio/metrics/"]  # fmt: skip
    for path in paths:
        assert (await env.call("GET", path, status=401))["code"] == "not_authenticated"
        assert (await env.call("GET", path, "forged", status=401))["code"] == "invalid_token"
    for path in (
        "/api/trading/orders/",
        "/api/trading/wallet/",
        "/api/trading/wallet/withdraw/",
        "/api/trading/orders/1/cancel/",
    ):
        assert (await env.call("POST", path, json={}, status=401))["code"] == "not_authenticated"
    token = await env.user("erin")
    await env.call("POST", "/api/accounts/logout/", token, status=200)
    assert (await env.call("GET", "/api/trading/wallet/", token, status=401))[
        "code"
    ] == "invalid_token"
    login = await env.call(
        "POST",
        "/api/accounts/login/",
        json={"username": "erin", "password": "secret-pw"},
        status=200,
    )
    await env.call("GET", "/api/trading/wallet/", login["token"], status=200)
    bad = await env.call(
        "POST",
        "/api/accounts/login/",
        json={"username": "erin", "password": "wrong-pw"},
        status=400,
    )
    assert bad["code"] == "invalid_credentials"


async def test_users_see_and_cancel_only_their_own_orders(env: Env) -> None:
    alice, mallory = await env.user("alice2", cash=100000), await env.user("mallory", cash=100000)
    bid = env.market.books["SCOM"].best_bid()
    assert bid is not None
    price = env.market.instruments["SCOM"].price(bid - 10)
    order = await env.call("POST", "/api/trading/orders/", alice,
                           {"symbol": "SCOM", "side": "buy", "price": price, "quantity": 100}, 201)  # fmt: skip
    assert order["status"] == "pending"
    await env.call("GET", f"/api/trading/orders/{order['id']}/", mallory, status=404)
    await env.call("DELETE", f"/api/trading/orders/{order['id']}/", mallory, status=404)
    assert await env.call("GET", "/api/trading/orders/", mallory) == []
    assert (await env.call("GET", f"/api/trading/orders/{order['id']}/", alice, status=200))[
        "status"
    ] == "pending"


async def test_client_order_id_makes_retries_safe(env: Env) -> None:
    token = await env.user("frank", cash=100000)
    body = {
        "symbol": "KCB",
        "side": "buy",
        "quantity": 100,
        "order_type": "market",
        "client_order_id": "abc-1",
    }
    first = await env.call("POST", "/api/trading/orders/", token, body, 201)
    again = await env.call("POST", "/api/trading/orders/", token, body, 200)
    assert again["id"] == first["id"] and again["filled_quantity"] == first["filled_quantity"]
    changed = await env.call("POST", "/api/trading/orders/", token, {**body, "quantity": 200}, 409)
    assert changed["code"] == "client_order_id_reused"
    assert len(await env.call("GET", "/api/trading/orders/", token)) == 1


async def test_simulated_takers_fill_resting_orders(env: Env, tmp_path: Path) -> None:
    token = await env.user("grace", cash=500000)
    bid = env.market.books["EQTY"].best_bid()
    assert bid is not None
    price = env.market.instruments["EQTY"].price(bid)  # joins the best bid: takers will hit it
    order = await env.call("POST", "/api/trading/orders/", token,
                           {"symbol": "EQTY", "side": "buy", "price": price, "quantity": 300}, 201)  # fmt: skip
    for _ in range(200):
        env.sim.step()
        await env.settle()
        current = await env.call("GET", f"/api/trading/orders/{order['id']}/", token)
        if current["filled_quantity"]:
            break
    assert current["filled_quantity"] > 0 and current["fills"]
    assert all(f["price"] == price for f in current["fills"])  # a maker fills at its own price
    check_invariants(tmp_path / "t.db")


async def test_open_orders_come_back_after_a_restart(env: Env, tmp_path: Path) -> None:
    token = await env.user("heidi", cash=100000)
    bid = env.market.books["KCB"].best_bid()
    assert bid is not None
    price = env.market.instruments["KCB"].price(bid - 5)
    order = await env.call("POST", "/api/trading/orders/", token,
                           {"symbol": "KCB", "side": "buy", "price": price, "quantity": 200}, 201)  # fmt: skip
    env.trading.close()
    market, _ = simulated_market(seed=99, steps=0)
    reopened = Trading.open(str(tmp_path / "t.db"), market, synchronous="NORMAL", group_commit=True)
    try:
        resting = market.books["KCB"].get(-order["id"])
        assert resting is not None and resting.remaining == 200 and resting.owner is not None
    finally:
        reopened.close()


async def test_cors_preflight_for_a_frontend_on_another_origin(env: Env) -> None:
    response = await env.client.options(
        "/api/trading/orders/",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


async def test_a_match_lost_in_a_crash_is_settled_at_restart(tmp_path: Path) -> None:
    """Two open orders that crossed (their settlement never committed) trade when reloaded."""
    from marketsrv.trading import settlement, wallet
    from marketsrv.trading.accounts import insert_user
    from storage import Database

    path = tmp_path / "t.db"
    db = Database(path)
    db.open()

    def setup(conn: sqlite3.Connection) -> None:
        now = 1_700_000_000_000
        buyer, seller = insert_user(conn, "buyer", "x", now), insert_user(conn, "seller", "x", now)
        wallet.deposit(conn, buyer.id, 100_000_00, now)
        conn.execute(
            "INSERT INTO holdings (user_id, symbol, quantity, cost_cents) VALUES (?, 'SCOM', 500, 1400000)",
            (seller.id,),
        )
        for user, side, price in ((seller, "sell", 2850), (buyer, "buy", 2860)):
            settlement.accept(conn, UserEvents(now), settlement.NewOrder(
                user.id, "SCOM", side, "limit", "gtc", 300, price, price, price, None, side, now,
            ))  # fmt: skip

    db.write(setup)
    db.close()
    market, _ = simulated_market(seed=1, steps=0)
    trading = Trading.open(str(path), market, synchronous="NORMAL", group_commit=True)
    trading.close()
    conn = sqlite3.connect(path)
    statuses = [r[0] for r in conn.execute("SELECT status FROM orders ORDER BY id")]
    fills = conn.execute("SELECT side, price_cents, quantity FROM fills ORDER BY side").fetchall()
    conn.close()
    assert statuses == ["executed", "executed"]
    assert fills == [
        ("buy", 2850, 300),
        ("sell", 2850, 300),
    ]  # at the resting (older) order's price
    assert market.books["SCOM"].best_bid() is None  # nothing left resting
    conn = sqlite3.connect(path)
    held = conn.execute("SELECT sum(held_cents) FROM wallets").fetchone()[0]
    holdings = conn.execute(
        "SELECT quantity, held_quantity FROM holdings ORDER BY user_id"
    ).fetchall()
    balances = conn.execute(
        "SELECT w.balance_cents, (SELECT sum(amount_cents) FROM ledger l WHERE l.user_id = w.user_id)"
        " FROM wallets w ORDER BY user_id"
    ).fetchall()
    conn.close()
    assert held == 0 and holdings == [(300, 0), (200, 0)]
    assert balances == [
        (100_000_00 - 2850 * 300, 100_000_00 - 2850 * 300),
        (2850 * 300, 2850 * 300),
    ]


async def test_a_client_hanging_up_mid_order_leaves_no_stranded_hold(env: Env) -> None:
    """quart-trio cancels the handler when the client disconnects; the order still completes."""
    token = await env.user("ivan", cash=100000)
    user = await env.trading.accounts.authenticate(token)
    assert user is not None
    bid = env.market.books["KCB"].best_bid()
    assert bid is not None
    price = env.market.instruments["KCB"].price(bid - 4)
    from marketsrv.trading.requests import OrderRequest

    body = {"symbol": "KCB", "side": "buy", "price": price, "quantity": 100}
    order = env.trading.orders.parse(user.id, OrderRequest.model_validate(body))
    with trio.CancelScope() as scope:
        scope.cancel()  # as if the client had already gone
        placed, _ = await env.trading.orders.place(order)
    assert placed["status"] == "pending"
    assert env.market.books["KCB"].get(-placed["id"]) is not None  # it reached the book
    cancelled = await env.call("DELETE", f"/api/trading/orders/{placed['id']}/", token, status=200)
    assert cancelled["status"] == "cancelled"
    assert (await env.call("GET", "/api/trading/wallet/", token))["held"] == 0


@pytest.mark.parametrize(
    "amount",
    ["1e999990", "1e999999", "-1e999999", "1.00000000000000000000000000001", "1e-999999", "9" * 70],
)
async def test_pathological_amounts_are_refused_at_once(env: Env, amount: str) -> None:
    token = await env.user("judy")
    with trio.fail_after(5):  # a guard against the event loop being held, not a timing claim
        body = await env.call("POST", "/api/trading/wallet/", token, {"amount": amount}, 400)
    assert body["code"] == "invalid_amount"


@pytest.mark.parametrize(
    ("quantity", "status"),
    [("²", 400), ("9" * 5000, 400), ("1_000", 400), (" 12 ", 400), ("１", 400), ("12", 201)],
)
async def test_odd_quantity_strings(env: Env, quantity: str, status: int) -> None:
    token = await env.user("ken", cash=1000)
    body = {"symbol": "SCOM", "side": "buy", "quantity": quantity, "order_type": "market"}
    answer = await env.call("POST", "/api/trading/orders/", token, body, status)
    assert status == 201 or answer["code"] == "invalid_quantity"


async def test_an_order_needs_a_side(env: Env) -> None:
    token = await env.user("lena", cash=1000)
    body = {"symbol": "SCOM", "quantity": 1, "order_type": "market"}
    assert (await env.call("POST", "/api/trading/orders/", token, body, 400))[
        "code"
    ] == "invalid_side"


async def test_a_failed_settlement_suspends_trading_and_cancel_heals(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketsrv.trading import settlement

    seller, buyer = await env.user("mia", cash=100000), await env.user("noah", cash=100000)
    await env.call(
        "POST",
        "/api/trading/orders/",
        seller,
        {"symbol": "SCOM", "side": "buy", "quantity": 100, "order_type": "market"},
        201,
    )
    ask = env.market.books["SCOM"].best_ask()
    assert ask is not None
    price = env.market.instruments["SCOM"].price(ask - 1)  # inside the spread: the best ask now
    resting = await env.call(
        "POST",
        "/api/trading/orders/",
        seller,
        {"symbol": "SCOM", "side": "sell", "quantity": 100, "price": price},
        201,
    )
    assert resting["status"] == "pending"

    def broken(*args: Any) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(settlement, "apply_fill", broken)
    failed = await env.call(
        "POST",
        "/api/trading/orders/",
        buyer,
        {"symbol": "SCOM", "side": "buy", "quantity": 100, "order_type": "market"},
        503,
    )
    assert failed["code"] == "settlement_failed"
    monkeypatch.undo()
    again = await env.call(
        "POST",
        "/api/trading/orders/",
        buyer,
        {"symbol": "SCOM", "side": "buy", "quantity": 1, "order_type": "market"},
        503,
    )
    assert again["code"] == "trading_suspended"
    # The resting sell left the book in memory but is open in the database: cancel frees it.
    healed = await env.call("DELETE", f"/api/trading/orders/{resting['id']}/", seller, status=200)
    assert healed["status"] == "cancelled"
    holdings = await env.call("GET", "/api/trading/holdings/", seller)
    assert holdings[0]["available_quantity"] == holdings[0]["quantity"] == 100


async def test_the_trading_api_is_in_the_openapi_document(env: Env) -> None:
    spec = await env.call("GET", "/api/openapi.json", status=200)
    orders = spec["paths"]["/api/trading/orders/"]["post"]
    assert orders["security"] == [{"bearer": []}]
    assert "201" in orders["responses"] and "requestBody" in orders
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/api/accounts/login/" in spec["paths"]


async def test_odd_order_ids_and_pages_are_404_and_400_not_500(env: Env) -> None:
    token = await env.user("olga")
    for raw in ("%C2%B2", "9" * 25, "-1", "0x10", "%EF%BC%91"):
        answer = await env.call("GET", f"/api/trading/orders/{raw}/", token, status=404)
        assert answer["code"] == "order_not_found"
        await env.call("DELETE", f"/api/trading/orders/{raw}/", token, status=404)
    for query in ("page=" + "9" * 25, "page=%C2%B2", "page_size=" + "9" * 25, "page=1e3"):
        for path in ("/api/trading/orders/list/", "/api/trading/fills/"):
            answer = await env.call("GET", f"{path}?{query}", token, status=400)
            assert answer["code"] == ("invalid_page_size" if "size" in query else "invalid_page")


async def test_a_price_on_a_market_order_is_its_protection_limit(env: Env) -> None:
    token = await env.user("pia", cash=1_000_000)
    bids, asks = env.market.books["SCOM"].depth(1)
    inst = env.market.instruments["SCOM"]
    best_ask, best_bid = inst.price(asks[0][0]), inst.price(bids[0][0])
    body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "order_type": "market"}
    below = await env.call(
        "POST", "/api/trading/orders/", token, body | {"price": str(best_bid)}, 201
    )
    assert below["status"] == "failed" and below["filled_quantity"] == 0
    assert "limit" in below["note"]
    at = await env.call("POST", "/api/trading/orders/", token, body | {"price": str(best_ask)}, 201)
    assert at["status"] == "executed" and at["average_price"] <= float(best_ask)
    wallet = await env.call("GET", "/api/trading/wallet/", token)
    assert wallet["held"] == 0


async def test_page_links_are_url_encoded(env: Env) -> None:
    token = await env.user("quin", cash=100_000)
    for _ in range(2):
        body = {"symbol": "SCOM", "side": "buy", "quantity": 1, "price": "26.00"}
        await env.call("POST", "/api/trading/orders/", token, body, 201)
    page = await env.call(
        "GET", "/api/trading/orders/list/?page_size=1&tag=a%20b%26c%3Dd", token, status=200
    )
    assert page["next"].endswith("?page_size=1&tag=a+b%26c%3Dd&page=2"), page["next"]


async def test_a_failed_maker_settlement_suspends_on_the_trio_thread(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread reports the failure; the order service's state changes on trio's."""
    import threading

    from marketsrv.trading import settlement

    token = await env.user("otto", cash=500000)
    bid = env.market.books["EQTY"].best_bid()
    assert bid is not None
    price = env.market.instruments["EQTY"].price(bid)
    body = {"symbol": "EQTY", "side": "buy", "price": price, "quantity": 300}
    await env.call("POST", "/api/trading/orders/", token, body, 201)

    def broken(*args: Any) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    suspended_on: list[int] = []
    orders = env.trading.orders
    original = orders._suspend

    def suspend(exc: BaseException) -> None:
        suspended_on.append(threading.get_ident())
        original(exc)

    monkeypatch.setattr(settlement, "apply_fill", broken)
    monkeypatch.setattr(orders, "_suspend", suspend)
    with trio.fail_after(30):
        while not suspended_on:
            env.sim.step()
            await env.settle()
            await trio.sleep(0)  # the trio thread runs what the writer handed over
    assert suspended_on == [threading.get_ident()]
    assert orders.suspended


async def test_orders_of_symbols_no_longer_listed_say_so_at_restart(
    env: Env, tmp_path: Path
) -> None:
    token = await env.user("rita", cash=100000)
    bid = env.market.books["KCB"].best_bid()
    assert bid is not None
    price = env.market.instruments["KCB"].price(bid - 5)
    body = {"symbol": "KCB", "side": "buy", "price": price, "quantity": 10}
    order = await env.call("POST", "/api/trading/orders/", token, body, 201)
    env.trading.close()
    market = Market([make_instrument("SCOM", "28.00")], clock=FakeClock())
    reopened = Trading.open(str(tmp_path / "t.db"), market, synchronous="NORMAL", group_commit=True)
    try:
        row = reopened.store.db.read(
            lambda c: c.execute(
                "SELECT status, note FROM orders WHERE id = ?", (order["id"],)
            ).fetchone()
        )
        assert row["status"] == "cancelled" and "KCB is no longer listed" in row["note"]
    finally:
        reopened.close()
    check_invariants(tmp_path / "t.db")


async def test_trading_timestamps_follow_the_markets_clock(env: Env) -> None:
    """One clock: the FakeClock that drives the market stamps orders, fills and the ledger."""
    from marketsrv.units import iso_ms

    token = await env.user("sam", cash=100_000)
    now = env.market.clock()
    assert now < 1_800_000_000_000  # the builders' fake clock, not today's date
    order = await env.call("POST", "/api/trading/orders/", token,
                           {"symbol": "SCOM", "side": "buy", "quantity": 10, "order_type": "market"}, 201)  # fmt: skip
    assert order["created_at"] == iso_ms(now) and order["updated_at"] == iso_ms(now)
    assert order["fills"] and all(f["created_at"] == iso_ms(now) for f in order["fills"])
    ledger_times = await env.trading.store.read(
        lambda c: {r[0] for r in c.execute("SELECT created_at FROM ledger")}
    )
    assert ledger_times == {now}


async def test_the_lenient_spellings_the_docs_promise_still_work(env: Env) -> None:
    """`side: "BUY"`, `quantity: "100"`, `stock_symbol` and `order_type: "MARKET"` are the seed
    clients' ways and are documented as accepted."""
    token = await env.user("tess", cash=1_000_000)
    body = {"stock_symbol": "scom", "side": "BUY", "quantity": "100", "order_type": "MARKET"}
    order = await env.call("POST", "/api/trading/orders/", token, body, 201)
    assert order["symbol"] == "SCOM" and order["side"] == "buy" and order["quantity"] == 100
    missing = await env.call(
        "POST", "/api/trading/orders/", token, {"side": "buy", "quantity": 1}, 400
    )
    assert missing["code"] == "invalid_symbol"
    document = await (await env.client.get("/api/openapi.json")).get_json()
    body_schema = document["paths"]["/api/trading/orders/"]["post"]["requestBody"]
    order_in = body_schema["content"]["application/json"]["schema"]["properties"]
    assert "BUY" in order_in["side"]["description"]
    assert {"type": "string", "pattern": "^[0-9]{1,7}$"} in order_in["quantity"]["oneOf"]


@pytest.mark.parametrize("limit", ["0.01", "0.04", 0.01, "25.60"])
async def test_a_protection_limit_below_the_day_s_limits_is_a_400_and_leaves_nothing_open(
    env: Env, limit: Any
) -> None:
    token = await env.user("uma", cash=100_000)
    body = {
        "symbol": "SCOM",
        "side": "buy",
        "quantity": 100,
        "order_type": "market",
        "price": limit,
    }
    # A buy that may pay at most that can never trade today: SCOM's lowest price is 25.65.
    answer = await env.call("POST", "/api/trading/orders/", token, body, 400)
    assert answer["code"] == "price_out_of_band" and "25.65 to 31.35" in answer["message"]
    assert await env.call("GET", "/api/trading/orders/", token) == []
    assert (await env.call("GET", "/api/trading/wallet/", token))["held"] == 0


async def test_an_order_the_engine_refuses_is_closed_not_left_open(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketsrv.engine import OrderRejected

    token = await env.user("vic", cash=100_000)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OrderRejected("a rule the service did not know")

    monkeypatch.setattr(env.market, "submit", refuse)
    body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "order_type": "market"}
    answer = await env.call("POST", "/api/trading/orders/", token, body, 400)
    assert answer["code"] == "order_rejected"
    [order] = await env.call("GET", "/api/trading/orders/", token)
    assert order["status"] == "failed"
    assert (await env.call("GET", "/api/trading/wallet/", token))["held"] == 0


async def test_a_retry_with_another_protection_limit_is_another_order(env: Env) -> None:
    token = await env.user("walt", cash=1_000_000)
    body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "order_type": "market",
            "price": "40.00", "client_order_id": "prot-1"}  # fmt: skip
    await env.call("POST", "/api/trading/orders/", token, body, 201)
    again = await env.call("POST", "/api/trading/orders/", token, body | {"price": "41.00"}, 409)
    assert again["code"] == "client_order_id_reused"


async def test_a_logout_whose_client_hangs_up_still_revokes_for_good(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client leaves while the revocation is being written, and a request that read the
    token just before the commit caches it: the logout must still finish and drop it."""
    token = await env.user("xena")
    accounts = env.trading.accounts
    user = await accounts.authenticate(token)
    assert user is not None
    store = accounts.store
    committed = trio.Event()
    real_write, real_read = store.write, store.read

    async def slow_write(work: Any) -> Any:
        result = await real_write(work)
        await committed.wait()  # the acknowledgement is late: the logout is suspended here
        return result

    async def stale_read(work: Any) -> Any:
        return (user, accounts.clock())  # what a read just before the commit saw

    monkeypatch.setattr(store, "write", slow_write)
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def logout() -> None:
            with scope:
                await accounts.logout(token)

        nursery.start_soon(logout)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()  # the client hung up
        monkeypatch.setattr(store, "read", stale_read)
        assert await accounts.authenticate(token) is not None  # cached from the stale read
        monkeypatch.setattr(store, "read", real_read)
        committed.set()
    assert await accounts.authenticate(token) is None
