"""The stream protocol in-process: sessions, outboxes and the hub, with no socket.

A `RecordingTransport` stands in for the WebSocket; `flush()` runs the connection's sender once.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from marketsrv.engine import Side, TimeInForce
from marketsrv.market import Market, Simulator
from marketsrv.streams import Hub, HubSettings, Limits
from marketsrv.streams import frames as frames_module
from marketsrv.streams.connection import MAX_PENDING_DIFFS, Connection
from marketsrv.streams.session import Session
from tests.builders import FakeClock, RecordingTransport, make_instrument, simulated_market


class Client:
    """One in-process connection: say something, then read what the sender would write."""

    def __init__(self, hub: Hub, symbol: str | None = None, limits: Limits | None = None) -> None:
        self.transport = RecordingTransport()
        self.conn = Connection(
            self.transport, market_data=symbol is None, book_snapshot=hub.book_snapshot
        )
        hub.register(self.conn)
        if symbol is not None:
            hub.subscribe(self.conn, [symbol])
        self.session = Session(hub, self.conn, limits or Limits(), symbol)

    def say(self, message: Any) -> None:
        self.session.receive(
            text=message if isinstance(message, str) else orjson.dumps(message).decode()
        )

    async def flush(self) -> list[dict[str, Any]]:
        batch = self.conn.take()
        if batch:
            await self.transport.send(batch)
        if self.conn.closing:
            await self.transport.close(*self.conn.closing)
        return self.transport.take()


@pytest.fixture
def market() -> tuple[Market, Simulator, FakeClock]:
    clock = FakeClock()
    market, sim = simulated_market(seed=21, steps=10, clock=clock)
    return market, sim, clock


@pytest.fixture
def hub(market: tuple[Market, Simulator, FakeClock]) -> Hub:
    return Hub(market[0])


def types(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def errors(frames: list[dict[str, Any]]) -> list[str]:
    return [f["data"]["code"] for f in frames if f["type"] == "error"]


async def test_subscribe_confirms_the_union_and_sends_snapshots(hub: Hub) -> None:
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM", "KCB"], "order_book": True})
    out = await client.flush()
    assert out[0] == {
        "type": "subscription_confirmed",
        "data": {"symbols": ["KCB", "SCOM"]},
        "ts": out[0]["ts"],
    }
    assert sorted(f["data"]["symbol"] for f in out if f["type"] == "market_data") == ["KCB", "SCOM"]
    books = [f["data"] for f in out if f["type"] == "order_book"]
    assert len(books) == 2 and all(len(b["bids"]) == 10 and len(b["asks"]) == 10 for b in books)
    client.say({"type": "subscribe", "symbols": ["eqty", "SCOM"]})  # a union, idempotent
    out = await client.flush()
    assert out[0]["data"]["symbols"] == ["EQTY", "KCB", "SCOM"]
    md = next(f["data"] for f in out if f["type"] == "market_data")
    for field in ("price", "volume", "high", "low", "change", "changePercent", "bid", "ask"):
        assert isinstance(md[field], (int, float)), field
    assert isinstance(md["timestamp"], int) and isinstance(md["bid_size"], int)


async def test_unknown_symbols_error_but_known_ones_subscribe(hub: Hub) -> None:
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM", "NOPE", "ZZZ"]})
    out = await client.flush()
    assert out[0]["data"]["symbols"] == ["SCOM"]
    error = next(f["data"] for f in out if f["type"] == "error")
    assert error["code"] == "unknown_symbols" and error["symbols"] == ["NOPE", "ZZZ"]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ({"symbols": ["SCOM"]}, "missing_type"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": "subscribe", "symbols": "SCOM"}, "invalid_symbols"),
        ({"type": "subscribe", "symbols": [1]}, "invalid_symbols"),
        ({"type": "subscribe", "symbols": ["SCOM"], "order_book": "yes"}, "invalid_field"),
        ({"type": "subscribe", "symbols": ["SCOM"], "depth": "ten"}, "invalid_depth"),
        ({"type": "subscribe", "symbols": ["SCOM"], "book_mode": "fast"}, "invalid_field"),
        ({"type": "unsubscribe"}, "invalid_symbols"),
    ],
)
async def test_bad_messages_get_error_frames_and_change_nothing(
    hub: Hub, message: Any, code: str
) -> None:
    client = Client(hub)
    client.say(message)
    assert errors(await client.flush()) == [code]
    assert client.conn.symbols == set() and client.conn.closing is None


async def test_binary_frames_are_refused(hub: Hub) -> None:
    client = Client(hub)
    client.session.receive(data=b"\x00\x01")
    assert errors(await client.flush()) == ["binary_not_supported"]


async def test_symbol_limit_refuses_the_whole_request(hub: Hub) -> None:
    client = Client(hub, limits=Limits(max_symbols=2))
    client.say({"type": "subscribe", "symbols": ["SCOM", "KCB"]})
    await client.flush()
    client.say({"type": "subscribe", "symbols": ["EQTY"]})
    assert errors(await client.flush()) == ["too_many_symbols"]
    assert client.conn.symbols == {"SCOM", "KCB"}


async def test_unsubscribe_stops_a_symbol(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    _, sim, _ = market
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM", "KCB"], "order_book": True})
    await client.flush()
    client.say({"type": "unsubscribe", "symbols": ["KCB", "NOPE"]})
    out = await client.flush()
    assert out[0]["type"] == "subscription_confirmed" and out[0]["data"]["symbols"] == ["SCOM"]
    for _ in range(3):
        sim.step()
        hub.publish()
        out = await client.flush()
        assert {f["data"]["symbol"] for f in out} == {"SCOM"}


async def test_ping_pong_and_snapshot(hub: Hub) -> None:
    client = Client(hub)
    client.say({"type": "ping", "timestamp": 12345})
    pong = (await client.flush())[0]
    assert pong["type"] == "pong" and pong["data"]["timestamp"] == 12345
    client.say({"type": "snapshot", "symbols": ["KCB", "NOPE"], "depth": 3})
    out = await client.flush()
    assert errors(out) == ["unknown_symbols"]
    book = next(f["data"] for f in out if f["type"] == "order_book")
    assert book["symbol"] == "KCB" and len(book["bids"]) == 3


async def test_publish_sends_only_what_changed_and_conflates(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    m, sim, _ = market
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM"], "order_book": True, "depth": 5})
    await client.flush()
    hub.publish()
    hub.publish()  # nothing changed in between
    out = await client.flush()
    assert types(out).count("market_data") <= 1
    for _ in range(3):  # three intervals while the client does not drain: only the latest stays
        sim.step()
        hub.publish()
    out = await client.flush()
    assert types(out) == ["market_data", "order_book"]
    assert out[1]["data"]["seq"] == m.books["SCOM"].seq and len(out[1]["data"]["bids"]) == 5


async def test_orderbook_endpoint_depth_request(hub: Hub) -> None:
    client = Client(hub, symbol="SCOM")
    client.say({"depth": 100})  # type-less, clamped to 50
    book = (await client.flush())[0]
    assert book["type"] == "order_book" and book["data"]["symbol"] == "SCOM"
    assert len(book["data"]["bids"]) == 12  # the whole simulated ladder, under 50
    client.say({"type": "snapshot", "depth": 2})
    assert len((await client.flush())[0]["data"]["asks"]) == 2
    client.say({"type": "subscribe", "symbols": ["KCB"]})
    assert errors(await client.flush()) == ["unknown_type"]


def apply(book: dict[str, dict[float, int]], update: dict[str, Any]) -> None:
    for side in ("bids", "asks"):
        for level in update[side]:
            if level["quantity"]:
                book[side][level["price"]] = level["quantity"]
            else:
                book[side].pop(level["price"], None)


def as_book(snapshot: dict[str, Any]) -> dict[str, dict[float, int]]:
    return {
        side: {lv["price"]: lv["quantity"] for lv in snapshot[side]} for side in ("bids", "asks")
    }


class LocalBook:
    """A diff-mode client's book: a snapshot, then updates whose sequence must chain."""

    def __init__(self) -> None:
        self.levels: dict[str, dict[float, int]] | None = None
        self.seq = -1

    def read(self, frames: list[dict[str, Any]]) -> None:
        for f in frames:
            if f["type"] == "order_book":
                self.levels, self.seq = as_book(f["data"]), f["data"]["seq"]
            elif f["type"] == "order_book_update":
                u = f["data"]
                assert self.levels is not None, "an update before any snapshot"
                assert u["prev_seq"] <= self.seq < u["seq"], (u["prev_seq"], self.seq)
                apply(self.levels, u)
                self.seq = u["seq"]


async def test_diff_mode_snapshot_plus_updates_equals_the_book(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    m, sim, _ = market
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM"], "order_book": True, "book_mode": "diff"})
    local = LocalBook()
    local.read(await client.flush())
    for step in range(40):
        sim.step()
        # A user's order far from the ladder: levels the simulator never quotes change too.
        ask = m.books["SCOM"].best_ask() or 1000
        m.submit("SCOM", Side.SELL, 100, ask + 20 + step % 7, owner="u")
        hub.publish()
        local.read(await client.flush())
    full = orjson.loads(hub.book_snapshot("SCOM", None).payload)["data"]
    assert local.levels == as_book(full) and local.seq == m.books["SCOM"].seq


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "cancel", "take", "publish"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(95, 105),
        st.integers(1, 5),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(before=OPS, after=OPS)
async def test_property_snapshot_plus_diffs_is_a_later_snapshot(
    before: list[tuple[str, Side, int, int]], after: list[tuple[str, Side, int, int]]
) -> None:
    market = Market([make_instrument("TEST", price="5.00", tick="0.05")], clock=FakeClock())
    hub = Hub(market)
    live: list[int] = []

    def run(ops: list[tuple[str, Side, int, int]]) -> None:
        for kind, side, price, qty in ops:
            if kind == "add":
                result = market.submit("TEST", side, qty, price, owner=f"o{price % 3}")
                if result.resting:
                    live.append(result.order_id)
            elif kind == "cancel" and live:
                market.cancel("TEST", live.pop(price % len(live)))
            elif kind == "take":
                market.submit("TEST", side, qty * 3, None, TimeInForce.IOC)
            elif kind == "publish":
                hub.publish()

    run(before)  # history before the client arrives, diffs already taken
    hub.publish()
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["TEST"], "order_book": True, "book_mode": "diff"})
    run(before[: len(before) // 2])  # changes between the snapshot request and its delivery
    local = LocalBook()
    local.read(await client.flush())
    run(after)
    hub.publish()
    local.read(await client.flush())
    full = orjson.loads(hub.book_snapshot("TEST", None).payload)["data"]
    assert local.levels == as_book(full) and local.seq == market.books["TEST"].seq


async def test_a_diff_client_too_far_behind_gets_one_fresh_snapshot(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    m, sim, _ = market
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM"], "order_book": True, "book_mode": "diff"})
    await client.flush()
    for _ in range(MAX_PENDING_DIFFS + 5):
        sim.step()
        hub.publish()
    out = [f for f in await client.flush() if f["data"].get("symbol") == "SCOM"]
    books = [f for f in out if f["type"].startswith("order_book")]
    assert types(books) == ["order_book"] and books[0]["data"]["seq"] == m.books["SCOM"].seq


async def test_trades_candles_and_bulk_updates(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    m, sim, _ = market
    client = Client(hub)
    client.say(
        {
            "type": "subscribe",
            "symbols": ["SCOM", "KCB", "EQTY"],
            "trades": True,
            "candles": True,
            "batch": True,
        }
    )
    await client.flush()
    subscribed_after = m.trades["SCOM"][-1].trade_id if m.trades["SCOM"] else 0
    seen_ids: list[int] = []
    for _ in range(30):
        sim.step()
        hub.publish()
        for f in await client.flush():
            if f["type"] == "trade" and f["data"]["symbol"] == "SCOM":
                seen_ids.append(f["data"]["id"])
            elif f["type"] == "bulk_update":
                assert {u["symbol"] for u in f["data"]["updates"]} <= {"SCOM", "KCB", "EQTY"}
            elif f["type"] == "candle":
                assert f["data"]["interval"] == "1m" and f["data"]["volume"] > 0
    assert seen_ids
    scom_trades = [t.trade_id for t in m.trades["SCOM"] if t.trade_id > subscribed_after]
    assert seen_ids == scom_trades  # every trade since the subscription, in order, none twice


async def test_a_first_trade_subscriber_gets_no_backlog_and_is_not_closed() -> None:
    """Six symbols nobody watched, each with its whole history of 1,000 trades kept: the first
    subscriber to their trades receives only what trades after it subscribed."""
    m, sim = simulated_market(seed=5, steps=250, takers_per_tick=5)
    hub = Hub(m)
    symbols = ["SCOM", "KCB", "EQTY", "EABL", "COOP", "ABSA"]
    assert all(len(m.trades[s]) == 1000 for s in symbols)
    before = {s: m.trades[s][-1].trade_id for s in symbols}
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": symbols, "trades": True})
    await client.flush()
    seen: list[dict[str, Any]] = []
    for _ in range(5):
        sim.step()
        hub.publish()
        seen += [f["data"] for f in await client.flush() if f["type"] == "trade"]
    assert client.conn.closing is None
    assert seen and all(t["id"] > before[t["symbol"]] for t in seen)


async def test_replies_survive_while_data_is_conflated(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    _, sim, _ = market
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM"]})
    for i in range(5):
        client.say({"type": "ping", "timestamp": i})
        sim.step()
        hub.publish()
    out = await client.flush()
    assert [f["data"]["timestamp"] for f in out if f["type"] == "pong"] == [0, 1, 2, 3, 4]
    assert types(out).count("market_data") == 1


async def test_a_flood_is_rate_limited_then_closed(
    hub: Hub, autojump_clock: trio.testing.MockClock
) -> None:
    client = Client(hub, limits=Limits(max_messages_per_s=5))
    for i in range(10):  # the burst allowance
        client.say({"type": "ping", "timestamp": i})
    client.say({"type": "ping", "timestamp": 99})
    out = await client.flush()
    assert types(out).count("pong") == 10 and errors(out) == ["rate_limited"]
    await trio.sleep(1)  # the bucket refills: polite clients are served again
    client.say({"type": "ping", "timestamp": 100})
    assert types(await client.flush()) == ["pong"]
    for i in range(30):
        client.say({"type": "ping", "timestamp": i})
    await client.flush()
    assert client.transport.closed is not None and client.transport.closed[0] == 1008


async def test_watchdog_closes_a_stuck_client_then_drops_it(
    market: tuple[Market, Simulator, FakeClock], autojump_clock: trio.testing.MockClock
) -> None:
    hub = Hub(market[0], HubSettings(slow_client_timeout_s=2))
    stuck, healthy = Client(hub), Client(hub)
    stuck.conn.inflight_since = trio.current_time()  # as if a write never returned
    async with trio.open_nursery() as nursery:
        await trio.sleep(1)
        hub.watch(nursery)
        assert stuck.conn.closing is None
        await trio.sleep(1.5)
        hub.watch(nursery)
        assert stuck.conn.closing == (4008, "slow consumer: fell more than 2 s behind")
        assert healthy.conn.closing is None
        await trio.sleep(2.5)
        hub.watch(nursery)
    assert stuck.transport.aborted and stuck.conn not in hub.connections
    assert healthy.conn in hub.connections and hub.slow_closed == 1


async def test_a_write_cut_by_the_socket_closing_is_no_error(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """hypercorn closing the socket of a client that hung up, under a batched write, makes the
    write fail as busy: that is a client gone, not a server error to log."""
    from marketsrv.streams.endpoint import run_sender

    class HungUp(RecordingTransport):
        async def send(self, frames: Any) -> None:
            raise trio.BusyResourceError("another task is currently sending data")

    conn = Connection(HungUp(), book_snapshot=hub.book_snapshot)
    conn.reply(frames_module.error_frame(0.0, "x", "y"))
    async with trio.open_nursery() as nursery:
        await run_sender(conn, nursery, Limits().close_timeout_s)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_frames_are_stamped_by_the_markets_clock(
    hub: Hub, market: tuple[Market, Simulator, FakeClock]
) -> None:
    _, sim, clock = market
    client = Client(hub)
    client.say({"type": "subscribe", "symbols": ["SCOM"], "order_book": True})
    client.say({"type": "ping", "timestamp": 1})
    client.say({"type": "nonsense"})
    sim.step()
    hub.publish()
    out = await client.flush()
    assert {"subscription_confirmed", "pong", "error", "market_data", "order_book"} <= set(
        types(out)
    )
    assert {f["ts"] for f in out} == {clock.now / 1000}


async def test_a_refused_connection_ignores_what_its_client_says(hub: Hub) -> None:
    """/ws/orderbook/NOPE/ is refused (4004); the seed client's opening {"depth": 5} on it must
    not reach a session for a symbol that does not exist."""
    conn = Connection(RecordingTransport(), market_data=False, book_snapshot=hub.book_snapshot)
    conn.close(4004, "unknown symbol")
    session = Session(hub, conn, Limits(), "NOPE")
    session.receive(text='{"depth": 5}')
    session.receive(text='{"type": "snapshot"}')
    assert conn.take() == []


def test_rest_and_stream_render_one_quote(market: tuple[Market, Simulator, FakeClock]) -> None:
    """A drift guard: REST's stock and the stream's market_data say the same of one moment."""
    from marketsrv.api.stocks import stock_view

    m, _, _ = market
    for symbol in ("SCOM", "KCB"):
        rest = stock_view(m, symbol).model_dump()
        stream = frames_module.market_data(m, symbol, m.clock())
        assert rest["current_price"] == stream["price"]
        assert rest["change_percent"] == stream["changePercent"]
        for key in ("volume", "high", "low", "open", "previous_close", "change", "bid", "ask",
                    "bid_size", "ask_size", "trades"):  # fmt: skip
            assert rest[key] == stream[key], key
