"""One WebSocket client of the streams: what it subscribed to, what waits to be sent, and its sender.

The hub offers frames; the connection keeps them in a bounded outbox in which market data, books and
candles are conflated to the latest frame per symbol, while replies (confirmations, pongs, errors)
and trades are never dropped. A diff-mode book keeps its updates in order and, once it is too far
behind, is replaced by one fresh snapshot. One sender task per connection drains the outbox in a
single write, so a slow socket holds up only its own task: the hub never waits for a client.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import trio

from marketsrv.streams.frames import Frame
from marketsrv.streams.transport import Transport
from marketsrv.units import DEFAULT_DEPTH

BookMode = Literal["snapshot", "diff"]
MAX_PENDING_DIFFS = 20  # two seconds of diffs at the default interval, then a fresh snapshot
MAX_PENDING_TRADES = 5000
MAX_PENDING_REPLIES = 256

# Close codes (docs/protocol.md).
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 4008
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_UNKNOWN_SYMBOL = 4004


Stream = Literal["market", "orderbook", "user", "chat"]


@dataclass(slots=True)
class StreamCounters:
    """What every connection of a hub sent, for /metrics: plain numbers of the trio thread."""

    frames_sent: int = 0
    bytes_sent: int = 0  # the messages' payloads, before WebSocket framing
    conflated: int = 0  # updates replaced by a newer one of their symbol before being sent


class Connection:
    """The subscription state and outbox of one socket; mutated only from the trio thread."""

    def __init__(
        self,
        transport: Transport,
        *,
        stream: Stream = "market",
        counters: StreamCounters | None = None,
        market_data: bool = True,
        book_snapshot: Callable[[str, int | None], Frame] | None = None,
        max_replies: int = MAX_PENDING_REPLIES,
    ) -> None:
        self.transport = transport
        self.stream = stream
        self.counters = counters or StreamCounters()
        self.max_replies = max_replies  # more waiting than this: the client is not reading
        self.market_data = market_data  # False on /ws/orderbook/<symbol>/: books only
        self.symbols: set[str] = set()
        self.order_book = not market_data
        self.depth = DEFAULT_DEPTH
        self.book_mode: BookMode = "snapshot"
        self.trades = False
        self.trades_after: dict[str, int] = {}  # per symbol: the last trade before it subscribed
        self.candles = False
        self.batch = False
        self._book_snapshot = book_snapshot
        # The outbox.
        self._replies: deque[Frame] = deque()
        self._market: dict[str, Frame] = {}
        self._book: dict[str, Frame] = {}  # snapshot mode: the latest book per symbol
        self._books: dict[str, list[Frame]] = {}  # diff mode: a snapshot and updates, in order
        self._book_seq: dict[str, int] = {}  # diff mode: seq of the last book queued per symbol
        self._resync: set[str] = set()
        self._candles: dict[str, Frame] = {}
        self._trades: deque[Frame] = deque()
        self._wake = trio.Event()
        self._sending = False  # the sender task is writing: nobody else may
        self._rest = b""  # what a write of the publish's fan-out left for the sender task
        # Sender state, read by the hub's watchdog.
        self.inflight_since: float | None = None
        self.closing: tuple[int, str] | None = None
        self.closing_since: float | None = None

    # -- what the hub and the session put in -------------------------------------------------

    def reply(self, frame: Frame) -> None:
        """Confirmations, pongs and errors: never conflated or dropped."""
        if self.closing:
            return
        if len(self._replies) >= self.max_replies:
            self.close(CLOSE_POLICY, "too many requests waiting for replies")
            return
        self._replies.append(frame)
        self._wake.set()

    def offer_market(self, symbol: str, frame: Frame) -> None:
        if not self.closing:
            if symbol in self._market:
                self.counters.conflated += 1
            self._market[symbol] = frame

    def offer_book(self, symbol: str, frame: Frame) -> None:
        """Snapshot mode: an `order_book` frame replaces the one of this symbol still waiting."""
        if not self.closing:
            if symbol in self._book:
                self.counters.conflated += 1
            self._book[symbol] = frame

    def start_diffs(self, symbol: str, frame: Frame) -> None:
        """Diff mode: a whole-book `order_book` that the updates after it build on."""
        if not self.closing:
            self._books[symbol] = [frame]
            self._resync.discard(symbol)
            if frame.seq is not None:
                self._book_seq[symbol] = frame.seq

    def offer_book_update(self, symbol: str, frame: Frame) -> None:
        """An `order_book_update`: kept in order after what waits; too many become one snapshot.

        An update the last queued book already contains (its seq is not newer) is dropped, so
        the first update after a snapshot always has `prev_seq <= snapshot seq < seq`.
        """
        if self.closing or symbol in self._resync:
            return
        if frame.seq is not None and frame.seq <= self._book_seq.get(symbol, -1):
            return
        if frame.seq is not None:
            self._book_seq[symbol] = frame.seq
        pending = self._books.setdefault(symbol, [])
        if len(pending) >= MAX_PENDING_DIFFS:
            pending.clear()
            self._resync.add(symbol)
        else:
            pending.append(frame)

    def offer_candle(self, symbol: str, frame: Frame) -> None:
        if not self.closing:
            if symbol in self._candles:
                self.counters.conflated += 1
            self._candles[symbol] = frame

    def offer_trade(self, frame: Frame) -> None:
        if self.closing:
            return
        if len(self._trades) >= MAX_PENDING_TRADES:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: trade backlog over its bound")
            return
        self._trades.append(frame)

    def forget(self, symbol: str) -> None:
        """Drop whatever waits for an unsubscribed symbol."""
        self.trades_after.pop(symbol, None)
        self._market.pop(symbol, None)
        self._book.pop(symbol, None)
        self._books.pop(symbol, None)
        self._book_seq.pop(symbol, None)
        self._resync.discard(symbol)
        self._candles.pop(symbol, None)

    def wake(self) -> None:
        if (
            self._replies
            or self._market
            or self._book
            or self._books
            or self._resync
            or self._candles
            or self._trades
        ):
            self._wake.set()

    def flush(self) -> None:
        """The publish's fan-out: write what waits at once, when the socket takes it without
        waiting (one send, no task switch per client); else, or for what it did not take, the
        sender task writes it, in order."""
        busy = self._sending or self._rest or self.closing is not None
        if busy or not self.transport.can_write_now():
            self.wake()
            return
        batch = self.take()
        if batch:
            self._rest = self.transport.write_now(batch)
            self._sent(batch)
            if self._rest:
                self._wake.set()

    def _sent(self, batch: list[Frame]) -> None:
        counters = self.counters
        counters.frames_sent += len(batch)
        counters.bytes_sent += sum([len(f.payload) for f in batch])

    def close(self, code: int, reason: str) -> None:
        """Stop taking data, send what replies wait, then close with `code`."""
        if self.closing is None:
            self.closing = (code, reason)
            self.closing_since = trio.current_time()
            self._market.clear()
            self._book.clear()
            self._books.clear()
            self._resync.clear()
            self._candles.clear()
            self._trades.clear()
        self._wake.set()

    # -- the sender --------------------------------------------------------------------------

    def take(self) -> list[Frame]:
        """Everything that waits, in send order: replies, then per symbol data, then trades."""
        out = list(self._replies)
        self._replies.clear()
        if self._market:
            if self.batch and len(self._market) > 1:
                out.append(bulk_update(list(self._market.values())))
            else:
                out.extend(self._market.values())
            self._market.clear()
        if self._book:
            out.extend(self._book.values())
            self._book.clear()
        if self._resync and self._book_snapshot is not None:
            for symbol in list(self._resync):
                self.start_diffs(symbol, self._book_snapshot(symbol, None))
        for pending in self._books.values():
            out.extend(pending)
        self._books.clear()
        if self._candles:
            out.extend(self._candles.values())
            self._candles.clear()
        if self._trades:
            out.extend(self._trades)
            self._trades.clear()
        return out

    async def run_sender(self) -> None:
        """Drain the outbox whenever woken; close the socket once `close()` was asked for."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            self._sending = True
            try:
                if self._rest:  # first what the fan-out's write left
                    rest, self._rest = self._rest, b""
                    self.inflight_since = trio.current_time()
                    await self.transport.write_rest(rest)
                    self.inflight_since = None
                batch = self.take()
                if batch:
                    self.inflight_since = trio.current_time()
                    await self.transport.send(batch)
                    self.inflight_since = None
                    self._sent(batch)
            finally:
                self._sending = False
            if self.closing is not None:
                await self.transport.close(*self.closing)
                return


def bulk_update(items: list[Frame]) -> Frame:
    """Several `market_data` updates in one frame, from their already encoded data."""
    data = b'{"updates":[' + b",".join(f.data for f in items) + b"]}"
    return Frame("bulk_update", data, max(f.ts for f in items))
