"""Tests of the order book: one unit test per behaviour, then properties against a reference model.

The reference model (`Model`) is a deliberately naive list of orders that sorts the crossing
orders afresh for every submit, so price-time priority, FOK and self-trade prevention are checked
against an independent implementation rather than against the engine itself.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import marketsrv.engine
from marketsrv.engine import (
    OrderBook,
    OrderRejected,
    OrderResult,
    RestingOrder,
    Side,
    TimeInForce,
    Trade,
)
from marketsrv.engine import book as book_module
from marketsrv.engine.levels import new_trade as _new_trade

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK


def make_book(
    *orders: tuple[int, Side, int, int] | tuple[int, Side, int, int, str], match: bool = True
) -> OrderBook:
    """A book with a fixed clock holding the given resting (order_id, side, qty, price[, owner]),
    in arrival order; `match=False` rests them in a call phase, where they may cross."""
    book = OrderBook("TEST", clock=lambda: 1_000)
    for order_id, side, qty, price, *owner in orders:
        result = book.submit(
            order_id, side, qty, price, owner=owner[0] if owner else None, match=match
        )
        assert (result.resting, result.trades) == (qty, []), "builder orders must not trade"
    return book


def fills(result: OrderResult) -> list[tuple[int, int, int]]:
    return [(t.maker_order_id, t.price, t.quantity) for t in result.trades]


# ---- unit tests ---------------------------------------------------------------------------------


def test_public_surface() -> None:
    assert set(marketsrv.engine.__all__) == {
        "OrderBook", "Side", "OrderType", "TimeInForce", "Trade", "OrderResult",
        "RestingOrder", "BookDiff", "OrderRejected",
    }  # fmt: skip
    for name in marketsrv.engine.__all__:
        assert getattr(marketsrv.engine, name) is not None


def test_limit_order_rests_without_crossing() -> None:
    book = make_book((1, BUY, 10, 99), (2, SELL, 5, 101))
    assert (book.best_bid(), book.best_ask(), len(book), book.seq) == (99, 101, 2, 2)
    assert book.get(1) == RestingOrder(1, BUY, 99, 10, None)
    assert book.get(3) is None
    assert book.level_quantity(BUY, 99) == 10 and book.level_quantity(SELL, 99) == 0


def test_partial_fill_of_taker_rests_the_rest_at_its_limit() -> None:
    book = make_book((1, SELL, 5, 101), (2, SELL, 5, 102))
    result = book.submit(3, BUY, 12, 102)
    assert fills(result) == [(1, 101, 5), (2, 102, 5)]
    assert (result.filled, result.resting, result.cancelled) == (10, 2, 0)
    assert book.best_ask() is None and book.best_bid() == 102
    assert book.get(3) == RestingOrder(3, BUY, 102, 2, None)


def test_partial_fill_of_maker_keeps_its_priority() -> None:
    book = make_book((1, SELL, 10, 101), (2, SELL, 10, 101))
    result = book.submit(3, BUY, 4, 101)
    assert [t.maker_remaining for t in result.trades] == [6]
    assert [o.order_id for o in book.orders()] == [1, 2]
    assert fills(book.submit(4, BUY, 8, 101)) == [(1, 101, 6), (2, 101, 2)]


def test_price_then_time_priority_and_maker_price() -> None:
    book = make_book((1, BUY, 5, 100), (2, BUY, 5, 101), (3, BUY, 5, 101), (4, BUY, 5, 99))
    result = book.submit(5, SELL, 12, 95)
    assert fills(result) == [(2, 101, 5), (3, 101, 5), (1, 100, 2)]
    assert all(t.aggressor is SELL and t.taker_order_id == 5 for t in result.trades)


def test_market_order_sweeps_and_never_rests() -> None:
    book = make_book((1, SELL, 5, 101), (2, SELL, 5, 150))
    result = book.submit(3, BUY, 20)
    assert fills(result) == [(1, 101, 5), (2, 150, 5)]
    assert (result.filled, result.resting, result.cancelled) == (10, 0, 10)
    assert len(book) == 0 and book.best_bid() is None


def test_market_order_on_empty_side_changes_nothing() -> None:
    book = make_book((1, BUY, 5, 100))
    result = book.submit(2, BUY, 5)
    assert (result.filled, result.cancelled, book.seq) == (0, 5, 1)
    assert book.take_changes().bids == {100: 5}
    assert book.take_changes().bids == {}


def test_ioc_cancels_remainder_and_respects_limit() -> None:
    book = make_book((1, SELL, 5, 101), (2, SELL, 5, 103))
    result = book.submit(3, BUY, 8, 102, IOC)
    assert fills(result) == [(1, 101, 5)]
    assert (result.filled, result.resting, result.cancelled) == (5, 0, 3)
    assert book.best_bid() is None and book.best_ask() == 103


def test_fok_fills_completely_when_enough_within_limit() -> None:
    book = make_book((1, SELL, 5, 101), (2, SELL, 5, 102), (3, SELL, 5, 103))
    result = book.submit(4, BUY, 8, 102, FOK)
    assert fills(result) == [(1, 101, 5), (2, 102, 3)]
    assert (result.filled, result.resting, result.cancelled) == (8, 0, 0)


@pytest.mark.parametrize("price", [102, None])
def test_fok_kill_leaves_book_untouched(price: int | None) -> None:
    book = make_book((1, SELL, 5, 101), (2, SELL, 5, 102), (3, SELL, 5, 103))
    book.take_changes()
    before = (book.depth(50), book.seq, list(book.orders()))
    result = book.submit(4, BUY, 11 if price else 16, price, FOK)
    assert (result.trades, result.filled, result.cancelled) == ([], 0, result.quantity)
    assert (book.depth(50), book.seq, list(book.orders())) == before
    diff = book.take_changes()
    assert (diff.bids, diff.asks) == ({}, {})


def test_fok_ignores_own_liquidity_and_then_self_trade_cancels_it() -> None:
    book = make_book((1, SELL, 5, 101, "alice"), (2, SELL, 5, 101, "bob"))
    killed = book.submit(3, BUY, 6, 101, FOK, owner="alice")
    assert killed.cancelled == 6 and killed.self_trade_cancels == [] and len(book) == 2
    done = book.submit(4, BUY, 5, 101, FOK, owner="alice")
    assert fills(done) == [(2, 101, 5)] and done.self_trade_cancels == [(1, 5)]
    assert len(book) == 0


def test_self_trade_prevention_cancels_resting_and_continues() -> None:
    book = make_book(
        (1, SELL, 5, 101, "alice"), (2, SELL, 4, 101, "bob"), (3, SELL, 5, 102, "alice")
    )
    result = book.submit(4, BUY, 10, 102, owner="alice")
    assert result.self_trade_cancels == [(1, 5), (3, 5)]
    assert fills(result) == [(2, 101, 4)]
    assert (result.filled, result.resting, result.cancelled) == (4, 6, 0)
    assert book.get(1) is None and book.get(3) is None and book.best_bid() == 102


def test_self_trade_only_still_bumps_seq_and_owner_none_never_matches_owner() -> None:
    book = make_book((1, SELL, 5, 101, "alice"))
    result = book.submit(2, BUY, 5, 101, IOC, owner="alice")
    assert (result.filled, result.cancelled, result.self_trade_cancels) == (0, 5, [(1, 5)])
    assert book.seq == 2 and len(book) == 0
    book = make_book((1, SELL, 5, 101))
    assert fills(book.submit(2, BUY, 5, 101)) == [(1, 101, 5)]  # two anonymous orders do trade


def test_cancel() -> None:
    book = make_book((1, BUY, 5, 100), (2, BUY, 7, 100), (3, BUY, 1, 99))
    assert book.cancel(1) == 5
    assert book.seq == 4 and len(book) == 2 and book.level_quantity(BUY, 100) == 7
    assert book.cancel(1) is None and book.cancel(42) is None and book.seq == 4
    book.submit(4, SELL, 3, 100)
    assert book.cancel(2) == 4 and book.best_bid() == 99
    assert [o.order_id for o in book.orders()] == [3]
    assert (book.remaining(3), book.remaining(2), book.remaining(42)) == (1, 0, 0)


def test_cancelled_entries_are_compacted() -> None:
    book = make_book(*[(i, SELL, 1, 101) for i in range(1, 1001)])
    for i in range(2, 1001):
        book.cancel(i)
    assert len(book._asks.levels[101].queue) < 40  # white-box: lazy deletion must not hoard
    assert book.level_quantity(SELL, 101) == 1 and [o.order_id for o in book.orders()] == [1]


@pytest.mark.parametrize(
    ("quantity", "price"),
    [(0, 100), (-1, 100), (1.5, 100), (True, 100), ("3", 100), (5, 0), (5, -3), (5, 1.5), (5, "1")],
)
def test_rejects_bad_orders(quantity: Any, price: Any) -> None:
    book = make_book((1, SELL, 5, 101))
    with pytest.raises(OrderRejected):
        book.submit(2, BUY, quantity, price)
    assert (book.seq, len(book)) == (1, 1)


@pytest.mark.parametrize(("side", "tif"), [("buy", GTC), (None, GTC), (BUY, "gtc"), (SELL, None)])
def test_rejects_bad_side_or_tif(side: Any, tif: Any) -> None:
    book = make_book((1, SELL, 5, 101))
    with pytest.raises(OrderRejected):
        book.submit(2, side, 5, 101, tif)
    assert (book.seq, len(book)) == (1, 1)


def test_market_fok() -> None:
    book = make_book((1, BUY, 5, 100), (2, BUY, 5, 90))
    assert book.submit(3, SELL, 11, None, FOK).cancelled == 11 and len(book) == 2
    result = book.submit(4, SELL, 10, None, FOK)
    assert fills(result) == [(1, 100, 5), (2, 90, 5)] and result.filled == 10


def test_orders_lists_bids_then_asks_best_first_in_time_order() -> None:
    book = make_book((1, BUY, 1, 99), (2, BUY, 1, 100), (3, SELL, 1, 102), (4, BUY, 1, 100))
    book.submit(5, SELL, 1, 101)
    assert [o.order_id for o in book.orders()] == [2, 4, 1, 5, 3]


def test_rejects_duplicate_live_id_but_allows_reuse_after_fill() -> None:
    book = make_book((1, SELL, 5, 101))
    with pytest.raises(OrderRejected):
        book.submit(1, BUY, 5, 90)
    book.submit(2, BUY, 5, 101)
    assert book.submit(1, BUY, 5, 90).resting == 5


def test_depth_ordering_and_bounds() -> None:
    book = make_book((1, BUY, 1, 98), (2, BUY, 2, 100), (3, BUY, 3, 99), (4, BUY, 4, 100))
    book.submit(5, SELL, 5, 103)
    book.submit(6, SELL, 6, 101)
    book.submit(7, SELL, 7, 102)
    assert book.depth() == ([(100, 6), (99, 3), (98, 1)], [(101, 6), (102, 7), (103, 5)])
    assert book.depth(2) == ([(100, 6), (99, 3)], [(101, 6), (102, 7)])
    assert book.depth(50) == book.depth(3)
    for bad in (0, 51, -1):
        with pytest.raises(ValueError):
            book.depth(bad)


def test_take_changes() -> None:
    book = OrderBook("TEST", clock=lambda: 0)
    first = book.take_changes()
    assert (first.symbol, first.prev_seq, first.seq, first.bids, first.asks) == (
        "TEST",
        0,
        0,
        {},
        {},
    )
    book.submit(1, BUY, 5, 100)
    book.submit(2, SELL, 5, 102)
    book.submit(3, SELL, 5, 102)
    diff = book.take_changes()
    assert (diff.prev_seq, diff.seq, diff.bids, diff.asks) == (0, 3, {100: 5}, {102: 10})
    book.submit(4, BUY, 7, 102)
    book.cancel(1)
    diff = book.take_changes()
    assert (diff.prev_seq, diff.seq, diff.bids, diff.asks) == (3, 5, {100: 0}, {102: 3})


def test_seq_and_trade_ids() -> None:
    book = make_book((1, SELL, 5, 101), (2, SELL, 5, 102))
    assert book.submit(3, BUY, 1, 90, IOC).cancelled == 1 and book.seq == 2  # nothing changed
    result = book.submit(4, BUY, 7, 102)
    assert book.seq == 3 and [t.seq for t in result.trades] == [3, 3]
    assert [t.trade_id for t in result.trades] == [1, 2]
    assert [t.trade_id for t in book.submit(5, BUY, 1, 102).trades] == [3]
    assert all(t.timestamp_ms == 1_000 and t.symbol == "TEST" for t in result.trades)


def test_fast_trade_matches_the_dataclass() -> None:
    args = (7, "X", 101, 5, BUY, 1, 2, "a", None, 0, 99, 3)
    fast, real = _new_trade(*args), Trade(*args)
    assert type(fast) is Trade and fast == real and hash(fast) == hash(real)
    assert dataclasses.astuple(fast) == args
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.price = 1  # type: ignore[misc]


# ---- reference model and properties -----------------------------------------------------------


@dataclass
class MOrder:
    order_id: int
    side: Side
    price: int
    remaining: int
    owner: str | None


@dataclass
class Model:
    """A naive book: resting orders in arrival order, crossing ones sorted afresh per submit."""

    resting: list[MOrder] = field(default_factory=list)

    def submit(
        self,
        order_id: int,
        side: Side,
        qty: int,
        price: int | None,
        tif: TimeInForce,
        owner: str | None,
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]], int, int, int]:
        def crosses(o: MOrder) -> bool:
            if o.side is side:
                return False
            return price is None or (o.price <= price if side is BUY else o.price >= price)

        sign = 1 if side is BUY else -1
        # sorted() is stable, so within a price the arrival order of `resting` is kept
        queue = sorted((o for o in self.resting if crosses(o)), key=lambda o: sign * o.price)
        if (
            tif is FOK
            and sum(o.remaining for o in queue if owner is None or o.owner != owner) < qty
        ):
            return [], [], 0, 0, qty
        left, trades, stp = qty, [], []
        for o in queue:
            if not left:
                break
            if owner is not None and o.owner == owner:
                stp.append((o.order_id, o.remaining))
                o.remaining = 0
                continue
            fill = min(left, o.remaining)
            o.remaining -= fill
            left -= fill
            trades.append((o.order_id, o.price, fill))
        self.resting = [o for o in self.resting if o.remaining]
        rests = left if price is not None and tif is GTC else 0
        if rests:
            self.resting.append(MOrder(order_id, side, price, rests, owner))  # type: ignore[arg-type]
        return trades, stp, qty - left, rests, left - rests

    def cancel(self, order_id: int) -> int | None:
        for o in self.resting:
            if o.order_id == order_id:
                self.resting.remove(o)
                return o.remaining
        return None


OWNERS = st.sampled_from([None, None, "alice", "bob"])
submit_ops = st.tuples(
    st.just("submit"),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 12),
    st.one_of(st.integers(97, 103), st.integers(97, 103), st.integers(97, 103), st.none()),
    st.sampled_from([GTC, GTC, GTC, IOC, FOK]),
    OWNERS,
)
cancel_ops = st.tuples(st.just("cancel"), st.integers(0, 60))
op_lists = st.lists(st.one_of(submit_ops, submit_ops, cancel_ops), min_size=5, max_size=80)


# One-sided churn: deep queues at few prices, cancels anywhere in them, and occasional sweeps,
# which is what exercises lazy deletion and compaction.
churn_add = st.tuples(
    st.just("submit"), st.just(BUY), st.integers(1, 5), st.integers(99, 100), st.just(GTC), OWNERS
)
churn_sweep = st.tuples(
    st.just("submit"), st.just(SELL), st.integers(1, 15), st.just(None), st.just(IOC), OWNERS
)
churn_ops = st.lists(
    st.one_of(churn_add, churn_add, churn_add, churn_sweep, cancel_ops, cancel_ops),
    min_size=20,
    max_size=80,
)


def check_invariants(book: OrderBook) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    if bid is not None and ask is not None:
        assert bid < ask, "resting book is crossed"
    totals: dict[tuple[Side, int], int] = {}
    for o in book.orders():
        assert o.remaining > 0
        totals[o.side, o.price] = totals.get((o.side, o.price), 0) + o.remaining
    bids, asks = book.depth(50)
    assert {(BUY, p): q for p, q in bids} | {(SELL, p): q for p, q in asks} == totals
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert sum(1 for _ in book.orders()) == len(book)
    # White-box: lazy deletion's bookkeeping, on which compaction (bounded memory) relies.
    for book_side in (book._bids, book._asks):
        for level in book_side.levels.values():
            assert level.dead == sum(1 for o in level.queue if not o.remaining)
            assert level.qty == sum(o.remaining for o in level.queue) > 0


@settings(max_examples=250, deadline=None)
@given(op_lists, st.booleans())
def test_book_matches_reference_model_and_invariants(
    ops: list[tuple[Any, ...]], eager_compaction: bool
) -> None:
    # Small books rarely reach the compaction threshold; lower it for half the runs.
    with mock.patch.object(book_module, "_COMPACT_MIN", 1 if eager_compaction else 16):
        replay_against_model(ops)


@settings(max_examples=150, deadline=None)
@given(churn_ops)
def test_deep_queues_with_eager_compaction_match_model(ops: list[tuple[Any, ...]]) -> None:
    with mock.patch.object(book_module, "_COMPACT_MIN", 2):
        replay_against_model(ops)


def replay_against_model(ops: list[tuple[Any, ...]]) -> None:
    book, model = OrderBook("P", clock=lambda: 0), Model()
    next_id, last_seq, last_trade_id = 1, 0, 0
    # Conservation ledger: per order, its quantity and the shares that left it (filled/cancelled).
    quantity: dict[int, int] = {}
    gone: dict[int, int] = {}
    for op in ops:
        if op[0] == "cancel":  # mostly a live order; else any id issued so far, or 0 (never was)
            live = [o.order_id for o in model.resting]
            victim = live[op[1] % len(live)] if live and op[1] % 4 else op[1] % next_id
            removed = book.cancel(victim)
            assert removed == model.cancel(victim)
            if removed is not None:
                gone[victim] += removed
        else:
            _, side, qty, price, tif, owner = op
            makers = {o.order_id: o for o in book.orders()}
            result = book.submit(next_id, side, qty, price, tif, owner)
            trades, stp, filled, resting, cancelled = model.submit(
                next_id, side, qty, price, tif, owner
            )
            assert fills(result) == trades
            assert result.self_trade_cancels == stp
            assert (result.filled, result.resting, result.cancelled) == (filled, resting, cancelled)
            assert result.filled + result.resting + result.cancelled == qty
            assert result.filled == sum(t.quantity for t in result.trades)
            for t in result.trades:
                assert t.price == makers[t.maker_order_id].price
                assert price is None or (t.price <= price if side is BUY else t.price >= price)
                assert t.maker_owner is None or t.maker_owner != owner
                assert t.trade_id == last_trade_id + 1 and t.seq == book.seq
                last_trade_id = t.trade_id
                gone[t.maker_order_id] += t.quantity
            for maker_id, removed in result.self_trade_cancels:
                gone[maker_id] += removed
            quantity[next_id] = qty
            gone[next_id] = result.filled + result.cancelled
            next_id += 1
        assert book.seq >= last_seq
        last_seq = book.seq
        check_invariants(book)
        for order_id, total in quantity.items():
            resting_order = book.get(order_id)
            assert total == gone[order_id] + (resting_order.remaining if resting_order else 0)
        model_view = [
            RestingOrder(o.order_id, o.side, o.price, o.remaining, o.owner) for o in model.resting
        ]
        assert sorted(book.orders(), key=lambda o: o.order_id) == sorted(
            model_view, key=lambda o: o.order_id
        )
    # price-time priority within each level, as seen by persistence
    for side in (BUY, SELL):
        ids = [o.order_id for o in book.orders() if o.side is side]
        by_level: dict[int, list[int]] = {}
        for o in book.orders():
            if o.side is side:
                by_level.setdefault(o.price, []).append(o.order_id)
        assert len(ids) == len(set(ids))
        assert all(level == sorted(level) for level in by_level.values())


@settings(max_examples=150, deadline=None)
@given(op_lists, st.sets(st.integers(0, 60), max_size=8))
def test_snapshot_plus_diffs_equals_later_snapshot(
    ops: list[tuple[Any, ...]], takes: set[int]
) -> None:
    book, issued = OrderBook("P", clock=lambda: 0), list[int]()
    for op in ops[: len(ops) // 3]:  # some history before the snapshot
        run_op(book, op, issued)
    book.take_changes()
    bids, asks = book.depth(50)
    view = {BUY: dict(bids), SELL: dict(asks)}
    seq = book.seq

    def apply(diff: Any) -> None:
        nonlocal seq
        assert diff.prev_seq == seq and diff.seq == book.seq >= seq
        seq = diff.seq
        for side, changes in ((BUY, diff.bids), (SELL, diff.asks)):
            for price, qty in changes.items():
                assert qty >= 0
                if qty:
                    view[side][price] = qty
                else:
                    view[side].pop(price, None)

    for i, op in enumerate(ops[len(ops) // 3 :]):
        run_op(book, op, issued)
        if i in takes:
            apply(book.take_changes())
    apply(book.take_changes())
    bids, asks = book.depth(50)
    assert view == {BUY: dict(bids), SELL: dict(asks)}


def run_op(book: OrderBook, op: tuple[Any, ...], issued: list[int]) -> None:
    """Apply a generated op; cancels pick among the ids submitted so far, so they usually hit."""
    if op[0] == "cancel":
        if issued:
            book.cancel(issued[op[1] % len(issued)])
    else:
        issued.append(len(issued) + 1)
        book.submit(issued[-1], *op[1:])


@settings(max_examples=100, deadline=None)
@given(op_lists, st.integers(0, 60))
def test_cancel_removes_exactly_that_order(ops: list[tuple[Any, ...]], pick: int) -> None:
    book, issued = OrderBook("P", clock=lambda: 0), list[int]()
    for op in ops:
        run_op(book, op, issued)
    before = {o.order_id: o for o in book.orders()}
    victim = issued[pick % len(issued)] if issued else 1
    removed = book.cancel(victim)
    after = {o.order_id: o for o in book.orders()}
    if victim in before:
        assert removed == before.pop(victim).remaining
    else:
        assert removed is None
    assert after == before
    check_invariants(book)


def test_bench_script_quick_smoke() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_book.py"
    out = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["orders"] == 20_000 and report["trades"] > 0
    assert (
        report["orders_per_s"] > 0 and report["baseline_orders_per_s"] > 0 and report["ratio"] > 0
    )
