"""A market that remembers, over real server processes: a restart after SIGTERM and after
`kill -9` resumes the same prices, trades, candles and previous close, and a user's resting order
is neither filled nor moved; a new database starts with a year of history."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.builders import check_invariants, register, server_process

FLAGS = ("--seed", "21", "--history-days", "5", "--history-minute-days", "1",
         "--demo-user", "off")  # fmt: skip


async def market_view(http: httpx.AsyncClient) -> dict[str, Any]:
    stock = (await http.get("/api/stocks/SCOM/")).json()
    trades = (await http.get("/api/stocks/SCOM/trades/?limit=1000")).json()["trades"]
    candles = (await http.get("/api/stocks/SCOM/candles/?limit=1440")).json()["candles"]
    return {"stock": stock, "trades": trades, "candles": candles}


async def saves(http: httpx.AsyncClient) -> int:
    return int((await http.get("/api/health/")).json()["memory"]["saves"])


async def trade_a_while(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Until SCOM has traded: a resting buy 5% under the market, then the market as served."""
    with trio.fail_after(30):
        while not (await http.get("/api/stocks/SCOM/trades/")).json()["trades"]:
            await trio.sleep(0.05)
    bid = (await http.get("/api/stocks/SCOM/")).json()["bid"]
    body = {"symbol": "SCOM", "side": "buy", "quantity": 100, "price": round(bid * 0.95, 2)}
    order = await http.post("/api/trading/orders/", json=body, headers=headers)
    assert order.status_code == 201 and order.json()["status"] == "pending", order.text
    return order.json()


def assert_resumed(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["stock"]["previous_close"] == before["stock"]["previous_close"]
    newest = {t["id"]: t for t in after["trades"]}
    assert all(newest.get(t["id"]) == t for t in before["trades"]), "a trade was lost"
    assert after["stock"]["current_price"] == after["trades"][0]["price"]
    again = {c["time"]: c for c in after["candles"]}
    # The newest 1440 minutes: a minute begun since `before` pushes its oldest out of `after`.
    oldest = after["candles"][0]["time"]
    kept = [c for c in before["candles"][:-1] if c["time"] >= oldest]  # the last may have grown
    assert len(kept) >= len(before["candles"]) - 5
    for candle in kept:
        assert again.get(candle["time"]) == candle, candle


async def test_a_restart_after_sigterm_and_after_kill_9_resumes_the_market(
    isolated_database: Path,
) -> None:
    async with server_process(*FLAGS) as (proc, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            headers = await register(http, "keeper", cash=1_000_000)
            order = await trade_a_while(http, headers)
            before = await market_view(http)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            await proc.wait()

    # Restarted without the simulator, so nothing moves what was restored.
    async with server_process(*FLAGS, "--no-simulate") as (proc, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            after = await market_view(http)
            assert_resumed(before, after)
            # SIGTERM saved everything, up to the last trade before the stop.
            assert after["trades"][0]["id"] >= before["trades"][0]["id"]
            again = (await http.get(f"/api/trading/orders/{order['id']}/", headers=headers)).json()
            assert (again["status"], again["price"], again["filled_quantity"]) == (
                "pending", order["price"], 0,
            )  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            await proc.wait()

    async with server_process(*FLAGS) as (proc, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            with trio.fail_after(30):
                while len((await http.get("/api/stocks/SCOM/trades/")).json()["trades"]) < 5:
                    await trio.sleep(0.05)
            before = await market_view(http)
            first = await saves(http)
            with trio.fail_after(30):  # two saves after the view: it is on disk
                while await saves(http) < first + 2:
                    await trio.sleep(0.05)
        proc.kill()
        await proc.wait()

    async with (
        server_process(*FLAGS, "--no-simulate") as (proc, url),
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        assert_resumed(before, await market_view(http))
        again = (await http.get(f"/api/trading/orders/{order['id']}/", headers=headers)).json()
        assert again["status"] in ("pending", "partially_filled", "executed")
    check_invariants(isolated_database)


async def test_a_new_database_has_a_year_of_daily_bars_ending_at_the_reference(
    tmp_path: Path,
) -> None:
    years = []
    for name in ("one.db", "two.db"):
        flags = ("--seed", "8", "--no-simulate", "--database", str(tmp_path / name))
        async with server_process(*flags) as (proc, url):
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                bars = (await http.get("/api/stocks/SCOM/candles/?interval=1d&limit=365")).json()
                weeks = (await http.get("/api/stocks/SCOM/candles/?interval=1w&limit=60")).json()
                minutes = (await http.get("/api/stocks/SCOM/candles/?limit=100")).json()
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        candles = bars["candles"]
        assert len(candles) == 365 and candles[-1]["close"] == 28.5
        assert all(a["time"] < b["time"] for a, b in itertools.pairwise(candles))
        assert 52 <= len(weeks["candles"]) <= 54 and len(minutes["candles"]) == 100
        years.append(candles)
    assert years[0] == years[1]  # the same seed, the same history
