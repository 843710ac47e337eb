"""An edge's copy of one symbol: its book's levels, kept from the primary's diffs, and its newest
frames. It has no orders, only what the streams show: price levels, seq, the last trade's id."""

from __future__ import annotations

from itertools import islice
from operator import neg

import orjson
from sortedcontainers import SortedDict

from marketsrv.scale.wire import Levels, SymbolState
from marketsrv.streams import frames
from marketsrv.streams.frames import Frame, frame


class OutOfStep(Exception):
    """What the bus brought no longer follows the mirror (lost entries, a new epoch, a broken
    diff chain): the edge must re-join from a snapshot."""


class BookMirror:
    __slots__ = ("asks", "bids", "candle", "last_trade", "market_data", "seq", "symbol")

    def __init__(self, symbol: str, state: SymbolState) -> None:
        self.symbol = symbol
        self.bids: SortedDict[int, int] = SortedDict(neg, state.bids)  # best (highest) first
        self.asks: SortedDict[int, int] = SortedDict(state.asks)
        self.seq = state.seq
        self.last_trade = state.last_trade
        self.market_data: Frame = state.market_data
        self.candle: Frame | None = state.candle

    def levels(self, depth: int | None) -> tuple[Levels, Levels]:
        return list(islice(self.bids.items(), depth)), list(islice(self.asks.items(), depth))

    def book(self, depth: int | None, now_ms: int) -> Frame:
        """The `order_book` frame the primary's book would give at this seq."""
        bids, asks = self.levels(depth)
        data = frames.book_data(self.symbol, bids, asks, depth, self.seq, now_ms)
        return frame("order_book", data, now_ms / 1000)

    def apply(self, update: Frame) -> None:
        """Apply an `order_book_update` (absolute quantities; 0 removes the level)."""
        diff = orjson.loads(update.data)
        if diff["prev_seq"] != self.seq:
            raise OutOfStep(
                f"{self.symbol}: an update from seq {diff['prev_seq']}, the mirror is at {self.seq}"
            )
        for side, levels in ((self.bids, diff["bids"]), (self.asks, diff["asks"])):
            for level in levels:
                price = round(level["price"] * 100)  # two decimals: exact back to cents
                if level["quantity"]:
                    side[price] = level["quantity"]
                else:
                    side.pop(price, None)
        self.seq = diff["seq"]
