"""`/ws/user/` over a real server with trio-websocket clients: authentication and its close codes,
a user's own events pushed as they commit (and no one else's), resume after a reconnect with
exactly the missed events in order, resync when they are no longer kept, and logout closing it."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tests.builders import ServerFactory, next_of, open_ws, register, send


async def frames_until(
    ws: WebSocketConnection, done: Any, limit_s: float = 10
) -> list[dict[str, Any]]:
    """Frames until `done(frames)` says enough."""
    got: list[dict[str, Any]] = []
    with trio.fail_after(limit_s):
        while not done(got):
            got.append(orjson.loads(await ws.get_message()))
    return got


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


@pytest.fixture
async def server(start_server: ServerFactory) -> str:
    url, _ = await start_server(seed=12, simulate=False)  # a still market: only users trade
    return url


async def test_events_are_pushed_to_the_user_s_sockets_and_no_one_else_s(
    start_server: ServerFactory,
) -> None:
    url, runtime = await start_server(seed=12)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        alice = await register(http, "alice", cash=100_000)
        bob = await register(http, "bob", cash=100_000)
        async with (
            open_ws(url, f"/ws/user/?token={token_of(alice)}") as a1,
            open_ws(url, "/ws/user/") as a2,
            open_ws(url, f"/ws/user/?token={token_of(bob)}") as b,
        ):
            await send(a2, {"type": "auth", "token": token_of(alice)})
            ready = [await next_of(ws, "ready") for ws in (a1, a2, b)]
            assert ready[0]["data"]["user"]["username"] == "alice"
            assert ready[0]["data"]["seq"] == ready[1]["data"]["seq"] >= 1  # the deposit
            body = {"symbol": "SCOM", "side": "buy", "quantity": 100, "order_type": "market"}
            answer = await http.post("/api/trading/orders/", json=body, headers=alice)
            assert answer.status_code == 201 and answer.json()["status"] == "executed"
            wallet = (await http.get("/api/trading/wallet/", headers=alice)).json()
            order_id = answer.json()["id"]
            shown = (await http.get(f"/api/trading/orders/{order_id}/", headers=alice)).json()

            def finished(got: list[dict[str, Any]]) -> bool:
                return any(f["type"] == "holding" for f in got)

            for ws in (a1, a2):
                got = await frames_until(ws, finished)
                kinds = [f["type"] for f in got]
                assert kinds[0] == "order.accepted" and "fill" in kinds, kinds
                assert kinds.index("order.filled") > kinds.index("fill")
                seqs = [f["seq"] for f in got]
                assert seqs == list(range(ready[0]["data"]["seq"] + 1, seqs[-1] + 1))
                # Made from the facts the outbox keeps, the event is the order as REST shows it.
                assert [f["data"] for f in got if f["type"] == "order.filled"] == [shown]
                last_wallet = [f for f in got if f["type"] == "wallet"][-1]["data"]
                assert last_wallet == {k: wallet[k] for k in ("balance", "available", "held")}
                holding = got[-1]["data"]
                assert holding["symbol"] == "SCOM" and holding["quantity"] == 100
            # Bob's socket heard nothing of it: the next thing it gets is its own pong.
            await send(b, {"type": "ping", "timestamp": 7})
            assert orjson.loads(await b.get_message())["type"] == "pong"
    assert runtime.relay is not None and runtime.relay.delivered > 0


async def test_a_resumed_stream_gets_exactly_the_missed_events_in_order(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        carol = await register(http, "carol", cash=100_000)
        token = token_of(carol)
        async with open_ws(server, f"/ws/user/?token={token}") as ws:
            last = (await next_of(ws, "ready"))["data"]["seq"]
        # Offline: three resting orders and a cancel, over REST.
        ids = []
        for price in ("26.00", "26.50", "27.00"):
            body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": price}
            ids.append((await http.post("/api/trading/orders/", json=body, headers=carol)).json())
        await http.delete(f"/api/trading/orders/{ids[0]['id']}/", headers=carol)
        async with open_ws(server, f"/ws/user/?token={token}") as ws:
            now = (await next_of(ws, "ready"))["data"]["seq"]
            assert now > last
            await send(ws, {"type": "resume", "after": last})
            missed = await frames_until(ws, lambda got: len(got) == now - last)
            assert [f["seq"] for f in missed] == list(range(last + 1, now + 1))
            kinds = [f["type"] for f in missed]
            assert kinds.count("order.accepted") == 3 and kinds.count("order.cancelled") == 1
            assert kinds[-2:] == ["order.cancelled", "wallet"]  # the hold released
            # Then live again, from the next number on.
            body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": "26.10"}
            await http.post("/api/trading/orders/", json=body, headers=carol)
            live = await next_of(ws, "order.accepted")
            assert live["seq"] == now + 1
        # The same from the query string, before anything is sent live.
        async with open_ws(server, f"/ws/user/?token={token}&after={now}") as ws:
            await next_of(ws, "ready")
            first = orjson.loads(await ws.get_message())
            assert first["seq"] == now + 1 and first["type"] == "order.accepted"


async def test_a_resume_past_what_is_kept_says_resync_required(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(seed=12, simulate=False, user_stream_max_resume=3)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        dave = await register(http, "dave", cash=100_000)
        for price in ("26.00", "26.50"):
            body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": price}
            await http.post("/api/trading/orders/", json=body, headers=dave)
        async with open_ws(url, f"/ws/user/?token={token_of(dave)}") as ws:
            latest = (await next_of(ws, "ready"))["data"]["seq"]
            await send(ws, {"type": "resume", "after": 0})
            resync = await next_of(ws, "resync_required")
            assert resync["data"]["seq"] == latest and resync["data"]["after"] == 0
            await send(ws, {"type": "resume", "after": latest + 5})
            error = await next_of(ws, "error")
            assert error["data"]["code"] == "invalid_after"
            for bad in ({"type": "resume"}, {"type": "resume", "after": -1}, {"type": "nope"}):
                await send(ws, bad)
                assert (await next_of(ws, "error"))["data"]["code"] in (
                    "invalid_after", "unknown_type",
                )  # fmt: skip
            await send(ws, "{not json")
            assert (await next_of(ws, "error"))["data"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("path", "first", "code"),
    [
        ("/ws/user/", {"type": "subscribe"}, 4001),
        ("/ws/user/", {"type": "auth"}, 4001),
        ("/ws/user/", {"type": "auth", "token": "not-a-token"}, 4002),
        ("/ws/user/?token=not-a-token", None, 4002),
    ],
)
async def test_no_token_is_4001_and_a_bad_one_4002(
    server: str, path: str, first: Any, code: int
) -> None:
    async with open_ws(server, path) as ws:
        if first is not None:
            await send(ws, first)
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
        assert closed.value.reason.code == code


async def test_logout_closes_the_sockets_opened_with_that_token(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        erin = await register(http, "erin", cash=10)
        login = await http.post(
            "/api/accounts/login/", json={"username": "erin", "password": "pw-secret"}
        )
        other = login.json()["token"]
        async with (
            open_ws(server, f"/ws/user/?token={token_of(erin)}") as ws,
            open_ws(server, f"/ws/user/?token={other}") as stays,
        ):
            await next_of(ws, "ready")
            await next_of(stays, "ready")
            await http.post("/api/accounts/logout/", headers=erin)
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 4002
            await send(stays, {"type": "ping"})
            assert (await next_of(stays, "pong"))["type"] == "pong"


async def test_a_fill_by_a_simulated_taker_is_pushed(start_server: ServerFactory) -> None:
    url, _ = await start_server(seed=12, takers_per_tick=3.0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        fay = await register(http, "fay", cash=1_000_000)
        async with open_ws(url, f"/ws/user/?token={token_of(fay)}") as ws:
            await next_of(ws, "ready")
            bid = (await http.get("/api/stocks/SCOM/")).json()["bid"]
            body = {"symbol": "SCOM", "side": "buy", "quantity": 100, "price": bid}
            order = (await http.post("/api/trading/orders/", json=body, headers=fay)).json()
            assert order["status"] == "pending"  # at the best bid: simulated takers sell into it
            fill = await next_of(ws, "fill", limit_s=60)
            assert fill["data"]["order_id"] == order["id"]


def test_the_access_log_never_shows_a_token() -> None:
    from marketsrv.api.access_log import _redact

    assert _redact("token=abc&after=3") == "token=[redacted]&after=3"
    assert _redact("after=3&TOKEN=abc") == "after=3&TOKEN=[redacted]"
    assert _redact("page=2") == "page=2"


async def test_a_flood_is_closed_like_on_the_market_streams(start_server: ServerFactory) -> None:
    url, _ = await start_server(seed=12, simulate=False, ws_max_messages_per_s=5)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        gil = await register(http, "gil")
    async with open_ws(url, f"/ws/user/?token={token_of(gil)}") as ws:
        await next_of(ws, "ready")
        with trio.fail_after(20), pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):  # sent at once, then read: the flood, as on /ws/market/
                await send(ws, {"type": "ping"})
            while True:
                await ws.get_message()
        assert closed.value.reason.code == 1008


async def test_after_every_event_is_pruned_ready_still_knows_the_last_number(
    start_server: ServerFactory,
) -> None:
    url, runtime = await start_server(seed=12, simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        hal = await register(http, "hal", cash=100)
        db = runtime.trading().store.db
        await trio.to_thread.run_sync(
            db.write,
            lambda c: c.execute("DELETE FROM outbox"),  # as the retention prune does
        )
        async with open_ws(url, f"/ws/user/?token={token_of(hal)}&after=0") as ws:
            ready = await next_of(ws, "ready")
            assert ready["data"]["seq"] >= 1  # the deposit, though its row is gone
            resync = orjson.loads(await ws.get_message())
            assert resync["type"] == "resync_required"
