"""The frames of the market streams: their JSON shapes, encoded once and framed for the wire once.

Every server frame is the seed's envelope `{"type", "data"}` plus `ts`, the time in epoch seconds by the
market's clock (the server's one clock; the wall clock when serving) when the frame was built (clients and load generators measure latency with it). A
`Frame` carries the encoded JSON and, lazily, the same text as a complete WebSocket frame, so the hub
builds a symbol's update once per interval and every subscriber's write just joins ready bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from marketsrv.engine import BookDiff
from marketsrv.market import Instrument, Market
from marketsrv.market.quote import quote
from marketsrv.market.state import TradeRecord
from marketsrv.market.stats import Candle


class Frame:
    """One server message: `payload` is its UTF-8 JSON, `data` the encoded `data` member alone."""

    __slots__ = ("_wire", "data", "payload", "seq", "ts", "type")

    def __init__(self, type: str, data: bytes, ts: float, seq: int | None = None) -> None:
        self.type = type
        self.data = data
        self.ts = ts
        # The book's sequence number on order_book and order_book_update frames; the trade id
        # on trade frames.
        self.seq = seq
        self.payload = b'{"type":"%s","data":%s,"ts":%s}' % (type.encode(), data, repr(ts).encode())
        self._wire: bytes | None = None

    @classmethod
    def stored(cls, type: str, payload: bytes, ts: float, seq: int | None = None) -> Frame:
        """A frame whose whole payload was encoded before (a user's event, kept in the outbox
        as it is sent); its `data` is not kept apart."""
        frame = cls.__new__(cls)
        frame.type, frame.data, frame.ts, frame.seq = type, b"", ts, seq
        frame.payload, frame._wire = payload, None
        return frame

    @property
    def text(self) -> str:
        return self.payload.decode()

    @property
    def wire(self) -> bytes:
        """The payload as one unmasked, final WebSocket text frame (RFC 6455, section 5.2)."""
        if self._wire is None:
            self._wire = ws_text_header(len(self.payload)) + self.payload
        return self._wire


def ws_text_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def frame(type: str, data: Any, ts: float) -> Frame:
    seq = data.get("seq") if type.startswith("order_book") else None
    return Frame(type, orjson.dumps(data), ts, seq)


def error_frame(ts: float, code: str, message: str, **extra: Any) -> Frame:
    return frame("error", {"code": code, "message": message, **extra}, ts)


def market_data(market: Market, symbol: str, now_ms: int) -> dict[str, Any]:
    """The seed's `market_data`: price, volume, high, low, change, changePercent, top of book,
    as of `now_ms` (every frame of one publish carries the same instant)."""
    q = quote(market, symbol)
    return {
        "symbol": symbol, "price": q.price, "volume": q.volume, "high": q.high, "low": q.low,
        "open": q.open, "previous_close": q.previous_close, "change": q.change,
        "changePercent": q.change_percent, "bid": q.bid, "ask": q.ask, "bid_size": q.bid_size,
        "ask_size": q.ask_size, "trades": q.trades, "seq": q.seq, "timestamp": now_ms,
        "state": q.state,
    }  # fmt: skip


def market_state(market: Market) -> dict[str, Any]:
    """The market's phase, its trading day, and the symbols halted (with why)."""
    session = market.session
    return {
        "state": session.phase,
        "trading_day": session.day.isoformat(),
        "calendar": market.calendar.mode,
        "next_change": session.until_ms,
        "halted": dict(market.halted),
    }


def _levels(rows: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Levels in cents as KES: price and the level's notional, exact to the cent."""
    return [{"price": p / 100, "quantity": q, "total": p * q / 100} for p, q in rows]


def order_book(market: Market, symbol: str, depth: int | None, now_ms: int) -> dict[str, Any]:
    """The top `depth` levels a side (None: the whole book), with the book's sequence number."""
    book = market.books[symbol]
    bids, asks = book.all_levels() if depth is None else book.depth(depth)
    return book_data(symbol, bids, asks, depth, book.seq, now_ms)


def book_data(
    symbol: str,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    depth: int | None,
    seq: int,
    now_ms: int,
) -> dict[str, Any]:
    """An `order_book` from its levels (best first, at most `depth` a side), whoever keeps them:
    the book itself, or an edge's mirror of it (scale/mirror.py), so both send the same bytes."""
    return {
        "symbol": symbol,
        "bids": _levels(bids),
        "asks": _levels(asks),
        "depth": depth if depth is not None else max(len(bids), len(asks)),
        "seq": seq,
        "timestamp": now_ms,
    }


def order_book_update(diff: BookDiff, now_ms: int) -> dict[str, Any]:
    """Changed levels with absolute quantities (0 removes the level), from `prev_seq` to `seq`."""
    return {
        "symbol": diff.symbol,
        "prev_seq": diff.prev_seq,
        "seq": diff.seq,
        "bids": [
            {"price": p / 100, "quantity": q} for p, q in sorted(diff.bids.items(), reverse=True)
        ],
        "asks": [{"price": p / 100, "quantity": q} for p, q in sorted(diff.asks.items())],
        "timestamp": now_ms,
    }


def trade(inst: Instrument, t: TradeRecord) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "id": t.trade_id,
        "price": inst.price(t.price),
        "quantity": t.quantity,
        "side": t.aggressor,
        "timestamp": t.timestamp_ms,
    }


def candle(inst: Instrument, c: Candle) -> dict[str, Any]:
    price = inst.price
    return {
        "symbol": inst.symbol,
        "interval": "1m",
        "time": c.start_ms,
        "open": price(c.open),
        "high": price(c.high),
        "low": price(c.low),
        "close": price(c.close),
        "volume": c.volume,
        "trades": c.trades,
    }
