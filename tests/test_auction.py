"""Tests of the call phase (`submit(match=False)`) and the opening auction (`OrderBook.uncross`).

Hand-written cases first, then a property against a naive reference auction (`model_uncross`)
that recomputes the equilibrium by brute force over every level price and pairs the orders by
sorting them afresh, so the engine is checked against an independent implementation.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketsrv.engine import (
    BookDiff,
    OrderBook,
    OrderRejected,
    OrderResult,
    RestingOrder,
    Side,
    TimeInForce,
)
from marketsrv.engine import book as book_module
from tests.test_book import check_invariants, make_book

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK


def call_book(*orders: tuple[int, Side, int, int] | tuple[int, Side, int, int, str]) -> OrderBook:
    """A book holding (order_id, side, qty, price[, owner]) rested in a call phase, in order."""
    return make_book(*orders, match=False)


def prints(result: OrderResult) -> list[tuple[int, int, int, int]]:
    """(taker (buy) id, maker (sell) id, price, quantity) of each trade."""
    return [(t.taker_order_id, t.maker_order_id, t.price, t.quantity) for t in result.trades]


# ---- the call phase -----------------------------------------------------------------------------


def test_call_phase_rests_crossing_orders_without_matching() -> None:
    book = OrderBook("TEST", clock=lambda: 0)
    book.submit(1, BUY, 10, 101)
    book.take_changes()
    assert not book.crossed()
    result = book.submit(2, SELL, 4, 99, match=False)
    assert (result.trades, result.filled, result.resting, result.cancelled) == ([], 0, 4, 0)
    assert (book.best_bid(), book.best_ask(), book.seq, len(book)) == (101, 99, 2, 2)
    assert book.crossed()
    book.submit(3, BUY, 2, 99, match=False)  # joins its own side, next to a crossing ask
    assert book.level_quantity(BUY, 99) == 2 and book.crossed()
    diff = book.take_changes()
    assert (diff.prev_seq, diff.seq, diff.bids, diff.asks) == (1, 3, {99: 2}, {99: 4})


def test_crossed_helper() -> None:
    assert not OrderBook("T").crossed()
    assert not call_book((1, BUY, 1, 100)).crossed()
    assert not call_book((1, BUY, 1, 100), (2, SELL, 1, 101)).crossed()
    assert call_book((1, BUY, 1, 100), (2, SELL, 1, 100)).crossed()  # a locked book is crossed


@pytest.mark.parametrize(
    ("price", "tif"), [(None, GTC), (None, IOC), (None, FOK), (100, IOC), (100, FOK)]
)
def test_call_phase_refuses_market_and_immediate_orders(price: int | None, tif: Any) -> None:
    book = call_book((1, SELL, 5, 100))
    book.take_changes()
    with pytest.raises(OrderRejected, match="call phase"):
        book.submit(2, BUY, 5, price, tif, match=False)
    assert (book.seq, len(book), book.crossed()) == (1, 1, False)
    diff = book.take_changes()
    assert (diff.bids, diff.asks) == ({}, {})


# ---- the auction: hand-written cases -------------------------------------------------------------


def test_textbook_uncross() -> None:
    # cum bid (>= P):  198: 1000  199: 1000  200: 600  201: 500  202: 200
    # cum ask (<= P):  198:  100  199:  300  200: 600  201: 600  202: 800
    # executable:      198:  100  199:  300  200: 600  201: 500  202: 200  -> 600 at 200
    book = call_book(
        (1, BUY, 200, 202), (2, BUY, 300, 201), (3, BUY, 100, 200), (4, BUY, 400, 199),
        (11, SELL, 100, 198), (12, SELL, 200, 199), (13, SELL, 300, 200), (14, SELL, 200, 202),
    )  # fmt: skip
    result = book.uncross()
    assert prints(result) == [
        (1, 11, 200, 100), (1, 12, 200, 100), (2, 12, 200, 100), (2, 13, 200, 200),
        (3, 13, 200, 100),
    ]  # fmt: skip
    assert [t.maker_remaining for t in result.trades] == [0, 100, 0, 100, 0]
    assert (result.order_id, result.side, result.quantity, result.filled) == (0, BUY, 600, 600)
    assert (result.resting, result.cancelled, result.self_trade_cancels) == (0, 0, [])
    assert all(t.aggressor is BUY and t.symbol == "TEST" for t in result.trades)
    assert all(t.seq == 9 == book.seq and t.timestamp_ms == 1_000 for t in result.trades)
    assert [t.trade_id for t in result.trades] == [1, 2, 3, 4, 5]
    assert (book.best_bid(), book.best_ask(), book.crossed()) == (199, 202, False)
    assert [(o.order_id, o.remaining) for o in book.orders()] == [(4, 400), (14, 200)]
    check_invariants(book)


def test_partially_filled_entries_keep_priority_and_remaining_is_in_the_book() -> None:
    book = call_book((1, BUY, 10, 101), (2, BUY, 10, 101), (3, SELL, 15, 100))
    result = book.uncross()
    assert prints(result) == [(1, 3, 100, 10), (2, 3, 100, 5)]  # a full tie: the lower price
    assert (book.remaining(1), book.remaining(2), book.remaining(3)) == (0, 5, 0)
    book.submit(4, BUY, 1, 101)
    book.submit(5, SELL, 3, 101)  # continuous trading again: order 2 is still first in line
    assert [(o.order_id, o.remaining) for o in book.orders()] == [(2, 2), (4, 1)]


def test_trade_ids_continue_the_books_counter() -> None:
    book = OrderBook("TEST", clock=lambda: 7)
    book.submit(1, SELL, 5, 100)
    assert [t.trade_id for t in book.submit(2, BUY, 5, 100).trades] == [1]
    book.submit(3, BUY, 5, 101, match=False)
    book.submit(4, SELL, 5, 99, match=False)
    result = book.uncross()
    assert [(t.trade_id, t.timestamp_ms, t.seq) for t in result.trades] == [(2, 7, 5)]
    book.submit(5, SELL, 1, 90)
    assert [(t.trade_id, t.seq) for t in book.submit(6, BUY, 1, 90).trades] == [(3, 7)]


def test_surplus_breaks_a_volume_tie_before_the_reference() -> None:
    # Volume 10 at 100, 101 and 102; surplus 5, 5 and 0: 102 wins even with a reference at 100.
    orders = ((1, BUY, 10, 102), (2, BUY, 5, 101), (3, SELL, 10, 100))
    for reference in (None, 100, 101, 102):
        result = call_book(*orders).uncross(reference)
        assert {t.price for t in result.trades} == {102} and result.filled == 10


@pytest.mark.parametrize(
    ("reference", "price"),
    [(None, 100), (50, 100), (100, 100), (101, 100), (102, 103), (103, 103), (500, 103)],
)
def test_reference_then_lower_price_break_the_remaining_ties(
    reference: int | None, price: int
) -> None:
    # Volume 10 and surplus 0 at both 100 and 103 (the only level prices).
    result = call_book((1, BUY, 10, 103), (2, SELL, 10, 100)).uncross(reference)
    assert prints(result) == [(1, 2, price, 10)]


def test_equidistant_reference_takes_the_lower_price() -> None:
    result = call_book((1, BUY, 10, 102), (2, SELL, 10, 100)).uncross(101)
    assert prints(result) == [(1, 2, 100, 10)]


def test_nothing_crosses() -> None:
    for book in (
        OrderBook("TEST"),
        call_book((1, BUY, 5, 99)),
        call_book((1, SELL, 5, 99)),
        call_book((1, BUY, 5, 99), (2, SELL, 5, 100)),
    ):
        book.take_changes()
        seq, before = book.seq, list(book.orders())
        result = book.uncross(100)
        assert result == OrderResult(0, BUY, 0)
        assert (book.seq, list(book.orders())) == (seq, before)
        diff = book.take_changes()
        assert (diff.prev_seq, diff.seq, diff.bids, diff.asks) == (seq, seq, {}, {})


def test_self_trade_cancels_the_later_entry_and_reprices() -> None:
    # alice's buy arrived first: her sell (id 2) is cancelled, and the auction re-runs without it,
    # moving the price from 100 (where 1 met 2) to 101 (where 1 meets bob's 3).
    book = call_book((1, BUY, 10, 101, "alice"), (2, SELL, 10, 100, "alice"), (3, SELL, 10, 101))
    result = book.uncross()
    assert result.self_trade_cancels == [(2, 10)]
    assert prints(result) == [(1, 3, 101, 10)] and result.filled == result.quantity == 10
    assert (result.trades[0].taker_owner, result.trades[0].maker_owner) == ("alice", None)
    assert len(book) == 0 and book.seq == 4


def test_self_trade_cancels_a_later_buy_and_may_leave_nothing_to_trade() -> None:
    book = call_book((1, SELL, 10, 100, "alice"), (2, BUY, 6, 101, "alice"))
    book.take_changes()
    result = book.uncross()
    assert (result.trades, result.filled, result.self_trade_cancels) == ([], 0, [(2, 6)])
    assert book.seq == 3 and [o.order_id for o in book.orders()] == [1]
    diff = book.take_changes()
    assert (diff.prev_seq, diff.seq, diff.bids, diff.asks) == (2, 3, {101: 0}, {})


def test_self_trade_never_leaves_the_book_crossed() -> None:
    # Every price from 98 to 101 executes 10 with surplus 10, so 98 (the lowest) comes first,
    # where x's bid meets x's ask. Trading on at 98 after the cancel could not reach bob's ask
    # at 100 and would leave 101 > 100 crossed; the auction re-prices at 100 instead.
    book = call_book(
        (1, BUY, 10, 101, "x"), (2, BUY, 10, 99, "w"), (3, SELL, 10, 98, "x"), (4, SELL, 10, 100)
    )
    result = book.uncross()
    assert result.self_trade_cancels == [(3, 10)]
    assert prints(result) == [(1, 4, 100, 10)]
    assert (book.best_bid(), book.best_ask(), book.crossed()) == (99, None, False)
    check_invariants(book)


def test_anonymous_orders_and_different_owners_do_trade() -> None:
    book = call_book(
        (1, BUY, 5, 101), (2, SELL, 5, 100), (3, BUY, 5, 101, "a"), (4, SELL, 5, 99, "b")
    )
    result = book.uncross()
    assert result.self_trade_cancels == [] and result.filled == 10


def test_diffs_after_a_call_phase_and_uncross_match_a_fresh_snapshot() -> None:
    book = OrderBook("TEST", clock=lambda: 0)
    for i, (side, qty, price) in enumerate(
        [(BUY, 5, 99), (BUY, 7, 98), (SELL, 4, 101), (SELL, 6, 102), (BUY, 3, 101)], start=1
    ):
        book.submit(i, side, qty, price)
    book.take_changes()
    bids, asks = book.all_levels()
    view = {BUY: dict(bids), SELL: dict(asks)}
    seq = book.seq

    def apply(diff: BookDiff) -> None:
        nonlocal seq
        assert diff.prev_seq == seq
        seq = diff.seq
        for side, changes in ((BUY, diff.bids), (SELL, diff.asks)):
            for price, qty in changes.items():
                if qty:
                    view[side][price] = qty
                else:
                    view[side].pop(price, None)

    book.submit(10, SELL, 9, 97, match=False)
    book.submit(11, BUY, 8, 103, match=False)
    book.cancel(2)
    apply(book.take_changes())
    assert book.crossed()
    # 9 shares at 97 and at 99, surplus 4 at both: 99 is nearer the reference
    assert {t.price for t in book.uncross(100).trades} == {99}
    apply(book.take_changes())
    assert seq == book.seq and not book.crossed()
    bids, asks = book.all_levels()
    assert view == {BUY: dict(bids), SELL: dict(asks)}


def test_uncross_is_idempotent() -> None:
    book = call_book((1, BUY, 10, 102), (2, SELL, 4, 100), (3, SELL, 9, 101))
    assert book.uncross().filled == 10
    seq = book.seq
    assert book.uncross() == OrderResult(0, BUY, 0) and book.seq == seq


# ---- reference auction and property -------------------------------------------------------------


def brute_equilibrium(
    orders: list[RestingOrder], reference: int | None
) -> tuple[int, int, int] | None:
    """(price, volume, surplus) by the rules, trying every level price; None if volume is 0."""
    best: tuple[int, int, int, int] | None = None
    for price in sorted({o.price for o in orders}):
        cum_bid = sum(o.remaining for o in orders if o.side is BUY and o.price >= price)
        cum_ask = sum(o.remaining for o in orders if o.side is SELL and o.price <= price)
        distance = 0 if reference is None else abs(price - reference)
        key = (-min(cum_bid, cum_ask), abs(cum_bid - cum_ask), distance, price)
        best = key if best is None else min(best, key)
    if best is None or not best[0]:
        return None
    return best[3], -best[0], best[1]


def model_uncross(
    orders: list[RestingOrder], reference: int | None
) -> tuple[int | None, list[tuple[int, int, int, int]], list[tuple[int, int]]]:
    """(price, prints, self-trade cancels). `orders` are in arrival order (ascending order id)."""
    orders = list(orders)
    cancels: list[tuple[int, int]] = []
    while True:
        found = brute_equilibrium(orders, reference)
        if found is None:
            return None, [], cancels
        price, volume, _ = found
        # sorted() is stable and `orders` is in arrival order: price, then time priority
        buys = sorted(
            (o for o in orders if o.side is BUY and o.price >= price), key=lambda o: -o.price
        )
        sells = sorted(
            (o for o in orders if o.side is SELL and o.price <= price), key=lambda o: o.price
        )
        left = {o.order_id: o.remaining for o in orders}
        out: list[tuple[int, int, int, int]] = []
        b = s = 0
        clash = None
        while volume:
            buy, sell = buys[b], sells[s]
            if buy.owner is not None and buy.owner == sell.owner:
                clash = max(buy, sell, key=lambda o: o.order_id)
                break
            fill = min(left[buy.order_id], left[sell.order_id], volume)
            out.append((buy.order_id, sell.order_id, price, fill))
            volume -= fill
            left[buy.order_id] -= fill
            left[sell.order_id] -= fill
            b += not left[buy.order_id]
            s += not left[sell.order_id]
        if clash is None:
            return price, out, cancels
        cancels.append((clash.order_id, clash.remaining))
        orders.remove(clash)


OWNERS = st.sampled_from([None, None, "alice", "bob"])


def call_submits(side: Side, low: int, high: int) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(
        st.just("submit"),
        st.just(side),
        st.integers(1, 12),
        st.integers(low, high),
        OWNERS,
        st.sampled_from([False] * 5 + [True]),  # now and then a continuous-phase order
    )


# Bids lean high and asks low, so most call phases end crossed, often by several levels.
buys, sells = call_submits(BUY, 98, 104), call_submits(SELL, 96, 102)
call_ops = st.lists(
    st.one_of(buys, buys, sells, sells, st.tuples(st.just("cancel"), st.integers(0, 99))),
    min_size=4,
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(call_ops, st.one_of(st.none(), st.integers(95, 105)), st.booleans())
def test_uncross_matches_reference_auction(
    ops: list[tuple[Any, ...]], reference: int | None, eager_compaction: bool
) -> None:
    with mock.patch.object(book_module, "_COMPACT_MIN", 1 if eager_compaction else 16):
        book = OrderBook("P", clock=lambda: 5)
        issued: list[int] = []
        trade_id = 0
        for op in ops:
            if op[0] == "cancel":
                if issued:
                    book.cancel(issued[op[1] % len(issued)])
            else:
                _, side, qty, price, owner, match = op
                issued.append(len(issued) + 1)
                trade_id += len(
                    book.submit(issued[-1], side, qty, price, owner=owner, match=match).trades
                )
        book.take_changes()
        snapshot = {BUY: dict(book.all_levels()[0]), SELL: dict(book.all_levels()[1])}
        before = sorted(book.orders(), key=lambda o: o.order_id)  # arrival order
        seq = book.seq
        result = book.uncross(reference)

        price, expected, cancels = model_uncross(before, reference)
        assert prints(result) == expected
        assert result.self_trade_cancels == cancels
        volume = sum(t.quantity for t in result.trades)
        assert result.filled == result.quantity == volume
        assert (result.order_id, result.side, result.resting, result.cancelled) == (0, BUY, 0, 0)

        # Independently of the model: one price, the brute-force maximum volume of the book left
        # after the self-trade cancels, and nothing left crossed.
        gone = {order_id for order_id, _ in cancels}
        remaining_book = [o for o in before if o.order_id not in gone]
        found = brute_equilibrium(remaining_book, reference)
        assert volume == (found[1] if found else 0)
        assert {t.price for t in result.trades} == (set() if found is None else {found[0]})
        assert not book.crossed()
        check_invariants(book)
        by_id = {o.order_id: o for o in before}
        for t in result.trades:
            assert t.aggressor is BUY and by_id[t.taker_order_id].side is BUY
            assert by_id[t.maker_order_id].side is SELL
            assert by_id[t.taker_order_id].price >= t.price >= by_id[t.maker_order_id].price
            assert t.maker_owner is None or t.maker_owner != t.taker_owner
        for order_id, removed in cancels:
            assert by_id[order_id].owner is not None and removed == by_id[order_id].remaining

        # Shares are conserved, in total and per order.
        after = {o.order_id: o.remaining for o in book.orders()}
        stp = sum(q for _, q in result.self_trade_cancels)
        assert sum(o.remaining for o in before) == sum(after.values()) + 2 * volume + stp
        for o in before:
            traded = sum(
                t.quantity
                for t in result.trades
                if o.order_id in (t.taker_order_id, t.maker_order_id)
            )
            assert o.remaining == after.get(o.order_id, 0) + traded + dict(cancels).get(
                o.order_id, 0
            )
        for t in result.trades:
            assert t.maker_remaining >= 0
        last = {t.maker_order_id: t.maker_remaining for t in result.trades}
        assert all(after.get(order_id, 0) == left for order_id, left in last.items())

        # Sequence numbers, trade ids, and the diff against the snapshot before the auction.
        happened = bool(result.trades or result.self_trade_cancels)
        assert book.seq == seq + happened
        assert all(t.seq == book.seq and t.timestamp_ms == 5 for t in result.trades)
        assert [t.trade_id for t in result.trades] == list(
            range(trade_id + 1, trade_id + 1 + len(result.trades))
        )
        diff = book.take_changes()
        assert (diff.prev_seq, diff.seq) == (seq, book.seq)
        for side, changes in ((BUY, diff.bids), (SELL, diff.asks)):
            for level_price, qty in changes.items():
                if qty:
                    snapshot[side][level_price] = qty
                else:
                    snapshot[side].pop(level_price, None)
        assert snapshot == {BUY: dict(book.all_levels()[0]), SELL: dict(book.all_levels()[1])}
