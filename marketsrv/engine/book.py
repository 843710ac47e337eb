"""The limit order book of one instrument: price-time matching in integer prices (cents).

`OrderBook` is the single-threaded core that REST, the simulator and storage all drive. It does no
I/O and knows nothing of trio; callers serialise access to it. Each side keeps a dict of price
levels plus a `SortedList` of their prices (best price cached), each level a FIFO deque with its
live quantity kept exact, and a dict from order id to order gives O(1) cancels. Cancelled orders
stay in their deque as dead entries until they reach the front or the level compacts.

Every operation that changes the book bumps `seq` by one, and every changed (side, price) is noted
so `take_changes()` can hand the fan-out a diff without scanning the book.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from marketsrv.engine.auction import run_auction
from marketsrv.engine.levels import BookSide, Entry, new_trade
from marketsrv.engine.types import (
    BookDiff,
    OrderRejected,
    OrderResult,
    RestingOrder,
    Side,
    TimeInForce,
)
from marketsrv.units import wall_clock_ms

# Module-level aliases: the hot path compares with `is` against locals/globals, not enum lookups.
_BUY, _SELL = Side.BUY, Side.SELL
_GTC, _IOC, _FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK

# A level rebuilds its deque once at least half its entries are dead (and at least this many), so
# lazy deletion stays amortised O(1) and a level's memory stays within a small multiple of its
# live orders.
_COMPACT_MIN = 16


class OrderBook:
    """Price-time priority limit order book for one symbol.

    Fills are always at the resting (maker) order's price. Self-trade prevention: when an incoming
    order with a non-None `owner` meets a resting order of the same owner, the RESTING order is
    cancelled (removed and listed in `OrderResult.self_trade_cancels`) and matching carries on
    with the next resting order; no trade between the two is ever printed. A fill-or-kill order's
    availability check therefore ignores that owner's own resting liquidity.

    Call phase: `submit(..., match=False)` rests a GTC limit order without matching, so the book
    may be crossed until `uncross()` runs the opening auction; continuous trading (match=True)
    on a crossed book still works but does not uncross it.
    """

    def __init__(self, symbol: str, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.symbol = symbol
        self.seq = 0
        self._clock = clock
        self._bids = BookSide(_BUY)
        self._asks = BookSide(_SELL)
        self._orders: dict[int, Entry] = {}
        self._trade_id = 0
        self._taken_seq = 0

    def submit(
        self,
        order_id: int,
        side: Side,
        quantity: int,
        price: int | None = None,
        tif: TimeInForce = _GTC,
        owner: str | None = None,
        match: bool = True,
    ) -> OrderResult:
        """Match an order and rest (GTC limit) or cancel what is left; `price=None` is market.

        `match=False` is the call phase: a GTC limit order rests at its price even if it crosses
        the opposite side; market and IOC/FOK orders are refused (they could only be cancelled).
        """
        if type(quantity) is not int or quantity <= 0:
            quantity = _positive_int(quantity, "quantity")
        if price is not None and (type(price) is not int or price <= 0):
            price = _positive_int(price, "price")
        if order_id in self._orders:
            raise OrderRejected(f"order id {order_id} is already live")
        if side is _BUY:
            opp = self._asks
        elif side is _SELL:
            opp = self._bids
        else:
            raise OrderRejected(f"side must be a Side, got {side!r}")
        if tif is not _GTC and tif is not _IOC and tif is not _FOK:
            raise OrderRejected(f"tif must be a TimeInForce, got {tif!r}")
        result = OrderResult(order_id, side, quantity)
        remaining = quantity
        seq = self.seq + 1
        best = opp.best
        if not match:  # call phase: rest at its price without looking at the opposite side
            if price is None or tif is not _GTC:
                kind = "market" if price is None else tif.value.upper()
                raise OrderRejected(f"only GTC limit orders can rest in a call phase, not {kind}")
            best = None
        crosses = best is not None and (
            price is None or (best <= price if side is _BUY else best >= price)
        )
        if tif is _FOK and not (crosses and self._fok_available(opp, side, quantity, price, owner)):
            result.cancelled = quantity  # killed: nothing touched the book
            return result
        if crosses:
            remaining = self._match(result, opp, order_id, side, quantity, price, owner, seq)
        result.filled = quantity - remaining
        if remaining:
            if price is not None and tif is _GTC:
                own = self._bids if side is _BUY else self._asks
                level = own.levels.get(price)
                if level is None:
                    level = own.add_level(price)
                order = Entry(order_id, side, price, remaining, owner, seq)
                level.queue.append(order)
                level.qty += remaining
                self._orders[order_id] = order
                own.changed.add(price)
                result.resting = remaining
            else:
                result.cancelled = remaining
                if remaining == quantity and not result.self_trade_cancels:
                    return result  # nothing happened: the book and seq are untouched
        self.seq = seq
        return result

    def _match(
        self, result: OrderResult, opp: BookSide, taker_id: int, side: Side, remaining: int,
        limit: int | None, owner: str | None, seq: int,
    ) -> int:  # fmt: skip
        """Fill against `opp` best first; return the taker's unfilled quantity."""
        levels = opp.levels
        changed = opp.changed
        orders = self._orders
        trades = result.trades
        symbol = self.symbol
        now = self._clock()
        trade_id = self._trade_id
        is_buy = side is _BUY
        best = opp.best
        while remaining and best is not None:
            if limit is not None and (best > limit if is_buy else best < limit):
                break
            level = levels[best]
            queue = level.queue
            qty = level.qty
            changed.add(best)
            while qty:
                maker = queue[0]
                rem = maker.remaining
                if not rem:  # cancelled earlier, dropped now that it reached the front
                    queue.popleft()
                    level.dead -= 1
                    continue
                if owner is not None and maker.owner == owner:
                    queue.popleft()
                    del orders[maker.order_id]
                    maker.remaining = 0
                    qty -= rem
                    result.self_trade_cancels.append((maker.order_id, rem))
                    continue
                if rem <= remaining:
                    fill = rem
                    queue.popleft()
                    del orders[maker.order_id]
                    maker.remaining = left = 0
                else:
                    fill = remaining
                    maker.remaining = left = rem - remaining
                qty -= fill
                remaining -= fill
                trade_id += 1
                trades.append(new_trade(
                    trade_id, symbol, best, fill, side, maker.order_id, taker_id, maker.owner,
                    owner, left, now, seq,
                ))  # fmt: skip
                if not remaining:
                    break
            level.qty = qty
            if qty:
                break
            opp.remove_level(best)
            best = opp.best
        self._trade_id = trade_id
        return remaining

    def _fok_available(
        self, opp: BookSide, side: Side, quantity: int, limit: int | None, owner: str | None
    ) -> bool:
        """Whether `quantity` can fill within `limit`, not counting the owner's own orders."""
        available = 0
        for level in opp.iter_levels():
            if limit is not None and (level.price > limit if side is _BUY else level.price < limit):
                return False
            available += level.qty
            if owner is not None:
                available -= sum(o.remaining for o in level.queue if o.owner == owner)
            if available >= quantity:
                return True
        return False

    def uncross(self, reference: int | None = None) -> OrderResult:
        """The opening auction: trade all that crosses at one price (rules: auction.py).

        Price: most volume, then least surplus, then nearest `reference`, then the lower one.
        Trades print `aggressor=BUY`, buy entry as taker, sell entry as maker (`maker_remaining`
        is the sell's rest; the buy's is `remaining(taker_order_id)` afterwards). Self-trade:
        the later-arrived of two same-owner entries is cancelled and the auction re-priced.
        One seq bump (none if nothing happened); the book ends uncrossed."""
        seq = self.seq + 1
        trades, self_trade_cancels = run_auction(
            self._bids, self._asks, self._orders, self.cancel, reference,
            symbol=self.symbol, now=self._clock(), trade_id=self._trade_id, seq=seq,
        )  # fmt: skip
        if trades:
            self._trade_id = trades[-1].trade_id
        if trades or self_trade_cancels:
            # The whole auction is one change of the book, whatever its self-trade cancels
            # counted on the way (nothing can observe the book in between).
            self.seq = seq
        volume = sum(t.quantity for t in trades)
        return OrderResult(0, _BUY, volume, trades, volume, self_trade_cancels=self_trade_cancels)

    def crossed(self) -> bool:
        """Whether the best bid is at or above the best ask (only ever after a call phase)."""
        bid, ask = self._bids.best, self._asks.best
        return bid is not None and ask is not None and bid >= ask

    def cancel(self, order_id: int) -> int | None:
        """Remove a resting order; return its remaining quantity, or None if it is not live."""
        order = self._orders.pop(order_id, None)
        if order is None:
            return None
        rem = order.remaining
        order.remaining = 0
        own = self._bids if order.side is _BUY else self._asks
        level = own.levels[order.price]  # a live order's level is always the one at its price
        level.qty -= rem
        own.changed.add(level.price)
        if not level.qty:
            own.remove_level(level.price)
        else:
            level.dead += 1
            queue = level.queue
            if level.dead >= _COMPACT_MIN and level.dead * 2 >= len(queue):
                level.queue = deque(o for o in queue if o.remaining)
                level.dead = 0
        self.seq += 1
        return rem

    def get(self, order_id: int) -> RestingOrder | None:
        order = self._orders.get(order_id)
        return None if order is None else _view(order)

    def remaining(self, order_id: int) -> int:
        """Shares of `order_id` still resting; 0 once it has filled, been cancelled, or never was.

        The cheap question for callers that poll many of their own orders (no view is built).
        """
        order = self._orders.get(order_id)
        return 0 if order is None else order.remaining

    @property
    def trade_ids(self) -> int:
        """The last trade id given; the next trade gets the one after."""
        return self._trade_id

    def resume_trade_ids(self, last: int) -> None:
        """Number trades after `last`: a restarted market keeps its trade ids unique."""
        self._trade_id = max(self._trade_id, last)

    def best_bid(self) -> int | None:
        return self._bids.best

    def best_ask(self) -> int | None:
        return self._asks.best

    def depth(self, n: int = 10) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top `n` levels per side as (price, quantity): bids descending, asks ascending."""
        if type(n) is not int or not 1 <= n <= 50:
            raise ValueError(f"depth must be an int from 1 to 50, got {n!r}")
        return self._bids.top(n), self._asks.top(n)

    def all_levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Every level of both sides as (price, quantity), best first: the snapshot a diff
        stream starts from."""
        bids, asks = self._bids, self._asks
        return bids.top(len(bids.prices)), asks.top(len(asks.prices))

    def level_quantity(self, side: Side, price: int) -> int:
        level = (self._bids if side is _BUY else self._asks).levels.get(price)
        return 0 if level is None else level.qty

    def take_changes(self) -> BookDiff:
        """Levels changed since the previous call, with their current absolute quantities."""
        bids, asks = self._bids.take_changed(), self._asks.take_changed()
        diff = BookDiff(self.symbol, self._taken_seq, self.seq, bids, asks)
        self._taken_seq = self.seq
        return diff

    def __len__(self) -> int:
        return len(self._orders)

    def orders(self) -> Iterator[RestingOrder]:
        """Resting orders: bids then asks, best level first, time priority within a level."""
        for book_side in (self._bids, self._asks):
            for level in list(book_side.iter_levels()):
                yield from [_view(o) for o in level.queue if o.remaining]

    def __repr__(self) -> str:
        return f"OrderBook({self.symbol!r}, seq={self.seq}, orders={len(self._orders)})"


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OrderRejected(f"{what} must be an int, got {value!r}")
    if value <= 0:
        raise OrderRejected(f"{what} must be positive, got {value}")
    return int(value)  # an int subclass (e.g. IntEnum) becomes a plain int inside the book


def _view(order: Entry) -> RestingOrder:
    return RestingOrder(order.order_id, order.side, order.price, order.remaining, order.owner)
