"""The opening auction: uncross a book left crossed by a call phase at one equilibrium price.

Private to the engine: `OrderBook.uncross` calls `run_auction` with its sides. Nothing here is on
the continuous-trading hot path, so it favours plain code over speed: the equilibrium scans the
crossed range of levels, and the pairing is computed read-only before anything is changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from marketsrv.engine.levels import BookSide, Entry, new_trade
from marketsrv.engine.types import Side, Trade

_BUY = Side.BUY


def equilibrium(bids: BookSide, asks: BookSide, reference: int | None) -> tuple[int, int] | None:
    """(price, volume) of the auction, or None when nothing crosses.

    The price is the level price with the most executable volume min(bids at or above it, asks
    at or below it); ties go to the smallest surplus |bids - asks|, then to the price nearest
    `reference` (if given), then to the lower price.
    """
    best_bid, best_ask = bids.best, asks.best
    if best_bid is None or best_ask is None or best_bid < best_ask:
        return None
    # Outside [best_ask, best_bid] one side is empty, so no volume: only levels inside are
    # candidates, and only they add to the cumulative totals of the candidates.
    bid_qty = {p: bids.levels[p].qty for p in bids.prices.irange(best_ask, best_bid)}
    ask_qty = {p: asks.levels[p].qty for p in asks.prices.irange(best_ask, best_bid)}
    cum_bid = sum(bid_qty.values())  # bids at or above the lowest candidate: all of them
    cum_ask = 0
    best_key: tuple[int, int, int, int] | None = None
    for price in sorted(bid_qty.keys() | ask_qty.keys()):
        cum_ask += ask_qty.get(price, 0)
        distance = 0 if reference is None else abs(price - reference)
        key = (-min(cum_bid, cum_ask), abs(cum_bid - cum_ask), distance, price)
        if best_key is None or key < best_key:
            best_key = key
        cum_bid -= bid_qty.get(price, 0)  # bids at this price do not reach the next one up
    assert best_key is not None and best_key[0] < 0  # best_ask itself executes something
    return best_key[3], -best_key[0]


def run_auction(
    bids: BookSide,
    asks: BookSide,
    orders: dict[int, Entry],
    cancel: Callable[[int], object],
    reference: int | None,
    *,
    symbol: str,
    now: int,
    trade_id: int,
    seq: int,
) -> tuple[list[Trade], list[tuple[int, int]]]:
    """Uncross the book: (trades, self-trade cancels as (order_id, quantity removed)).

    Self-trade prevention: when the pairing at the equilibrium would match two entries of the
    same non-None owner, the one that arrived later is cancelled (through `cancel`, the book's
    own) and the auction starts over on the book without it. Trading on at the old price could
    leave the book crossed (the cancelled shares may have been what made that price the
    equilibrium), and a second round at another price would break the one-price rule; so only a
    pairing without any self-trade is ever executed, and every trade is at its price. Each
    such cancel costs one more pass over the crossed part of the book.
    """
    self_trade_cancels: list[tuple[int, int]] = []
    while True:
        found = equilibrium(bids, asks, reference)
        if found is None:
            return [], self_trade_cancels
        price, volume = found
        pairs: list[tuple[Entry, Entry, int]] = []
        clash: Entry | None = None
        for buy, sell, fill in _pairs(bids, asks, volume):
            if buy.owner is not None and buy.owner == sell.owner:
                clash = buy if buy.arrival > sell.arrival else sell
                break
            pairs.append((buy, sell, fill))
        if clash is None:
            trades = _execute(bids, asks, orders, pairs, price, symbol, now, trade_id, seq)
            return trades, self_trade_cancels
        self_trade_cancels.append((clash.order_id, clash.remaining))
        cancel(clash.order_id)  # only now: the pairing was iterating the deques this changes


def _live(side: BookSide) -> Iterator[Entry]:
    """Live entries in price-time priority, best first."""
    for level in side.iter_levels():
        for entry in level.queue:
            if entry.remaining:
                yield entry


def _pairs(bids: BookSide, asks: BookSide, volume: int) -> Iterator[tuple[Entry, Entry, int]]:
    """(buy, sell, fill) in price-time priority until `volume` is paired; changes nothing.

    Walking both sides best first never strays past the equilibrium price: its volume is at most
    what either side holds on the right side of it.
    """
    buys, sells = _live(bids), _live(asks)
    buy, sell = next(buys), next(sells)
    buy_left, sell_left = buy.remaining, sell.remaining
    while True:
        fill = min(buy_left, sell_left, volume)
        yield buy, sell, fill
        volume -= fill
        if not volume:
            return
        buy_left -= fill
        sell_left -= fill
        if not buy_left:
            buy = next(buys)
            buy_left = buy.remaining
        if not sell_left:
            sell = next(sells)
            sell_left = sell.remaining


def _execute(
    bids: BookSide, asks: BookSide, orders: dict[int, Entry], pairs: list[tuple[Entry, Entry, int]],
    price: int, symbol: str, now: int, trade_id: int, seq: int,
) -> list[Trade]:  # fmt: skip
    """Apply the pairing: every trade at `price`, the buy entry as taker, the sell as maker."""
    trades: list[Trade] = []
    bid_levels, ask_levels = bids.levels, asks.levels
    for buy, sell, fill in pairs:
        buy.remaining -= fill
        sell.remaining -= fill
        bid_levels[buy.price].qty -= fill
        ask_levels[sell.price].qty -= fill
        if not buy.remaining:
            del orders[buy.order_id]
        if not sell.remaining:
            del orders[sell.order_id]
        trade_id += 1
        trades.append(new_trade(
            trade_id, symbol, price, fill, _BUY, sell.order_id, buy.order_id, sell.owner,
            buy.owner, sell.remaining, now, seq,
        ))  # fmt: skip
    touched = {buy.price for buy, _, _ in pairs}, {sell.price for _, sell, _ in pairs}
    for side, prices in zip((bids, asks), touched, strict=True):
        side.changed |= prices
        for level_price in prices:
            level = side.levels[level_price]
            if not level.qty:
                side.remove_level(level_price)
            else:
                # Only the last touched level of a side can be left over: it keeps its live
                # entries in their order (their time priority) and sheds filled and dead ones.
                level.queue = deque(e for e in level.queue if e.remaining)
                level.dead = 0
    return trades
