"""The live market: one order book per instrument, its session statistics, its recent trades,
and the state of its trading day (phase, halts, the day's price limits).

Every order, simulated or a user's, goes through `Market.submit`, so the printed price, volume,
high/low and candles can only come from trades that happened in a book, and no order can rest or
trade outside the day's price band. Outside continuous trading (pre-open, closed) orders rest
without matching until the opening auction uncrosses the book (days.py). The market is plain
synchronous code driven from the trio thread; it does no I/O.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

from marketsrv.engine import (
    OrderBook,
    OrderRejected,
    OrderResult,
    RestingOrder,
    Side,
    TimeInForce,
)
from marketsrv.market.calendar import Calendar, Phase, Session
from marketsrv.market.instruments import Instrument
from marketsrv.market.rules import PriceLimits, price_limits
from marketsrv.market.stats import Candle, SessionStats
from marketsrv.units import wall_clock_ms


class TradeRecord(NamedTuple):
    """A trade as the market keeps it. A tuple of plain ints and a str, so CPython's cyclic
    garbage collector stops tracking it: tens of thousands of kept trades cost it nothing."""

    trade_id: int
    price: int  # ticks
    quantity: int
    aggressor: Literal["buy", "sell"]  # the side of the incoming order
    timestamp_ms: int


class UnknownSymbol(KeyError):
    """No instrument of that symbol is listed."""


class MarketRefused(OrderRejected):
    """The market's rules refuse the order now: `code` says which (symbol_halted, market_closed,
    price_out_of_band). The trading service checks first, with the user's words; this is the
    guard that holds for every caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


State = Literal["pre_open", "open", "closed", "halted"]


class Market:
    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        clock: Callable[[], int] = wall_clock_ms,
        trade_history: int = 1000,
        candle_history: int = 1440,
        currency: str = "KES",
        calendar: Calendar | None = None,
    ) -> None:
        self.clock = clock
        self.currency = currency  # of every price and amount: the universe file's
        self.calendar = calendar or Calendar()
        self.session: Session = self.calendar.session_at(clock())
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in instruments}
        self.books: dict[str, OrderBook] = {s: OrderBook(s, clock) for s in self.instruments}
        self.stats: dict[str, SessionStats] = {
            s: SessionStats(i.reference_cents, candle_history) for s, i in self.instruments.items()
        }
        self.trades: dict[str, deque[TradeRecord]] = {
            s: deque(maxlen=trade_history) for s in self.instruments
        }
        self.daily: dict[str, list[Candle]] = {s: [] for s in self.instruments}  # past days' bars
        self.limits: dict[str, PriceLimits] = {}
        for symbol in self.instruments:
            self.update_limits(symbol)
        self.halted: dict[str, str] = {}  # symbol -> why, set by an operator's scenario
        # Bumped whenever a phase or a halt changes: the streams publish the market's state then.
        self.state_version = 0
        # When each symbol's book or statistics last changed, for `last_updated`.
        self.updated_ms: dict[str, int] = dict.fromkeys(self.instruments, clock())
        self._order_ids = itertools.count(1)
        # Called with (symbol, result) after every submit that traded or cancelled a resting
        # order by self-trade prevention: the trading service settles users' fills from here.
        self.listeners: list[Callable[[str, OrderResult], None]] = []
        # Called with (symbol, orders, why) when resting orders leave the book because a new
        # day's price limits exclude them: the trading service closes users' and frees holds.
        self.expiry_listeners: list[Callable[[str, list[RestingOrder], str], None]] = []
        # Called after each day roll, the closes now being the previous closes (equity).
        self.roll_listeners: list[Callable[[], None]] = []

    @property
    def symbols(self) -> list[str]:
        return list(self.instruments)

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self.instruments[symbol]
        except KeyError:
            raise UnknownSymbol(symbol) from None

    def next_order_id(self) -> int:
        return next(self._order_ids)

    @property
    def phase(self) -> Phase:
        return self.session.phase

    def state_of(self, symbol: str) -> State:
        return "halted" if symbol in self.halted else self.session.phase

    def update_limits(self, symbol: str) -> None:
        inst = self.instruments[symbol]
        self.limits[symbol] = price_limits(
            self.stats[symbol].previous_close, inst.band_bps, inst.ticks
        )

    def allows(self, symbol: str, price: int) -> bool:
        """Whether `price` (cents) may rest or trade today: on the tick grid, inside the limits."""
        return self.limits[symbol].contains(price) and self.instruments[symbol].ticks.is_valid(
            price
        )

    def expire_outside_limits(self, symbol: str) -> list[RestingOrder]:
        """Take out of the book every resting order today's limits or tick grid exclude (after a
        day roll): no order may rest, nor trade, outside the day's band. Tells the listeners."""
        book = self.books[symbol]
        gone = [o for o in book.orders() if not self.allows(symbol, o.price)]
        for order in gone:
            book.cancel(order.order_id)
        if gone:
            self.updated_ms[symbol] = self.clock()
            why = f"outside today's price limits ({self.limits[symbol].describe()})"
            for listener in self.expiry_listeners:
                listener(symbol, gone, why)
        return gone

    def halt(self, symbol: str, reason: str) -> None:
        self.instrument(symbol)
        self.halted[symbol] = reason
        self.state_version += 1

    def resume(self, symbol: str) -> None:
        if self.halted.pop(self.instrument(symbol).symbol, None) is not None:
            self.state_version += 1

    def submit(
        self,
        symbol: str,
        side: Side,
        quantity: int,
        price: int | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        owner: str | None = None,
        order_id: int | None = None,
    ) -> OrderResult:
        """Send an order to the symbol's book and record what traded. Prices are cents.

        A market order (no price) trades at most to the edge of the day's price band; a price
        outside the band, an order on a halted symbol, and outside continuous trading anything
        but a resting limit order raise MarketRefused.
        """
        book = self.books.get(symbol)
        if book is None:
            raise UnknownSymbol(symbol)
        if symbol in self.halted:
            raise MarketRefused("symbol_halted", f"{symbol} is halted: {self.halted[symbol]}")
        limits = self.limits[symbol]
        if price is None:
            price = limits.high if side is Side.BUY else limits.low
        elif not limits.contains(price):
            raise MarketRefused(
                "price_out_of_band",
                f"price outside today's limits for {symbol} ({limits.describe()})",
            )
        match = self.session.phase == "open"
        if not match and tif is not TimeInForce.GTC:
            raise MarketRefused(
                "market_closed",
                f"the market is {self.session.phase.replace('_', '-')}: only limit orders that"
                " rest (gtc) are taken until it opens",
            )
        return self._submit(book, symbol, side, quantity, price, tif, owner, order_id, match)

    def reinstate(
        self, symbol: str, side: Side, quantity: int, price: int, owner: str, order_id: int
    ) -> OrderResult:
        """Put back an order that rested before a restart (the caller checked `allows`); it
        matches only if the market is open for it, and a halt does not refuse it."""
        match = self.state_of(symbol) == "open"
        return self._submit(
            self.books[symbol], symbol, side, quantity, price, TimeInForce.GTC, owner, order_id,
            match,
        )  # fmt: skip

    def _submit(
        self, book: OrderBook, symbol: str, side: Side, quantity: int, price: int,
        tif: TimeInForce, owner: str | None, order_id: int | None, match: bool,
    ) -> OrderResult:  # fmt: skip
        if order_id is None:
            order_id = next(self._order_ids)
        seq = book.seq
        result = book.submit(order_id, side, quantity, price, tif, owner, match=match)
        if result.trades or result.self_trade_cancels:  # most quotes just rest: no call
            self.record(symbol, result)
        if book.seq != seq:
            self.updated_ms[symbol] = self.clock()
        return result

    def record(self, symbol: str, result: OrderResult) -> None:
        """Take `result`'s trades into the statistics and the trade log, and tell the listeners."""
        if result.trades:
            stats = self.stats[symbol]
            log = self.trades[symbol]
            for trade in result.trades:
                stats.record(trade.price, trade.quantity, trade.timestamp_ms)
                log.append(
                    TradeRecord(
                        trade.trade_id,
                        trade.price,
                        trade.quantity,
                        "buy" if trade.aggressor is Side.BUY else "sell",
                        trade.timestamp_ms,
                    )
                )
        if self.listeners and (result.trades or result.self_trade_cancels):
            for listener in self.listeners:
                listener(symbol, result)

    def cancel(self, symbol: str, order_id: int) -> int | None:
        book = self.books.get(symbol)
        if book is None:
            raise UnknownSymbol(symbol)
        removed = book.cancel(order_id)
        if removed is not None:
            self.updated_ms[symbol] = self.clock()
        return removed

    def top_of_book(self, symbol: str) -> tuple[int | None, int, int | None, int]:
        """Best bid price and size, best ask price and size (ticks, shares; 0 size when empty)."""
        book = self.books[symbol]
        bid, ask = book.best_bid(), book.best_ask()
        bid_size = book.level_quantity(Side.BUY, bid) if bid is not None else 0
        ask_size = book.level_quantity(Side.SELL, ask) if ask is not None else 0
        return bid, bid_size, ask, ask_size
