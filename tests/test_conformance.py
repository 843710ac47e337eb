"""Conformance against the wire contract, probed like a picky (or hostile) client would.

Every test runs a real hypercorn on 127.0.0.1 port 0 (`start_server`) and talks to it with httpx or
trio-websocket clients, under a `trio.fail_after` limit, waiting on frames or conditions only.
References: `seed` is `../shared/seed-protocol.md` (the HisaHub client's contract), `issue 3`/`issue 4`
are the issue texts, `protocol.md` is `docs/protocol.md` (what marketsrv claims). Tests marked
`xfail(strict=True)` are known discrepancies: each states the behaviour the contract asks for.

Where a test needs a market that moves only when told (to line a REST read up with a stream frame at
the same `seq`), it starts the server with `simulate=False` and steps its own `Simulator` over the
server's market from the test task: the server's publisher then sees exactly those changes.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

from marketsrv.market import Simulator
from marketsrv.runtime import Runtime
from tests.builders import ServerFactory, next_of, open_ws, send

SEED_STOCK_FIELDS = (
    "symbol", "name", "sector", "current_price", "volume", "high", "low", "change",
    "change_percent", "percentage_change", "last_updated", "is_active",
)  # fmt: skip
PRICE_FIELDS = ("current_price", "previous_close", "open", "high", "low", "change")


# -- helpers ---------------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_cents(value: Any) -> bool:
    """A JSON number with at most two decimals as it is written on the wire (KES to the cent)."""
    if not is_number(value):
        return False
    exponent = Decimal(repr(value)).as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -2


def is_epoch_ms(value: Any) -> bool:
    return is_int(value) and abs(value - time.time() * 1000) < 300_000


def assert_error_body(body: dict[str, Any], code: str | None = None) -> None:
    """seed: errors carry a stable machine code and the text under `error`, `detail`, `message`."""
    assert isinstance(body.get("code"), str) and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert body["error"] == body["detail"] == body["message"], body


def check_stock(stock: dict[str, Any]) -> None:
    for field in SEED_STOCK_FIELDS:
        assert field in stock, field
    for field in ("symbol", "name", "sector", "last_updated"):
        assert isinstance(stock[field], str), field
    for field in PRICE_FIELDS:
        assert is_cents(stock[field]), (field, stock[field])
    for field in ("change_percent", "percentage_change"):  # seed: "change_percent must be a number"
        assert is_cents(stock[field]), (field, stock[field])
    assert stock["change_percent"] == stock["percentage_change"]
    assert is_int(stock["volume"]) and stock["volume"] >= 0
    assert stock["is_active"] is True
    assert stock["low"] <= stock["current_price"] <= stock["high"]
    assert stock["last_updated"].endswith("Z")
    datetime.fromisoformat(stock["last_updated"].replace("Z", "+00:00"))
    assert is_epoch_ms(stock["timestamp"])
    if stock["previous_close"]:
        expected = stock["change"] * 100 / stock["previous_close"]
        assert stock["change_percent"] == pytest.approx(expected, abs=0.011)


def check_levels(levels: list[dict[str, Any]], descending: bool) -> None:
    """seed: `{price, quantity, total}`, total = price × quantity of that level (not cumulative)."""
    prices = [level["price"] for level in levels]
    assert prices == sorted(prices, reverse=descending) and len(set(prices)) == len(prices)
    for level in levels:
        assert is_cents(level["price"]) and level["price"] > 0, level
        assert is_int(level["quantity"]) and level["quantity"] > 0, level
        assert is_cents(level["total"]), level
        assert level["total"] == pytest.approx(level["price"] * level["quantity"], abs=0.001)


def check_book(book: dict[str, Any]) -> None:
    check_levels(book["bids"], descending=True)
    check_levels(book["asks"], descending=False)
    if book["bids"] and book["asks"]:
        assert book["bids"][0]["price"] < book["asks"][0]["price"]
    assert is_int(book["seq"]) and is_epoch_ms(book["timestamp"])


def check_market_data(md: dict[str, Any]) -> None:
    """seed: market_data numbers are JSON numbers (the client calls toFixed); timestamp int ms."""
    for field in ("price", "high", "low", "change", "changePercent"):
        assert is_cents(md[field]), (field, md[field])
    for field in ("bid", "ask"):
        assert md[field] is None or is_cents(md[field]), (field, md[field])
    for field in ("volume", "bid_size", "ask_size"):
        assert is_int(md[field]), (field, md[field])
    assert isinstance(md["symbol"], str) and is_epoch_ms(md["timestamp"])
    assert "last_price" not in md or md["last_price"] == md["price"]
    assert "change_percent" not in md or md["change_percent"] == md["changePercent"]


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    """The next frame: JSON text (seed: the client drops binary and non-JSON frames) in the
    envelope `{"type", "data"}`, with `ts` (protocol.md)."""
    message = await ws.get_message()
    assert isinstance(message, str), message
    frame: dict[str, Any] = orjson.loads(message)
    assert isinstance(frame["type"], str) and isinstance(frame["data"], dict), frame
    assert is_number(frame["ts"]), frame
    return frame


async def until_pong(ws: WebSocketConnection, stamp: int) -> list[dict[str, Any]]:
    """Ping, and return every frame that arrives before its pong."""
    await send(ws, {"type": "ping", "timestamp": stamp})
    seen: list[dict[str, Any]] = []
    with trio.fail_after(5):
        while True:
            frame = await recv(ws)
            if frame["type"] == "pong" and frame["data"].get("timestamp") == stamp:
                return seen
            seen.append(frame)


async def alive(ws: WebSocketConnection, stamp: int = 99) -> None:
    await until_pong(ws, stamp)


async def rest(http: httpx.AsyncClient, path: str, status: int = 200) -> Any:
    response = await http.get(path)
    assert response.status_code == status, (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), path
    return response.json()


async def quiet_server(
    start_server: ServerFactory, **overrides: Any
) -> tuple[str, Runtime, Simulator]:
    """A server whose market moves only when the test steps the returned simulator."""
    url, runtime = await start_server(simulate=False, **overrides)
    sim = Simulator(runtime.market, seed=9, tick_interval_ms=100)
    for _ in range(3):
        sim.step()
    return url, runtime, sim


async def wait_seq(
    ws: WebSocketConnection, kind: str, symbol: str, seq: int, log: list[dict[str, Any]]
) -> None:
    """Read frames (recording them in `log`) until a `kind` frame of `symbol` at `seq` arrives."""
    with trio.fail_after(5):
        while True:
            frame = await recv(ws)
            log.append(frame)
            data = frame["data"]
            if frame["type"] == kind and data.get("symbol") == symbol and data.get("seq") == seq:
                return


def close_code(closed: ConnectionClosed) -> int | None:
    return None if closed.reason is None else closed.reason.code


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in leaves(sub)]
    return [error]


Book = tuple[dict[float, int], dict[float, int]]


def book_of(data: dict[str, Any]) -> Book:
    return (
        {lv["price"]: lv["quantity"] for lv in data["bids"]},
        {lv["price"]: lv["quantity"] for lv in data["asks"]},
    )


def apply_update(book: Book, update: dict[str, Any]) -> None:
    for side, levels in zip(book, (update["bids"], update["asks"]), strict=True):
        for level in levels:
            if level["quantity"] == 0:
                side.pop(level["price"], None)
            else:
                side[level["price"]] = level["quantity"]


def top(book: Book, depth: int = 50) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    bids, asks = book
    return sorted(bids.items(), reverse=True)[:depth], sorted(asks.items())[:depth]


# -- REST ------------------------------------------------------------------------------------------


async def test_rest_stock_shapes_and_drf_pagination(start_server: ServerFactory) -> None:
    url, runtime = await start_server()
    count = len(runtime.market.instruments)
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            first = await rest(http, "/api/stocks/")
            assert set(first) == {"count", "next", "previous", "results"}  # seed: DRF-style
            assert first["count"] == count >= 20 and len(first["results"]) == 20
            assert first["previous"] is None and first["next"].startswith(url)  # absolute URLs
            second = (await http.get(first["next"])).json()  # follow the links as given
            assert second["next"] is None and len(second["results"]) == count - 20
            back = (await http.get(second["previous"])).json()
            assert [s["symbol"] for s in back["results"]] == [s["symbol"] for s in first["results"]]
            symbols = [s["symbol"] for s in first["results"] + second["results"]]
            assert sorted(symbols) == sorted(runtime.market.instruments)
            for stock in first["results"] + second["results"]:
                check_stock(stock)
            detail = await rest(http, "/api/stocks/scom")  # any case, no slash
            check_stock(detail)
            assert detail["symbol"] == "SCOM"
            # Other query parameters ride along on the links.
            kept = await rest(http, "/api/stocks/?page_size=5&foo=bar")
            assert len(kept["results"]) == 5 and "foo=bar" in kept["next"]
            last = await rest(http, f"/api/stocks/?page_size=1&page={count}")
            assert last["next"] is None and len(last["results"]) == 1
            everything = await rest(http, "/api/stocks/?page_size=100")
            assert everything["next"] is None and len(everything["results"]) == count


async def test_rest_paths_answer_with_and_without_the_slash(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    paths = [
        "/api/health/", "/api/stocks/", "/api/stocks/SCOM/", "/api/stocks/trending/",
        "/api/stocks/SCOM/orderbook/", "/api/stocks/SCOM/trades/", "/api/stocks/SCOM/candles/",
    ]  # fmt: skip
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=5, follow_redirects=False) as http:
            for path in paths:
                with_slash = await rest(http, path)  # seed: Django-style; no redirect either way
                without = await rest(http, path.rstrip("/"))
                assert set(with_slash) == set(without), path
            assert (await rest(http, "/api/health"))["status"] == "ok"
            for path in ("/api/stocks/batch/", "/api/stocks/batch"):
                response = await http.post(path, json={"symbols": ["SCOM"]})
                assert response.status_code == 200, path
                assert [s["symbol"] for s in response.json()["stocks"]] == ["SCOM"]


async def test_rest_trades_and_candles_shapes(start_server: ServerFactory) -> None:
    url, runtime = await start_server()
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            while len(runtime.market.trades["SCOM"]) < 3:
                await trio.sleep(0.02)  # until the simulator has traded
            body = await rest(http, "/api/stocks/scom/trades?limit=3")
            assert body["symbol"] == "SCOM" and len(body["trades"]) == 3
            ids = [t["id"] for t in body["trades"]]
            assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3  # newest first
            for trade in body["trades"]:
                assert trade["side"] in ("buy", "sell") and is_int(trade["quantity"])
                assert is_cents(trade["price"]) and is_epoch_ms(trade["timestamp"])
            assert len((await rest(http, "/api/stocks/SCOM/trades/"))["trades"]) <= 50
            for bad in ("0", "1001", "-1", "x", ""):
                body = await rest(http, f"/api/stocks/SCOM/trades/?limit={bad}", 400)
                assert_error_body(body, "invalid_limit")
            for interval in ("1m", "5m", "15m", "1h"):
                body = await rest(http, f"/api/stocks/SCOM/candles/?interval={interval}&limit=5")
                assert body["interval"] == interval and 1 <= len(body["candles"]) <= 5
                times = [c["time"] for c in body["candles"]]
                assert times == sorted(times)  # oldest first
                for c in body["candles"]:
                    assert is_int(c["time"]) and is_int(c["volume"]) and is_int(c["trades"])
                    assert all(is_cents(c[k]) for k in ("open", "high", "low", "close"))
                    assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"])
                    assert max(c["open"], c["close"]) <= c["high"]
            for bad in ("interval=7m", "interval=1M", "limit=0", "limit=5001", "from=x"):
                body = await rest(http, f"/api/stocks/SCOM/candles/?{bad}", 400)
                assert_error_body(body)


async def test_market_data_stays_public_whatever_the_credentials(
    start_server: ServerFactory,
) -> None:
    """seed: the client sends Authorization (and Content-Type) on every call, logged in or not,
    and market data (`/api/stocks/...`, the market WebSockets) is public."""
    url, _ = await start_server()
    headers = {"Authorization": "Bearer not-a-real-token", "Content-Type": "application/json"}
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5, headers=headers) as http:
            for path in ("/api/stocks/", "/api/stocks/SCOM/", "/api/stocks/trending/",
                         "/api/stocks/SCOM/orderbook/", "/api/health/"):  # fmt: skip
                await rest(http, path)
            response = await http.post("/api/stocks/batch/", json={"symbols": ["SCOM"]})
            assert response.status_code == 200
        for path in ("/ws/market/?token=not-a-real-token", "/ws/orderbook/SCOM/?token=bad"):
            async with open_ws(url, path) as ws:
                await alive(ws)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("page=0", 400, "invalid_page"),
        ("page=-1", 400, "invalid_page"),
        ("page=abc", 400, "invalid_page"),
        ("page=1.5", 400, "invalid_page"),
        ("page=%EF%BC%92", 400, "invalid_page"),  # a full-width digit is not a page number
        ("page=99", 404, "invalid_page"),
        ("page=99999999999999999999999999", 404, "invalid_page"),
        ("page=", 0, ""),  # DRF reads an empty page as 1; a clean 400 is fine too
        ("page=1&page=2", 0, ""),  # Django takes the last value; a clean 400 is fine too
        ("page=last", 0, ""),  # DRF's `last_page_strings`
        ("page_size=0", 400, "invalid_page_size"),
        ("page_size=101", 400, "invalid_page_size"),
        ("page_size=-5", 400, "invalid_page_size"),
    ],
)
async def test_rest_bad_pages_are_clean_json_errors(
    start_server: ServerFactory, query: str, status: int, code: str
) -> None:
    url, _ = await start_server()
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for path in ("/api/stocks/", "/api/stocks/trending/"):
                if status == 0:  # no 500, and JSON either way
                    response = await http.get(f"{path}?{query}")
                    assert response.status_code in (200, 400, 404), response.text
                    if response.status_code != 200:
                        assert_error_body(response.json())
                    continue
                body = await rest(http, f"{path}?{query}", status)
                assert_error_body(body, code)
                if status == 404:
                    assert body["pages"] == 2  # protocol.md: `pages` says how many there are


async def test_rest_unknown_and_hostile_symbols(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    symbols = ["NOPE", "X" * 3000, "%F0%9F%9A%80", "SCOM%00", "%C3%9F", "SCOM%20X", "'%22;--"]
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for symbol in symbols:
                for tail in ("", "orderbook/", "trades/", "candles/"):
                    body = await rest(http, f"/api/stocks/{symbol}/{tail}", 404)
                    assert_error_body(body, "unknown_symbol")
            assert (await rest(http, "/api/health/"))["status"] == "ok"
            check_stock(await rest(http, "/api/stocks/SCOM/"))


async def test_batch_shapes_and_bad_bodies(start_server: ServerFactory) -> None:
    url, runtime = await start_server()
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            response = await http.post(
                "/api/stocks/batch/", json={"symbols": ["SCOM", "kcb", "NOPE", "scom", " KCB "]}
            )
            body = response.json()
            assert response.status_code == 200 and set(body) == {"stocks", "missing"}
            assert [s["symbol"] for s in body["stocks"]] == ["SCOM", "KCB"]  # duplicates once
            assert body["missing"] == ["NOPE"]
            for stock in body["stocks"]:
                check_stock(stock)
            empty = await http.post("/api/stocks/batch/", json={"symbols": []})
            assert empty.status_code == 200 and empty.json() == {"stocks": [], "missing": []}
            # protocol.md: bodies are read as JSON whatever their Content-Type.
            plain = await http.post(
                "/api/stocks/batch/",
                content=b'{"symbols": ["EQTY"]}',
                headers={"content-type": "text/plain"},
            )
            assert plain.status_code == 200 and plain.json()["stocks"][0]["symbol"] == "EQTY"
            # seed: 400 if `symbols` is not a list.
            not_lists: list[Any] = [
                {"symbols": "SCOM"}, {"symbols": None}, {"symbols": {"SCOM": 1}},
                {"symbols": 5}, {"symbols": True}, {"symbols": [1, 2]}, {"symbols": [["SCOM"]]},
                {"symbols": [None]}, {}, {"stocks": ["SCOM"]}, [], ["SCOM"], "SCOM", None, 42,
                {"symbols": ["A"] * 201},
            ]  # fmt: skip
            for bad in not_lists:
                response = await http.post("/api/stocks/batch/", content=orjson.dumps(bad))
                assert response.status_code == 400, bad
                assert_error_body(response.json(), "invalid_body")
            for raw in (b"", b"{nope", b"\xff\xfe{}", b"symbols=SCOM", b'{"symbols": [NaN]}'):
                response = await http.post("/api/stocks/batch/", content=raw)
                assert response.status_code == 400, raw
                assert_error_body(response.json(), "invalid_json")
            huge = orjson.dumps({"symbols": ["A" * 70_000]})
            response = await http.post("/api/stocks/batch/", content=huge)
            assert response.status_code == 413
            assert_error_body(response.json(), "body_too_large")
            assert (await rest(http, "/api/health/"))["symbols"] == len(runtime.market.instruments)


@pytest.mark.parametrize(
    ("sort_by", "key", "descending"),
    [
        ("most_traded", "volume", True),
        ("highest_change", "change_percent", True),
        ("lowest_change", "change_percent", False),
        ("highest_price", "current_price", True),
    ],
)
async def test_trending_sort_orders_over_the_wire(
    start_server: ServerFactory, sort_by: str, key: str, descending: bool
) -> None:
    url, runtime = await start_server()
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            body = await rest(http, f"/api/stocks/trending?sort_by={sort_by}&page_size=100")
            values = [s[key] for s in body["results"]]
            assert values == sorted(values, reverse=descending)
            assert body["count"] == len(values) == len(runtime.market.instruments)
            paged = await rest(http, f"/api/stocks/trending/?sort_by={sort_by}")
            assert set(paged) == {"count", "next", "previous", "results"}
            assert len(paged["results"]) == 20 and f"sort_by={sort_by}" in paged["next"]
            for stock in paged["results"]:
                check_stock(stock)
            if sort_by == "most_traded":  # the default
                default = await rest(http, "/api/stocks/trending/?page_size=100")
                volumes = [s["volume"] for s in default["results"]]
                assert volumes == sorted(volumes, reverse=True)
            for bad in ("random", "", "MOST_TRADED", "volume"):
                body = await rest(http, f"/api/stocks/trending/?sort_by={bad}", 400)
                assert_error_body(body, "invalid_sort_by")


async def test_rest_orderbook_depth_bounds_levels_and_seq(start_server: ServerFactory) -> None:
    url, runtime = await start_server()
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            book = await rest(http, "/api/stocks/SCOM/orderbook/")
            assert book["symbol"] == "SCOM" and book["depth"] == 10  # default depth
            assert len(book["bids"]) == len(book["asks"]) == 10
            check_book(book)
            for depth in (1, 2, 10, 49, 50):
                book = await rest(http, f"/api/stocks/scom/orderbook/?depth={depth}")
                check_book(book)
                assert book["depth"] == depth
                assert 1 <= len(book["bids"]) <= depth and 1 <= len(book["asks"]) <= depth
                if depth <= 10:
                    assert len(book["bids"]) == len(book["asks"]) == depth
            for bad in ("0", "51", "-1", "ten", "", "1.5", "1e1", "99999999999999999999"):
                body = await rest(http, f"/api/stocks/SCOM/orderbook/?depth={bad}", 400)
                assert_error_body(body, "invalid_depth")
            assert_error_body(
                await rest(http, "/api/stocks/NOPE/orderbook/", 404), "unknown_symbol"
            )
            # The book's seq grows between two reads (issue 3) and never goes back.
            first = (await rest(http, "/api/stocks/SCOM/orderbook/?depth=50"))["seq"]
            seq = first
            while seq == first:
                await trio.sleep(0.02)  # poll until the book changes
                seq = (await rest(http, "/api/stocks/SCOM/orderbook/?depth=50"))["seq"]
            assert seq > first
            assert seq <= runtime.market.books["SCOM"].seq


async def test_http_methods_head_options_and_unknown_routes(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            head = await http.head("/api/stocks/SCOM/")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-type"].startswith("application/json")
            options = await http.options("/api/stocks/")
            assert options.status_code in (200, 204) and "GET" in options.headers["allow"]
            for method, path in (
                ("DELETE", "/api/stocks/SCOM/"),
                ("POST", "/api/stocks/"),
                ("PUT", "/api/stocks/batch/"),
                ("PATCH", "/api/health/"),
            ):
                response = await http.request(method, path)
                assert response.status_code == 405, (method, path)
                assert "allow" in response.headers
                assert_error_body(response.json(), "method_not_allowed")
            for path in ("/api/nothing-here/", "/ws/market/", "/api/stocks/SCOM/x/"):
                assert_error_body(await rest(http, path, 404), "not_found")
            for path in ("/static/nothing.js", "/static/../pyproject.toml"):
                assert_error_body(await rest(http, path, 404), "not_found")
            page = await http.get("/")  # the trading screen
            assert page.status_code == 200 and page.text.startswith("<!doctype html>")
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            etag = page.headers["etag"]
            again = await http.get("/", headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
            module = await http.get("/static/js/marketsrv.js")
            assert module.headers["content-type"].startswith("text/javascript")
            assert "export class Client" in module.text


async def test_get_on_batch_is_method_not_allowed(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            response = await http.get("/api/stocks/batch/")
            assert response.status_code == 405
            assert_error_body(response.json(), "method_not_allowed")
            assert "POST" in response.headers["allow"]


async def test_cors_preflight_and_simple_requests(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    origin = "http://localhost:3000"
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for method, path in (("GET", "/api/stocks/"), ("POST", "/api/stocks/batch/")):
                preflight = await http.options(
                    path,
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": method,
                        "Access-Control-Request-Headers": "authorization,content-type",
                    },
                )
                assert preflight.status_code in (200, 204)
                assert preflight.headers.get("access-control-allow-origin") in ("*", origin)
                allowed = preflight.headers.get("access-control-allow-headers", "").lower()
                # A wildcard does not cover Authorization (Fetch standard), so it must be named.
                assert "authorization" in allowed
                assert "content-type" in allowed or allowed == "*"
            response = await http.get("/api/stocks/SCOM/", headers={"Origin": origin})
            assert response.headers.get("access-control-allow-origin") in ("*", origin)


# -- /ws/market/ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "asgi"])
async def test_seed_client_sequence_and_stale_resubscribe(
    start_server: ServerFactory, fast_path: bool
) -> None:
    url, _ = await start_server(ws_fast_path=fast_path)
    with trio.fail_after(15):
        async with open_ws(url, "/ws/market/") as ws:
            # seed: subscribe on open; subscription_confirmed has the whole set.
            await send(ws, {"type": "subscribe", "symbols": ["SCOM", "KCB"], "order_book": True})
            first = await recv(ws)
            assert first["type"] == "subscription_confirmed"
            assert sorted(first["data"]["symbols"]) == ["KCB", "SCOM"]
            for symbol in ("SCOM", "KCB"):
                check_market_data((await next_of(ws, "market_data", symbol=symbol))["data"])
                book = (await next_of(ws, "order_book", symbol=symbol))["data"]
                check_book(book)
                assert len(book["bids"]) == len(book["asks"]) == 10  # seed: default depth 10
            # seed: ping every 30 s with a timestamp; pong answers.
            stamp = int(time.time() * 1000)
            await send(ws, {"type": "ping", "timestamp": stamp})
            pong = await next_of(ws, "pong")
            assert pong["data"]["timestamp"] == stamp and is_epoch_ms(pong["data"]["server_time"])
            # seed: a snapshot request carries symbols; immediate data for them.
            await send(ws, {"type": "snapshot", "symbols": ["EQTY"]})
            check_market_data((await next_of(ws, "market_data", symbol="EQTY"))["data"])
            check_book((await next_of(ws, "order_book", symbol="EQTY"))["data"])
            # The user drops KCB and adds EQTY...
            await send(ws, {"type": "unsubscribe", "symbols": ["KCB"]})
            assert (await next_of(ws, "subscription_confirmed"))["data"]["symbols"] == ["SCOM"]
            await send(ws, {"type": "subscribe", "symbols": ["EQTY"], "order_book": True})
            confirmed = (await next_of(ws, "subscription_confirmed"))["data"]["symbols"]
            assert sorted(confirmed) == ["EQTY", "SCOM"]
        # ...then the connection drops and the hook re-subscribes from stale state (seed): the new
        # connection gets exactly the stale list, nothing carried over from the old one.
        async with open_ws(url, "/ws/market") as ws:
            await send(ws, {"type": "subscribe", "symbols": ["SCOM", "KCB"], "order_book": True})
            confirmed = (await next_of(ws, "subscription_confirmed"))["data"]["symbols"]
            assert sorted(confirmed) == ["KCB", "SCOM"]
            seen: set[str] = set()
            while seen != {"KCB", "SCOM"}:
                frame = await recv(ws)
                if frame["type"] in ("market_data", "order_book"):
                    assert frame["data"]["symbol"] in ("KCB", "SCOM"), frame
                    seen.add(frame["data"]["symbol"])
            # A second, identical subscribe (the hook's reconnect plus the page's own) is a no-op.
            await send(ws, {"type": "subscribe", "symbols": ["KCB", "SCOM"], "order_book": True})
            confirmed = (await next_of(ws, "subscription_confirmed"))["data"]["symbols"]
            assert sorted(confirmed) == ["KCB", "SCOM"]


async def test_subscription_set_edge_cases(start_server: ServerFactory) -> None:
    url, _ = await start_server(ws_max_messages_per_s=1000.0)
    with trio.fail_after(15):
        async with open_ws(url, "/ws/market/") as ws:

            async def confirm(message: dict[str, Any]) -> list[str]:
                await send(ws, message)
                return sorted((await next_of(ws, "subscription_confirmed"))["data"]["symbols"])

            assert await confirm({"type": "subscribe", "symbols": []}) == []
            symbols = ["scom", " kcb ", "SCOM", "Scom", "kcb"]  # lower case, spaces, duplicates
            assert await confirm({"type": "subscribe", "symbols": symbols}) == ["KCB", "SCOM"]
            assert await confirm({"type": "subscribe", "symbols": []}) == ["KCB", "SCOM"]
            assert await confirm({"type": "subscribe", "symbols": ["KCB"]}) == ["KCB", "SCOM"]
            # Unsubscribing something never subscribed: no error, the set unchanged.
            await send(ws, {"type": "unsubscribe", "symbols": ["EQTY", "NOPE"]})
            before_pong = await until_pong(ws, 1)
            assert [f["type"] for f in before_pong if f["type"] != "market_data"] == [
                "subscription_confirmed"
            ]
            assert [f for f in before_pong if f["type"] == "subscription_confirmed"][-1]["data"][
                "symbols"
            ] == ["KCB", "SCOM"]
            assert await confirm({"type": "unsubscribe", "symbols": ["scom", "KCB"]}) == []
            assert await confirm({"type": "unsubscribe", "symbols": []}) == []
            # After the set changes to EQTY only, nothing else arrives.
            assert await confirm({"type": "subscribe", "symbols": ["EQTY"]}) == ["EQTY"]
            for _ in range(8):
                frame = await recv(ws)
                assert frame["data"]["symbol"] == "EQTY", frame
            # Out-of-range depths on /ws/market/ are clamped (protocol.md).
            for depth, clamped in ((0, 1), (-1, 1), (51, 50), (7, 7)):
                await send(
                    ws,
                    {"type": "subscribe", "symbols": ["EQTY"], "order_book": True, "depth": depth},
                )
                book = (await next_of(ws, "order_book", symbol="EQTY", depth=clamped))["data"]
                check_book(book)
                assert 1 <= len(book["bids"]) <= clamped


async def test_too_many_symbols_changes_nothing(start_server: ServerFactory) -> None:
    url, runtime = await start_server(ws_max_symbols=3)
    everything = sorted(runtime.market.instruments)
    with trio.fail_after(10):
        async with open_ws(url, "/ws/market/") as ws:
            await send(
                ws, {"type": "subscribe", "symbols": ["SCOM", "KCB"] * 10}
            )  # dupes count once
            assert (await next_of(ws, "subscription_confirmed"))["data"]["symbols"] == [
                "KCB",
                "SCOM",
            ]
            await send(ws, {"type": "subscribe", "symbols": everything[:10]})
            error = (await next_of(ws, "error"))["data"]
            assert error["code"] == "too_many_symbols" and isinstance(error["message"], str)
            await send(ws, {"type": "subscribe", "symbols": []})
            assert (await next_of(ws, "subscription_confirmed"))["data"]["symbols"] == [
                "KCB",
                "SCOM",
            ]
            await send(ws, {"type": "subscribe", "symbols": ["SCOM"] * 31})  # far over: refused
            assert (await next_of(ws, "error"))["data"]["code"] == "too_many_symbols"
            await alive(ws)


BAD_MARKET_INPUTS: list[tuple[Any, str]] = [
    ("", "invalid_json"),
    ('{"type":"ping"} trailing', "invalid_json"),
    ("[" * 2000 + "]" * 2000, "invalid_json"),
    ("null", "invalid_message"),
    ("42", "invalid_message"),
    ('["subscribe", ["SCOM"]]', "invalid_message"),
    ({"type": None}, "missing_type"),
    ({"type": ["subscribe"], "symbols": ["SCOM"]}, "unknown_type"),
    ({"type": 42}, "unknown_type"),
    ({"type": {"nested": {"junk": [1, 2, {"x": None}]}}}, "unknown_type"),
    ({"type": "SUBSCRIBE", "symbols": ["SCOM"]}, "unknown_type"),
    ({"type": "x" * 5000}, "unknown_type"),
    ({"type": "subscribe"}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": None}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": "SCOM"}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": {"SCOM": True}}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": [1, 2]}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": [["SCOM"]]}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": [None]}, "invalid_symbols"),
    ({"type": "subscribe", "symbols": ["SCOM"], "depth": "10"}, "invalid_depth"),
    ({"type": "subscribe", "symbols": ["SCOM"], "depth": None}, "invalid_depth"),
    ({"type": "subscribe", "symbols": ["SCOM"], "depth": True}, "invalid_depth"),
    ({"type": "subscribe", "symbols": ["SCOM"], "depth": [10]}, "invalid_depth"),
    ({"type": "subscribe", "symbols": ["SCOM"], "order_book": "true"}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["SCOM"], "order_book": 1}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["SCOM"], "trades": None}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["SCOM"], "batch": 0}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["SCOM"], "candles": {}}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["SCOM"], "book_mode": "full"}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["SCOM"], "book_mode": 1}, "invalid_field"),
    ({"type": "subscribe", "symbols": ["\U0001f680", "X" * 5000, "ＳＣＯＭ"]}, "unknown_symbols"),
    ({"type": "subscribe", "symbols": ["SCOM"] * 1001}, "too_many_symbols"),
    ({"type": "unsubscribe"}, "invalid_symbols"),
    ({"type": "unsubscribe", "symbols": "SCOM"}, "invalid_symbols"),
    ({"type": "snapshot", "symbols": "SCOM"}, "invalid_symbols"),
    ({"type": "snapshot", "symbols": ["NOPE"]}, "unknown_symbols"),
    ({"type": "snapshot", "symbols": ["SCOM"], "depth": 2.5}, "invalid_depth"),
]


async def test_bad_inputs_get_error_frames_and_everyone_keeps_being_served(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(ws_max_messages_per_s=1000.0)
    with trio.fail_after(20):
        async with (
            open_ws(url, "/ws/market/") as bystander,
            open_ws(url, "/ws/market/") as ws,
        ):
            await send(bystander, {"type": "subscribe", "symbols": ["KCB"]})
            await next_of(bystander, "subscription_confirmed")
            await send(ws, {"type": "subscribe", "symbols": ["KCB"]})
            await next_of(ws, "subscription_confirmed")
            for i, (message, code) in enumerate(BAD_MARKET_INPUTS):
                await send(ws, message)
                error = (await next_of(ws, "error"))["data"]
                assert error["code"] == code, message if isinstance(message, dict) else message[:40]
                assert isinstance(error["message"], str) and error["message"]
                await alive(ws, i)
            # Extra fields and nested junk beside a valid message are ignored.
            await send(ws, {"type": "ping", "timestamp": 5, "x": {"y": [[[{}]]]}, "z": None})
            assert (await next_of(ws, "pong"))["data"]["timestamp"] == 5
            # None of it changed the subscription (bad subscribes change nothing).
            await send(ws, {"type": "subscribe", "symbols": []})
            assert (await next_of(ws, "subscription_confirmed"))["data"]["symbols"] == ["KCB"]
            # The bystander kept receiving.
            assert (await next_of(bystander, "market_data"))["data"]["symbol"] == "KCB"
            # Unknown symbols beside known ones: the known ones still subscribe (issue 4).
            await send(ws, {"type": "subscribe", "symbols": ["EQTY", "NOPE"]})
            assert (await next_of(ws, "subscription_confirmed"))["data"]["symbols"] == [
                "EQTY",
                "KCB",
            ]
            assert (await next_of(ws, "error"))["data"]["symbols"] == ["NOPE"]


async def test_interleaved_requests_are_answered_in_order(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    with trio.fail_after(10):
        async with open_ws(url, "/ws/market/") as ws:
            for message in (
                {"type": "subscribe", "symbols": ["SCOM", "KCB"]},
                {"type": "ping", "timestamp": 1},
                {"type": "snapshot", "symbols": ["EQTY"]},
                {"type": "unsubscribe", "symbols": ["KCB"]},
                {"type": "explode"},
                {"type": "subscribe", "symbols": ["ABSA"]},
                {"type": "ping", "timestamp": 2},
            ):
                await send(ws, message)  # without waiting for answers
            replies: list[dict[str, Any]] = []
            while len(replies) < 6:
                frame = await recv(ws)
                if frame["type"] in ("subscription_confirmed", "pong", "error"):
                    replies.append(frame)
            assert [
                (f["type"], f["data"].get("symbols", f["data"].get("code"))) for f in replies
            ] == [
                ("subscription_confirmed", ["KCB", "SCOM"]),
                ("pong", None),
                ("subscription_confirmed", ["SCOM"]),
                ("error", "unknown_type"),
                ("subscription_confirmed", ["ABSA", "SCOM"]),
                ("pong", None),
            ]
            assert [f["data"]["timestamp"] for f in replies if f["type"] == "pong"] == [1, 2]


async def test_a_message_flood_is_rate_limited_then_closed_and_others_unharmed(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(ws_max_messages_per_s=5.0)
    with trio.fail_after(15):
        async with open_ws(url, "/ws/market/") as other:
            await send(other, {"type": "subscribe", "symbols": ["SCOM"]})
            await next_of(other, "subscription_confirmed")
            async with open_ws(url, "/ws/market/") as flood:
                seen = []
                with pytest.raises(ConnectionClosed) as closed:
                    for i in range(200):
                        await send(flood, {"type": "ping", "timestamp": i})
                    while True:
                        seen.append(await recv(flood))
                assert close_code(closed.value) == 1008  # protocol.md: a flood that goes on
            codes = [f["data"]["code"] for f in seen if f["type"] == "error"]
            assert codes[:1] == ["rate_limited"]  # the replies before the close all arrive
            assert (await next_of(other, "market_data"))["data"]["symbol"] == "SCOM"
            await alive(other)
        async with open_ws(url, "/ws/market/") as fresh:
            await alive(fresh)


async def test_batch_trades_and_candles_streams(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    with trio.fail_after(15):
        async with open_ws(url, "/ws/market/") as ws:
            symbols = ["SCOM", "KCB", "EQTY"]
            await send(ws, {"type": "subscribe", "symbols": symbols, "batch": True, "trades": True,
                            "candles": True})  # fmt: skip
            await next_of(ws, "subscription_confirmed")
            bulk = (await next_of(ws, "bulk_update"))["data"]
            assert {u["symbol"] for u in bulk["updates"]} <= set(symbols)
            for update in bulk["updates"]:  # seed: items are read for price and changePercent
                check_market_data(update)
            ids: dict[str, int] = {}
            trades = 0
            while trades < 6:
                frame = await recv(ws)
                data = frame["data"]
                if frame["type"] == "trade":
                    trades += 1
                    assert data["side"] in ("buy", "sell") and is_int(data["quantity"])
                    assert is_cents(data["price"]) and is_epoch_ms(data["timestamp"])
                    assert data["id"] > ids.get(data["symbol"], 0)  # none lost or repeated
                    ids[data["symbol"]] = data["id"]
                elif frame["type"] == "candle":
                    assert data["interval"] == "1m" and is_int(data["time"])
                    assert data["low"] <= min(data["open"], data["close"]) <= data["high"]


async def test_many_connections_at_once(start_server: ServerFactory) -> None:
    url, runtime = await start_server()
    everything = sorted(runtime.market.instruments)
    ready = 0

    async def client(i: int, done: trio.Event) -> None:
        nonlocal ready
        mine = [everything[i % len(everything)], everything[(i * 7) % len(everything)]]
        async with open_ws(url, "/ws/market/") as ws:
            await send(ws, {"type": "subscribe", "symbols": mine, "order_book": True})
            assert sorted(
                (await next_of(ws, "subscription_confirmed"))["data"]["symbols"]
            ) == sorted(set(mine))
            check_market_data((await next_of(ws, "market_data"))["data"])
            ready += 1
            await done.wait()

    with trio.fail_after(20):
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(client, i, done)
            while ready < 60:
                await trio.sleep(0.01)
            async with httpx.AsyncClient(base_url=url, timeout=5) as http:
                assert (await rest(http, "/api/health/"))["streams"]["connections"] == 60
                check_stock(await rest(http, "/api/stocks/SCOM/"))
            done.set()
        while runtime.hub.connections:
            await trio.sleep(0.01)


# -- /ws/orderbook/<symbol>/ -----------------------------------------------------------------------


async def test_orderbook_endpoint_seed_sequence_and_depth_clamp(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(ws_max_messages_per_s=1000.0)
    with trio.fail_after(15):
        async with open_ws(url, "/ws/orderbook/scom/") as ws:
            await send(ws, {"depth": 10})  # seed: no type, on open
            book = (await next_of(ws, "order_book", depth=10))["data"]
            assert book["symbol"] == "SCOM" and len(book["bids"]) == len(book["asks"]) == 10
            check_book(book)
            pushed = (await next_of(ws, "order_book"))["data"]  # then pushed as it changes
            assert pushed["seq"] >= book["seq"]
            # seed: clamp to the supported range.
            for depth, clamped in (
                (0, 1),
                (-1, 1),
                (-(10**6), 1),
                (51, 50),
                (10**6, 50),
                (1, 1),
                (50, 50),
            ):
                await send(ws, {"depth": depth})
                book = (await next_of(ws, "order_book", depth=clamped))["data"]
                check_book(book)
                assert 1 <= len(book["bids"]) <= clamped and 1 <= len(book["asks"]) <= clamped
            await send(ws, {"type": "snapshot", "depth": 20})
            check_book((await next_of(ws, "order_book", depth=20))["data"])
            await send(ws, {"type": "ping", "timestamp": 11})
            assert (await next_of(ws, "pong"))["data"]["timestamp"] == 11
            # Wrong types get an error frame (issue 4, item 5) and the book keeps coming.
            for message, code in (
                ({"depth": "10"}, "invalid_depth"),
                ({"depth": None}, "invalid_depth"),
                ({"depth": [10]}, "invalid_depth"),
                ({}, "missing_type"),
                ({"type": "subscribe", "symbols": ["KCB"]}, "unknown_type"),
                ({"type": "unsubscribe", "symbols": ["SCOM"]}, "unknown_type"),
                ("nope", "invalid_json"),
                ("[]", "invalid_message"),
            ):
                await send(ws, message)
                assert (await next_of(ws, "error"))["data"]["code"] == code, message
                assert (await next_of(ws, "order_book"))["data"]["symbol"] == "SCOM"
        async with open_ws(url, "/ws/orderbook/KCB") as ws:  # no trailing slash
            await send(ws, {"depth": 10})
            book = (await next_of(ws, "order_book", depth=10))["data"]
            assert book["symbol"] == "KCB"
            check_book(book)
        async with open_ws(url, "/ws/orderbook/NOPE/") as ws:
            assert (await next_of(ws, "error"))["data"]["code"] == "unknown_symbol"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert close_code(closed.value) == 4004


async def test_orderbook_depth_accepts_integral_json_numbers(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    with trio.fail_after(10):
        async with open_ws(url, "/ws/orderbook/SCOM/") as ws:
            for raw, depth in (('{"depth": 20.0}', 20), ('{"depth": 99999999999999999999}', 50)):
                await send(ws, raw)
                frame = await recv(ws)
                while frame["type"] == "order_book" and frame["data"]["depth"] != depth:
                    frame = await recv(ws)  # pushed books at the previous depth
                assert frame["type"] == "order_book", frame
                assert frame["data"]["depth"] == depth


async def test_orderbook_unknown_long_symbol_gets_4004(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    refused: list[BaseException] = []
    with trio.fail_after(10):
        try:
            async with open_ws(url, "/ws/orderbook/" + "X" * 40 + "/") as ws:
                assert (await next_of(ws, "error"))["data"]["code"] == "unknown_symbol"
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert close_code(closed.value) == 4004
        except* ConnectionRejected as group:
            refused.extend(leaves(group))
    assert not refused, f"handshake refused: {refused}"


# -- sequenced books, REST seq against stream seq --------------------------------------------------


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "asgi"])
async def test_diff_stream_rebuilds_the_book_and_matches_rest_seq(
    start_server: ServerFactory, fast_path: bool
) -> None:
    url, runtime, sim = await quiet_server(start_server, ws_fast_path=fast_path)
    market = runtime.market
    symbols = ["SCOM", "KCB"]
    with trio.fail_after(15):
        async with (
            httpx.AsyncClient(base_url=url, timeout=5) as http,
            open_ws(url, "/ws/market/") as ws,
        ):
            await send(ws, {"type": "subscribe", "symbols": symbols, "order_book": True,
                            "book_mode": "diff"})  # fmt: skip
            await next_of(ws, "subscription_confirmed")
            books: dict[str, Book] = {}
            last: dict[str, int] = {}
            first_update: dict[str, bool] = {}
            latest_md: dict[str, dict[str, Any]] = {}
            for symbol in symbols:
                snap = (await next_of(ws, "order_book", symbol=symbol))["data"]
                check_book(snap)
                assert snap["seq"] == market.books[symbol].seq  # the market is quiet
                books[symbol], last[symbol], first_update[symbol] = book_of(snap), snap["seq"], True
                rest_book = await rest(http, f"/api/stocks/{symbol}/orderbook/?depth=50")
                assert rest_book["seq"] == snap["seq"]  # issue 4: the same counter
                assert top(book_of(rest_book)) == top(books[symbol])
            for _ in range(6):
                sim.step()
                targets = {s: market.books[s].seq for s in symbols}
                with trio.fail_after(5):
                    while any(last[s] < targets[s] for s in symbols):
                        frame = await recv(ws)
                        data = frame["data"]
                        if frame["type"] == "market_data":
                            latest_md[data["symbol"]] = data
                            continue
                        if frame["type"] != "order_book_update":
                            assert frame["type"] != "order_book", "an unasked-for snapshot"
                            continue
                        symbol = data["symbol"]
                        # protocol.md 'Keeping a book in sync': the chain rules.
                        if first_update[symbol]:
                            assert data["prev_seq"] <= last[symbol] < data["seq"], data
                            first_update[symbol] = False
                        else:
                            assert data["prev_seq"] == last[symbol], data
                        bid_prices = [lv["price"] for lv in data["bids"]]
                        ask_prices = [lv["price"] for lv in data["asks"]]
                        assert bid_prices == sorted(bid_prices, reverse=True)
                        assert ask_prices == sorted(ask_prices)
                        for level in data["bids"] + data["asks"]:
                            assert is_cents(level["price"]) and is_int(level["quantity"])
                            assert level["quantity"] >= 0
                        assert is_epoch_ms(data["timestamp"])
                        apply_update(books[symbol], data)
                        last[symbol] = data["seq"]
                for symbol in symbols:
                    assert last[symbol] == targets[symbol]
                    rest_book = await rest(http, f"/api/stocks/{symbol}/orderbook/?depth=50")
                    assert rest_book["seq"] == last[symbol]
                    assert top(books[symbol]) == top(book_of(rest_book)), symbol
            # A snapshot asked for over the socket is the same book at the same seq.
            await send(ws, {"type": "snapshot", "symbols": ["SCOM"]})
            snap = (await next_of(ws, "order_book", symbol="SCOM"))["data"]
            assert snap["seq"] == last["SCOM"] and top(book_of(snap)) == top(books["SCOM"])
            # market_data agrees with the REST stock at the same moment.
            for symbol in symbols:
                md, stock = latest_md[symbol], await rest(http, f"/api/stocks/{symbol}/")
                check_market_data(md)
                assert md["seq"] == last[symbol]
                assert md["price"] == stock["current_price"]
                assert md["changePercent"] == stock["change_percent"]
                for field in (
                    "volume",
                    "high",
                    "low",
                    "change",
                    "bid",
                    "ask",
                    "bid_size",
                    "ask_size",
                ):
                    assert md[field] == stock[field], field


async def test_snapshot_mode_books_carry_the_rest_seq_and_quiet_symbols_stay_quiet(
    start_server: ServerFactory,
) -> None:
    url, runtime, sim = await quiet_server(start_server)
    with trio.fail_after(10):
        async with (
            httpx.AsyncClient(base_url=url, timeout=5) as http,
            open_ws(url, "/ws/market/") as ws,
        ):
            await send(ws, {"type": "subscribe", "symbols": ["SCOM"], "order_book": True})
            book = (await next_of(ws, "order_book", symbol="SCOM"))["data"]
            rest_book = await rest(http, "/api/stocks/SCOM/orderbook/")
            assert rest_book["seq"] == book["seq"] and rest_book["bids"] == book["bids"]
            # Nothing changes: after a few intervals, nothing new was pushed (issue 4: only changes).
            publishes = runtime.hub.publishes
            while runtime.hub.publishes < publishes + 3:
                await trio.sleep(0.01)
            assert all(f["type"] != "order_book" or f["data"]["seq"] == book["seq"]
                       for f in await until_pong(ws, 1))  # fmt: skip
            sim.step()
            seq = runtime.market.books["SCOM"].seq
            pushed = (await next_of(ws, "order_book", symbol="SCOM", seq=seq))["data"]
            rest_book = await rest(http, "/api/stocks/SCOM/orderbook/")
            assert rest_book["seq"] == pushed["seq"] and rest_book["asks"] == pushed["asks"]


async def test_book_mode_diff_alone_streams_the_book(start_server: ServerFactory) -> None:
    url, runtime, sim = await quiet_server(start_server)
    with trio.fail_after(10):
        async with open_ws(url, "/ws/market/") as ws:
            await send(ws, {"type": "subscribe", "symbols": ["SCOM"], "book_mode": "diff"})
            log: list[dict[str, Any]] = []
            # The whole book first (wait for it, so the step below comes after the subscription).
            await wait_seq(ws, "order_book", "SCOM", runtime.market.books["SCOM"].seq, log)
            sim.step()
            await wait_seq(ws, "order_book_update", "SCOM", runtime.market.books["SCOM"].seq, log)
            kinds = [f["type"] for f in log]
            assert "order_book" in kinds and "order_book_update" in kinds, kinds


async def test_switching_to_diff_mode_resnapshots_books_already_streamed(
    start_server: ServerFactory,
) -> None:
    url, runtime, sim = await quiet_server(start_server)
    with trio.fail_after(10):
        async with (
            httpx.AsyncClient(base_url=url, timeout=5) as http,
            open_ws(url, "/ws/market/") as ws,
        ):
            await send(ws, {"type": "subscribe", "symbols": ["SCOM"], "order_book": True})
            first = (await next_of(ws, "order_book", symbol="SCOM"))["data"]
            publishes = runtime.hub.publishes  # let the stream settle, as a live client would
            while runtime.hub.publishes < publishes + 2:
                await trio.sleep(0.01)
            await send(ws, {"type": "subscribe", "symbols": ["KCB"], "book_mode": "diff"})
            await next_of(ws, "subscription_confirmed")
            log: list[dict[str, Any]] = []
            for _ in range(3):
                sim.step()
                await wait_seq(ws, "market_data", "SCOM", runtime.market.books["SCOM"].seq, log)
            log += await until_pong(ws, 1)
            # A client following protocol.md: an order_book replaces its book, updates apply.
            book, seq = book_of(first), first["seq"]
            for frame in log:
                data = frame["data"]
                if data.get("symbol") != "SCOM":
                    continue
                if frame["type"] == "order_book":
                    book, seq = book_of(data), data["seq"]
                elif frame["type"] == "order_book_update":
                    assert data["prev_seq"] <= seq < data["seq"], (data, seq)
                    apply_update(book, data)
                    seq = data["seq"]
            rest_book = await rest(http, "/api/stocks/SCOM/orderbook/?depth=50")
            assert rest_book["seq"] == seq
            assert top(book) == top(book_of(rest_book))
