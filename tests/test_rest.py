"""Market-data REST through Quart's in-process client: shapes of the protocol note and their errors."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from marketsrv.market import Market, Simulator
from tests.builders import FakeClock

STOCK_FIELDS = {
    "symbol": str,
    "name": str,
    "sector": str,
    "current_price": float,
    "volume": int,
    "high": float,
    "low": float,
    "change": float,
    "change_percent": float,
    "percentage_change": float,
    "last_updated": str,
    "is_active": bool,
}


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status_code == status, await response.get_data(as_text=True)
    return await response.get_json()


def assert_error(body: dict[str, Any], code: str) -> None:
    assert body["code"] == code
    assert body["error"] == body["detail"] == body["message"] and body["message"]


async def test_stock_list_paginates_like_drf(client: Client) -> None:
    first = await get_json(client, "/api/stocks/")
    assert first["count"] >= 20 and len(first["results"]) == 20
    assert first["previous"] is None and first["next"].endswith("page=2")
    second = await get_json(client, "/api/stocks/?page=2")
    assert second["previous"].endswith("page=1")
    symbols = [s["symbol"] for s in first["results"] + second["results"]]
    assert len(symbols) == len(set(symbols)) == first["count"]
    assert len((await get_json(client, "/api/stocks/?page_size=5"))["results"]) == 5
    assert_error(await get_json(client, "/api/stocks/?page=0", 400), "invalid_page")
    assert_error(await get_json(client, "/api/stocks/?page=abc", 400), "invalid_page")
    assert_error(await get_json(client, "/api/stocks/?page=99", 404), "invalid_page")
    assert_error(await get_json(client, "/api/stocks/?page_size=1000", 400), "invalid_page_size")


async def test_stock_detail_has_the_seed_superset(client: Client) -> None:
    stock = await get_json(client, "/api/stocks/SCOM/")
    for field, kind in STOCK_FIELDS.items():
        assert isinstance(stock[field], kind), field
    assert stock["change_percent"] == stock["percentage_change"]
    assert stock["bid"] < stock["ask"]
    assert stock["low"] <= stock["current_price"] <= stock["high"]
    assert stock["last_updated"].endswith("Z")
    assert (await get_json(client, "/api/stocks/scom"))["symbol"] == "SCOM"  # no slash, any case
    assert_error(await get_json(client, "/api/stocks/NOPE/", 404), "unknown_symbol")


async def test_prices_come_from_trades(
    client: Client, stepped: tuple[Market, Simulator, FakeClock]
) -> None:
    market, _, _ = stepped
    stock = await get_json(client, "/api/stocks/SCOM/")
    trades = list(market.trades["SCOM"])
    assert stock["volume"] == sum(t.quantity for t in trades) > 0
    inst = market.instruments["SCOM"]
    assert stock["current_price"] == inst.price(trades[-1].price)
    assert stock["high"] == inst.price(max(t.price for t in trades))
    assert stock["low"] == inst.price(min(t.price for t in trades))


async def test_batch(client: Client) -> None:
    response = await client.post("/api/stocks/batch/", json={"symbols": ["SCOM", "kcb", "NOPE"]})
    body = await response.get_json()
    assert response.status_code == 200
    assert [s["symbol"] for s in body["stocks"]] == ["SCOM", "KCB"]
    assert body["missing"] == ["NOPE"]
    for bad in ({"symbols": "SCOM"}, {"symbols": [1, 2]}, {}, [], {"symbols": ["A"] * 201}):
        response = await client.post("/api/stocks/batch", json=bad)
        assert response.status_code == 400
        assert_error(await response.get_json(), "invalid_body")
    response = await client.post("/api/stocks/batch/", data="{nope")
    assert_error(await response.get_json(), "invalid_json")


@pytest.mark.parametrize(
    ("sort_by", "key", "descending"),
    [
        ("most_traded", "volume", True),
        ("highest_change", "change_percent", True),
        ("lowest_change", "change_percent", False),
        ("highest_price", "current_price", True),
    ],
)
async def test_trending_sorts(client: Client, sort_by: str, key: str, descending: bool) -> None:
    body = await get_json(client, f"/api/stocks/trending/?sort_by={sort_by}&page_size=100")
    values = [s[key] for s in body["results"]]
    assert values == sorted(values, reverse=descending) and body["count"] == len(values)


async def test_trending_rejects_unknown_sort(client: Client) -> None:
    assert_error(
        await get_json(client, "/api/stocks/trending/?sort_by=random", 400), "invalid_sort_by"
    )


async def test_order_book_snapshot(
    client: Client, stepped: tuple[Market, Simulator, FakeClock]
) -> None:
    _, simulator, _ = stepped
    book = await get_json(client, "/api/stocks/SCOM/orderbook/?depth=10")
    bids, asks = book["bids"], book["asks"]
    assert len(bids) == len(asks) == 10 and book["depth"] == 10
    assert [b["price"] for b in bids] == sorted((b["price"] for b in bids), reverse=True)
    assert [a["price"] for a in asks] == sorted(a["price"] for a in asks)
    assert bids[0]["price"] < asks[0]["price"]
    for level in bids + asks:
        assert level["total"] == pytest.approx(level["price"] * level["quantity"])
    simulator.step()
    later = await get_json(client, "/api/stocks/SCOM/orderbook")
    assert later["seq"] > book["seq"] and len(later["bids"]) == 10  # default depth
    assert len((await get_json(client, "/api/stocks/SCOM/orderbook/?depth=1"))["asks"]) == 1
    for depth in ("0", "51", "ten", "-3"):
        body = await get_json(client, f"/api/stocks/SCOM/orderbook/?depth={depth}", 400)
        assert_error(body, "invalid_depth")
    assert_error(await get_json(client, "/api/stocks/NOPE/orderbook/", 404), "unknown_symbol")


async def test_trades_and_candles(
    client: Client, stepped: tuple[Market, Simulator, FakeClock]
) -> None:
    market, _, _ = stepped
    body = await get_json(client, "/api/stocks/SCOM/trades/?limit=3")
    ids = [t["id"] for t in body["trades"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)  # newest first
    assert ids[0] == market.trades["SCOM"][-1].trade_id
    assert {t["side"] for t in body["trades"]} <= {"buy", "sell"}
    assert_error(await get_json(client, "/api/stocks/SCOM/trades/?limit=0", 400), "invalid_limit")

    candles = (await get_json(client, "/api/stocks/SCOM/candles/?interval=1m"))["candles"]
    assert candles and sum(c["volume"] for c in candles) == market.stats["SCOM"].volume
    for c in candles:
        assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
    assert (await get_json(client, "/api/stocks/SCOM/candles/?interval=1h"))["interval"] == "1h"
    body = await get_json(client, "/api/stocks/SCOM/candles/?interval=7m", 400)
    assert_error(body, "invalid_interval")


async def test_health_openapi_and_unknown_routes(client: Client) -> None:
    assert (await get_json(client, "/api/health/"))["status"] == "ok"
    spec = await get_json(client, "/api/openapi.json")
    assert "/api/stocks/{symbol}/orderbook/" in spec["paths"]
    assert_error(await get_json(client, "/api/nothing-here/", 404), "not_found")
    response = await client.delete("/api/stocks/")
    assert response.status_code == 405
    assert_error(await response.get_json(), "method_not_allowed")


@pytest.mark.parametrize(
    "query",
    ["/api/stocks/?page=1_0", "/api/stocks/?page=%2B1", "/api/stocks/?page=%201",
     "/api/stocks/?page=1.0", "/api/stocks/SCOM/orderbook/?depth=1_0",
     "/api/stocks/SCOM/trades/?limit=%EF%BC%91"],
)  # fmt: skip
async def test_query_numbers_are_ascii_digits_only(client: Client, query: str) -> None:
    response = await client.get(query)
    assert response.status_code == 400, query
    assert (await response.get_json())["code"].startswith("invalid_")
