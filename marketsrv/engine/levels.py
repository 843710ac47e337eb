"""The containers behind an order book: resting entries, FIFO price levels and book sides.

Private to the engine (book.py drives them); split out so the matching logic reads on its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from sortedcontainers import SortedList

from marketsrv.engine.types import Side, Trade

_BUY = Side.BUY


def _new_trade_factory() -> Callable[..., Trade]:
    """Build Trade instances without the frozen dataclass `__init__`.

    The generated `__init__` of a frozen dataclass calls `object.__setattr__` once per field, which
    costs several times the rest of a fill. Writing the slots through their descriptors yields an
    identical, equal, still-frozen `Trade`; tests pin that it matches the real constructor.
    """
    fields = Trade.__slots__
    names = ", ".join(fields)
    lines = [f"def new_trade({names}):", "    t = _new(_Trade)"]
    lines += [f"    _set_{f}(t, {f})" for f in fields]
    lines.append("    return t")
    scope: dict[str, object] = {"_new": object.__new__, "_Trade": Trade}
    scope.update({f"_set_{f}": Trade.__dict__[f].__set__ for f in fields})
    exec("\n".join(lines), scope)
    return scope["new_trade"]  # type: ignore[return-value]


new_trade = _new_trade_factory()


class Entry:
    # No reference back to the Level: Level -> deque -> Entry -> Level would be a reference
    # cycle, and every filled or cancelled order would then wait for the cyclic garbage
    # collector (whose full passes showed up as 50-100 ms stalls of the streams).
    __slots__ = ("arrival", "order_id", "owner", "price", "remaining", "side")

    def __init__(
        self,
        order_id: int,
        side: Side,
        price: int,
        remaining: int,
        owner: str | None,
        arrival: int,
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.remaining = remaining  # 0 marks a cancelled entry still sitting in its deque
        self.owner = owner
        # The book's seq when the order rested: unique and increasing, so it orders arrivals
        # across both sides (the opening auction's self-trade rule cancels the later one).
        self.arrival = arrival


class Level:
    __slots__ = ("dead", "price", "qty", "queue")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0  # live quantity: always the sum of `remaining` over live orders
        self.queue: deque[Entry] = deque()
        self.dead = 0  # cancelled entries not yet dropped from `queue`


class BookSide:
    """One side's levels; `best` is cached so the hot path never asks the SortedList."""

    __slots__ = ("best", "best_index", "changed", "levels", "prices", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: dict[int, Level] = {}
        self.prices: SortedList = SortedList()
        self.best: int | None = None
        self.best_index = -1 if side is _BUY else 0  # bids: highest price; asks: lowest
        self.changed: set[int] = set()  # prices touched since the last take_changes()

    def add_level(self, price: int) -> Level:
        level = Level(price)
        self.levels[price] = level
        self.prices.add(price)
        best = self.best
        if best is None or (price > best if self.side is _BUY else price < best):
            self.best = price
        return level

    def remove_level(self, price: int) -> None:
        del self.levels[price]
        prices = self.prices
        if price == self.best:
            prices.pop(self.best_index)
            self.best = prices[self.best_index] if prices else None
        else:
            prices.remove(price)

    def iter_levels(self) -> Iterator[Level]:
        """Levels best first."""
        levels = self.levels
        return (levels[p] for p in self.prices.islice(reverse=self.side is _BUY))

    def top(self, n: int) -> list[tuple[int, int]]:
        prices, levels = self.prices, self.levels
        if self.side is _BUY:
            best_n = prices.islice(max(0, len(prices) - n), reverse=True)
        else:
            best_n = prices.islice(0, n)
        return [(p, levels[p].qty) for p in best_n]

    def take_changed(self) -> dict[int, int]:
        """Current quantity (0: gone) of each price touched since the last call."""
        levels = self.levels
        out = {p: (levels[p].qty if p in levels else 0) for p in self.changed}
        self.changed.clear()
        return out
