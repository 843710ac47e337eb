"""The publisher: once per interval, encode each changed symbol's update once and offer it to
every subscriber, then wake their senders. It also watches connections: one whose write has been
stuck past the slow-client bound is closed (4008), and then dropped if it still does not drain;
one that has sent nothing, not even a pong, for too long is dropped as dead.

The hub never awaits a client: offering a frame is a dict assignment, so one slow or dead socket
cannot delay the others, the simulator or the REST API.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import orjson
import trio

from marketsrv.market import Market
from marketsrv.streams import frames
from marketsrv.streams.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_CONSUMER,
    Connection,
    StreamCounters,
)
from marketsrv.streams.frames import Frame, frame

log = logging.getLogger("marketsrv.streams")


@dataclass(frozen=True)
class HubSettings:
    max_connections: int = 1000
    slow_client_timeout_s: float = 5.0  # a write stuck this long closes the client (4008)
    dead_client_timeout_s: float = 60.0  # nothing received this long (pings unanswered): drop


Tap = Callable[[int, list[tuple[str, Frame]]], None]
_NOBODY: frozenset[Connection] = frozenset()


class _SymbolFrames:
    """One symbol's frames of one interval, each built on first use and then shared."""

    def __init__(self, market: Market, symbol: str, now_ms: int) -> None:
        self.market, self.symbol, self.now_ms, self.ts = market, symbol, now_ms, now_ms / 1000
        self._market_data: Frame | None = None
        self._books: dict[int | None, Frame] = {}

    def market_data(self) -> Frame:
        if self._market_data is None:
            data = frames.market_data(self.market, self.symbol, self.now_ms)
            self._market_data = frame("market_data", data, self.ts)
        return self._market_data

    def book(self, depth: int | None) -> Frame:
        f = self._books.get(depth)
        if f is None:
            data = frames.order_book(self.market, self.symbol, depth, self.now_ms)
            f = frame("order_book", data, self.ts)
            self._books[depth] = f
        return f


class Hub:
    def __init__(self, market: Market, settings: HubSettings | None = None) -> None:
        self.market = market
        self.settings = settings or HubSettings()
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        self._published_seq: dict[str, int] = {}
        self._part = {symbol: i for i, symbol in enumerate(market.books)}  # for spread publishes
        # Trades already in the log (restored from the database) are history, not news.
        self._trade_cursor: dict[str, int] = {
            s: log[-1].trade_id if log else 0 for s, log in market.trades.items()
        }
        self._state_version = market.state_version
        self.shutting_down = False  # set when the server stops accepting: no more patience
        self.publishes = 0
        self.counters = StreamCounters()  # what its connections sent
        self.slow_closed = 0
        self.dead_dropped = 0
        # A primary's bus publisher (scale/primary.py): every publish hands it the instant and
        # every frame built, of every symbol that changed, subscribed here or not.
        self.tap: Tap | None = None

    def now_s(self) -> float:
        """Frames' `ts`: seconds by the market's clock (the one clock of the server)."""
        return self.market.clock() / 1000

    # -- registry ----------------------------------------------------------------------------

    def full(self) -> bool:
        return len(self.connections) >= self.settings.max_connections

    def register(self, conn: Connection) -> None:
        self.connections.add(conn)

    def unregister(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for symbol in conn.symbols:
            self.subscribers[symbol].discard(conn)
        conn.symbols.clear()

    def subscribe(self, conn: Connection, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            trades = self.market.trades[symbol]
            last = trades[-1].trade_id if trades else 0
            if not self.subscribers[symbol] and self.tap is None:
                # Nobody watched it, so its cursor stood still: move it to now, or the first
                # publish would offer the whole kept history as "new" trades. (A tap watches
                # every symbol: its cursor never stands still.)
                self._trade_cursor[symbol] = last
            if symbol not in conn.symbols:
                conn.trades_after[symbol] = last  # its trade stream starts after this one
            conn.symbols.add(symbol)
            self.subscribers[symbol].add(conn)

    def unsubscribe(self, conn: Connection, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            conn.symbols.discard(symbol)
            self.subscribers[symbol].discard(conn)
            conn.forget(symbol)

    # -- snapshots on request ------------------------------------------------------------------

    def book_snapshot(self, symbol: str, depth: int | None) -> Frame:
        now_ms = self.market.clock()
        return frame(
            "order_book", frames.order_book(self.market, symbol, depth, now_ms), now_ms / 1000
        )

    def send_snapshots(
        self, conn: Connection, symbols: Iterable[str], order_book: bool = False
    ) -> None:
        """The current state of `symbols`, queued behind the replies already waiting."""
        now_ms = self.market.clock()
        ts = now_ms / 1000
        for symbol in symbols:
            if conn.market_data:
                data = frames.market_data(self.market, symbol, now_ms)
                conn.offer_market(symbol, frame("market_data", data, ts))
            if conn.order_book or order_book:
                if conn.book_mode == "diff":
                    conn.start_diffs(symbol, self.book_snapshot(symbol, None))
                else:
                    conn.offer_book(symbol, self.book_snapshot(symbol, conn.depth))
            if conn.candles:
                candles = self.market.stats[symbol].candles
                if candles:
                    inst = self.market.instruments[symbol]
                    conn.offer_candle(symbol, frame("candle", frames.candle(inst, candles[-1]), ts))
        conn.wake()

    # -- the interval ----------------------------------------------------------------------------

    def publish(self, part: int = 0, parts: int = 1) -> None:
        """Offer every subscriber the symbols that changed since the last call, then send.

        With `parts` > 1 only the symbols of `part` (a fixed share of them, every parts-th): the
        run loop spreads one interval's publish over `parts` calls, so that a client's updates do
        not all wait behind one burst written to every client in turn."""
        market, tap = self.market, self.tap
        now_ms = market.clock()  # one instant for every frame of this publish
        ts = now_ms / 1000
        tapped: list[tuple[str, Frame]] = []
        if market.state_version != self._state_version:
            self._state_version = market.state_version
            state = frame("market_state", frames.market_state(market), ts)
            for conn in self.connections:
                if conn.market_data:  # /ws/market/; a book-only client gets books only
                    conn.reply(state)
            tapped.append(("", state))
            self._published_seq.clear()  # every symbol's market_data again: its state changed
        for symbol in market.books if tap is not None else self.subscribers:
            if parts > 1 and self._part[symbol] % parts != part:
                continue
            subscribers = self.subscribers.get(symbol, _NOBODY)
            if not subscribers and tap is None:
                continue
            book = market.books[symbol]
            if self._published_seq.get(symbol) == book.seq:
                continue
            self._published_seq[symbol] = book.seq
            shared = _SymbolFrames(market, symbol, now_ms)
            diff = book.take_changes()
            diff_frame = None
            if diff.bids or diff.asks:
                diff_frame = frame("order_book_update", frames.order_book_update(diff, now_ms), ts)
            trade_frames = self._new_trades(symbol, subscribers, ts, tap is not None)
            candle_frame = None
            if tap is not None:
                tapped.append((symbol, shared.market_data()))
                if diff_frame is not None:
                    tapped.append((symbol, diff_frame))
                if trade_frames:
                    candle_frame = self._candle(symbol, ts)
                    tapped.append((symbol, candle_frame))
                    tapped.extend((symbol, f) for f in trade_frames)
            for conn in subscribers:
                if conn.market_data:
                    conn.offer_market(symbol, shared.market_data())
                if conn.order_book:
                    if conn.book_mode == "diff":
                        if diff_frame is not None:
                            conn.offer_book_update(symbol, diff_frame)
                    else:
                        conn.offer_book(symbol, shared.book(conn.depth))
                if conn.candles and trade_frames is not None:
                    if candle_frame is None:
                        candle_frame = self._candle(symbol, ts)
                    conn.offer_candle(symbol, candle_frame)
                if conn.trades and trade_frames:
                    after = conn.trades_after.get(symbol, 0)
                    for f in trade_frames:
                        if f.seq is None or f.seq > after:
                            conn.offer_trade(f)
        for conn in self.connections:
            conn.flush()
        self.publishes += 1
        if tap is not None:
            tap(now_ms, tapped)

    def _new_trades(
        self, symbol: str, subscribers: AbstractSet[Connection], ts: float, wanted: bool = False
    ) -> list[Frame] | None:
        """Trade frames since the last publish (None: no new trade); built only if someone wants
        them (`wanted`: the tap does)."""
        log_ = self.market.trades[symbol]
        cursor = self._trade_cursor[symbol]
        if not log_ or log_[-1].trade_id <= cursor:
            return None
        self._trade_cursor[symbol] = log_[-1].trade_id
        if not wanted and not any(c.trades for c in subscribers):
            return []
        inst = self.market.instruments[symbol]
        new = []
        for t in reversed(log_):
            if t.trade_id <= cursor:
                break
            new.append(Frame("trade", orjson.dumps(frames.trade(inst, t)), ts, t.trade_id))
        new.reverse()
        return new

    def _candle(self, symbol: str, ts: float) -> Frame:
        inst = self.market.instruments[symbol]
        return frame("candle", frames.candle(inst, self.market.stats[symbol].candles[-1]), ts)

    def close_all(self) -> None:
        """The server is stopping: every client gets a prompt 1001 "going away" (and its sender
        the watchdog's shorter patience) instead of waiting out the graceful timeout."""
        self.shutting_down = True
        for conn in self.connections:
            conn.close(CLOSE_GOING_AWAY, "the server is shutting down")

    def watch(self, nursery: trio.Nursery) -> None:
        """Close clients stuck past the slow bound; drop those that stay stuck, or went silent."""
        now = trio.current_time()
        slow, dead = self.settings.slow_client_timeout_s, self.settings.dead_client_timeout_s
        if self.shutting_down:
            slow = min(slow, 0.5)
        for conn in list(self.connections):
            stuck_for = 0.0 if conn.inflight_since is None else now - conn.inflight_since
            stuck = stuck_for > slow
            if stuck and conn.closing is None:
                self.slow_closed += 1
                log.info("closing a slow client: a write has been stuck for %.1f s", stuck_for)
                conn.close(CLOSE_SLOW_CONSUMER, f"slow consumer: fell more than {slow:g} s behind")
            elif stuck and conn.closing_since is not None and now - conn.closing_since > slow:
                self.dead_dropped += 1
                self.connections.discard(conn)
                nursery.start_soon(conn.transport.abort)
            else:
                last = conn.transport.last_received()
                if last is not None and now - last > dead:
                    self.dead_dropped += 1
                    self.connections.discard(conn)
                    log.info("dropping a client silent for %.0f s", now - last)
                    nursery.start_soon(conn.transport.abort)
