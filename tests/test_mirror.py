"""An edge's mirror follows the primary's market exactly, whenever it joins: the primary's tap
and an edge's hub joined by a bus kept in memory (the entries and the snapshot hash as Redis
would hold them), no network."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketsrv.market import Market, load_universe
from marketsrv.scale import bus, wire
from marketsrv.scale.edge import EdgeHub, joinable
from marketsrv.scale.mirror import OutOfStep
from marketsrv.scale.primary import Publisher
from marketsrv.settings import Settings
from marketsrv.streams import Hub, frames
from marketsrv.streams.connection import Connection
from marketsrv.streams.frames import frame
from tests.builders import FakeClock, RecordingTransport, simulated_market

UNIVERSE = "test"


class MemoryBus:
    """What Redis holds: the stream (newest last) and the snapshot hash."""

    def __init__(self) -> None:
        self.entries: list[bus.Entry] = []
        self.snapshot: dict[bytes, bytes] = {}

    def take(self, publisher: Publisher) -> list[bus.Entry]:
        new = []
        for fields, snapshot, reset in publisher._waiting:
            if reset:
                self.snapshot.clear()
            self.snapshot.update(snapshot)
            entry = bus.Entry(b"%d-0" % (len(self.entries) + 1),
                              {k.encode(): v for k, v in fields.items()})  # fmt: skip
            self.entries.append(entry)
            new.append(entry)
        publisher._waiting.clear()
        return new

    def join(self) -> bus.Joined:
        return bus.Joined(self.entries[::-1][: wire.JOIN_TAIL], dict(self.snapshot))


def in_step(edge: EdgeHub, market: Market) -> None:
    """Every book of the mirror is the market's, and gives the primary's bytes."""
    for symbol, book in market.books.items():
        mirror = edge.books[symbol]
        assert mirror.seq == book.seq
        assert mirror.levels(None) == book.all_levels()
        now = edge.now_ms
        mine = mirror.book(10, now).payload
        theirs = frame("order_book", frames.order_book(market, symbol, 10, now), now / 1000)
        assert mine == theirs.payload


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), join_at=st.integers(0, 25), later=st.integers(1, 15))
def test_an_edge_joining_at_any_entry_mirrors_every_book(
    seed: int, join_at: int, later: int
) -> None:
    clock = FakeClock()
    market, simulator = simulated_market(seed=seed, clock=clock, takers_per_tick=2)
    hub = Hub(market)
    publisher = Publisher(market, Settings(role="primary", bus_url="redis://x"), UNIVERSE)
    hub.tap = publisher.tap
    redis = MemoryBus()
    edge = EdgeHub(Market(load_universe()))
    for step in range(join_at + later):
        simulator.step()
        clock.advance(100)
        hub.publish()
        new = redis.take(publisher)
        if step == join_at:
            joined = joinable(redis.join(), list(market.instruments), UNIVERSE)
            assert isinstance(joined, tuple), joined
            snapshot, after = joined
            edge.load(snapshot)
            for entry in after:
                edge.apply(wire.parse_entry(entry.fields))
        elif step > join_at:
            for entry in new:
                edge.apply(wire.parse_entry(entry.fields))
        if step >= join_at:
            in_step(edge, market)


def test_an_edge_refuses_what_does_not_follow() -> None:
    market, simulator = simulated_market(seed=3)
    hub = Hub(market)
    publisher = Publisher(market, Settings(role="primary", bus_url="redis://x"), UNIVERSE)
    hub.tap = publisher.tap
    redis = MemoryBus()
    edge = EdgeHub(Market(load_universe()))
    hub.publish()
    redis.take(publisher)
    joined = joinable(redis.join(), list(market.instruments), UNIVERSE)
    assert isinstance(joined, tuple)
    edge.load(joined[0])
    batches = []
    for _ in range(3):
        simulator.step()
        hub.publish()
        batches += [wire.parse_entry(e.fields) for e in redis.take(publisher)]
    with pytest.raises(OutOfStep, match="were lost"):
        edge.apply(batches[1])  # the first was lost
    edge.apply(batches[0])
    stranger = wire.Batch(b"another", batches[1].n, batches[1].now_ms, batches[1].frames)
    with pytest.raises(OutOfStep, match="new epoch"):
        edge.apply(stranger)
    # A wrong universe is named, and a bus with nothing yet too.
    assert "another universe" in str(joinable(redis.join(), list(market.instruments), "other"))
    assert "not published" in str(joinable(bus.Joined([], {}), list(market.instruments), "x"))


def test_the_bus_carries_every_trade_when_clients_come_and_go_on_the_primary() -> None:
    """A client subscribing on the primary must not move the cursor of what the tap sends."""
    market, simulator = simulated_market(seed=5, takers_per_tick=2)
    hub = Hub(market)
    publisher = Publisher(market, Settings(role="primary", bus_url="redis://x"), UNIVERSE)
    hub.tap = publisher.tap
    redis = MemoryBus()
    client = Connection(RecordingTransport())
    for step in range(30):
        simulator.step()
        if step % 3 == 0:
            hub.subscribe(client, ["SCOM"])
        elif step % 3 == 1:
            hub.unsubscribe(client, ["SCOM"])
        hub.publish()
    ids = [
        f.seq
        for entry in redis.take(publisher)
        for symbol, f in wire.parse_entry(entry.fields).frames
        if f.type == "trade" and symbol == "SCOM"
    ]
    assert ids == [t.trade_id for t in market.trades["SCOM"]][-len(ids) :]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no trade left out
