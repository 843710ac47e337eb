"""The live market: one order book per instrument, its session statistics and its recent trades.

Every order, simulated or a user's, goes through `Market.submit`, so the printed price, volume,
high/low and candles can only come from trades that happened in a book. The market is plain
synchronous code driven from the trio thread; it does no I/O.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

from marketsrv.engine import OrderBook, OrderResult, Side, TimeInForce
from marketsrv.market.instruments import Instrument
from marketsrv.market.stats import SessionStats
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


class Market:
    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        clock: Callable[[], int] = wall_clock_ms,
        trade_history: int = 1000,
        candle_history: int = 1440,
        currency: str = "KES",
    ) -> None:
        self.clock = clock
        self.currency = currency  # of every price and amount: the universe file's
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in instruments}
        self.books: dict[str, OrderBook] = {s: OrderBook(s, clock) for s in self.instruments}
        self.stats: dict[str, SessionStats] = {
            s: SessionStats(i.reference_ticks, candle_history) for s, i in self.instruments.items()
        }
        self.trades: dict[str, deque[TradeRecord]] = {
            s: deque(maxlen=trade_history) for s in self.instruments
        }
        # When each symbol's book or statistics last changed, for `last_updated`.
        self.updated_ms: dict[str, int] = dict.fromkeys(self.instruments, clock())
        self._order_ids = itertools.count(1)
        # Called with (symbol, result) after every submit that traded or cancelled a resting
        # order by self-trade prevention: the trading service settles users' fills from here.
        self.listeners: list[Callable[[str, OrderResult], None]] = []

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
        """Send an order to the symbol's book and record what traded. Prices are ticks."""
        book = self.books.get(symbol)
        if book is None:
            raise UnknownSymbol(symbol)
        if order_id is None:
            order_id = next(self._order_ids)
        seq = book.seq
        result = book.submit(order_id, side, quantity, price, tif, owner)
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
        if book.seq != seq:
            self.updated_ms[symbol] = self.clock()
        if self.listeners and (result.trades or result.self_trade_cancels):
            for listener in self.listeners:
                listener(symbol, result)
        return result

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
