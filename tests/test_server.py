"""A real hypercorn on 127.0.0.1 port 0 with the simulator running: the market is live over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from marketsrv.runtime import Runtime


async def poll_until(http: httpx.AsyncClient, path: str, done: Any, limit_s: float = 10) -> Any:
    """GET `path` until `done(body)` holds; fails the test after `limit_s` seconds."""
    with trio.fail_after(limit_s):
        while True:
            body = (await http.get(path)).json()
            if done(body):
                return body
            await trio.sleep(0.02)


async def test_live_market_moves(http: httpx.AsyncClient, live_server: tuple[str, Runtime]) -> None:
    url, runtime = live_server
    assert url.startswith("http://127.0.0.1:")
    stocks = (await http.get("/api/stocks/", params={"page_size": 100})).json()
    assert stocks["count"] >= 20

    first = (await http.get("/api/stocks/SCOM/orderbook/", params={"depth": 10})).json()
    assert len(first["bids"]) == 10 and len(first["asks"]) == 10
    assert first["bids"][0]["price"] < first["asks"][0]["price"]
    later = await poll_until(
        http, "/api/stocks/SCOM/orderbook/?depth=10", lambda b: b["seq"] > first["seq"]
    )
    assert later["seq"] > first["seq"]

    # Volume and price come only from trades: wait for the first few.
    traded = await poll_until(http, "/api/stocks/SCOM/", lambda b: b["volume"] > 0)
    assert traded["trades"] > 0 and traded["high"] >= traded["low"] > 0
    trades = await poll_until(http, "/api/stocks/SCOM/trades/?limit=5", lambda b: b["trades"])
    assert trades["trades"][0]["price"] > 0
    candles = (await http.get("/api/stocks/SCOM/candles/")).json()
    assert candles["candles"] and candles["candles"][-1]["volume"] > 0
    health = (await http.get("/api/health")).json()
    assert health["status"] == "ok" and health["simulator"]["running"]
    assert runtime.simulator is not None and runtime.simulator.ticks > 0


async def test_errors_over_the_wire_are_json(http: httpx.AsyncClient) -> None:
    bad = await http.post("/api/stocks/batch/", content=b"\xff\xfe not json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_json"
    missing = await http.get("/api/stocks/NOPE/")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_symbol"
    huge = await http.post("/api/stocks/batch/", content=b"[" + b"1," * 100_000 + b"1]")
    assert huge.status_code == 413 and huge.json()["code"] == "body_too_large"
    assert (await http.get("/api/health/")).status_code == 200  # and the server lives on
