"""Value types of the matching engine: sides, order kinds, trades and the result of an order.

Prices inside the engine are integers (the market uses cents) and quantities are integer shares;
the edges (REST, simulator, storage) convert to and from money. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.Enum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(enum.Enum):
    GTC = "gtc"  # good till cancelled: the unfilled remainder rests in the book
    IOC = "ioc"  # immediate or cancel: fill what crosses now, cancel the rest
    FOK = "fok"  # fill or kill: fill the whole quantity now or nothing at all


class OrderRejected(ValueError):
    """The engine refused an order outright (bad quantity, duplicate id, limit without price)."""


@dataclass(slots=True, frozen=True)
class Trade:
    """One fill between a resting (maker) order and an incoming (taker) order."""

    trade_id: int
    symbol: str
    price: int  # the resting order's price (in an auction: the one uncrossing price)
    quantity: int
    aggressor: Side  # the taker's side
    maker_order_id: int
    taker_order_id: int
    maker_owner: str | None
    taker_owner: str | None
    maker_remaining: int  # what is left of the maker order after this fill (0: fully filled)
    timestamp_ms: int
    seq: int  # the book's sequence number after the operation that made this trade


@dataclass(slots=True)
class OrderResult:
    """What happened to one submitted order, in the order it happened."""

    order_id: int
    side: Side
    quantity: int
    trades: list[Trade] = field(default_factory=list)
    filled: int = 0  # shares filled now
    resting: int = 0  # shares left resting in the book (GTC limit only)
    cancelled: int = 0  # shares not filled and not resting (IOC/FOK/market remainder, self-trade)
    # Resting orders of the same owner removed by self-trade prevention: (order_id, quantity removed).
    self_trade_cancels: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class RestingOrder:
    """A read-only view of an order resting in the book."""

    order_id: int
    side: Side
    price: int
    remaining: int
    owner: str | None


@dataclass(slots=True, frozen=True)
class BookDiff:
    """Levels changed between two points of a book's history, with their new absolute quantities.

    A quantity of 0 means the level is gone. Applying the diff to a snapshot taken at `prev_seq`
    gives the book at `seq`.
    """

    symbol: str
    prev_seq: int
    seq: int
    bids: dict[int, int]
    asks: dict[int, int]
