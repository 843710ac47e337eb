"""The primary's side of the bus: every publish of the hub becomes one stream entry.

The hub hands its `tap` the frames it built (of every symbol that changed, watched here or not).
The tap, on the trio thread, turns them into an entry; every `wire.CHECKPOINT_EVERY` entries it
also writes the snapshot as of that entry (what changed since the last one: the newest lines, and
the books read at that instant). The sender task writes what is waiting in one transaction. The
market never waits for Redis: when the bus is slow or down, waiting entries are dropped past a
bound (the edges see the gap in `n` and re-join) and the next entry carries the whole snapshot.
"""

from __future__ import annotations

import logging
import secrets

import trio

from marketsrv.market import Market
from marketsrv.runtime import Figure
from marketsrv.scale import bus, wire
from marketsrv.settings import Settings
from marketsrv.streams import frames
from marketsrv.streams.frames import Frame, frame

log = logging.getLogger("marketsrv.scale")

MAX_WAITING = 50  # entries (2.5 s at the defaults) before the waiting ones are dropped


class Publisher:
    def __init__(self, market: Market, settings: Settings, universe: str) -> None:
        self.market = market
        self.settings = settings
        self.universe = universe
        self.epoch = secrets.token_hex(8).encode()  # new at every start: edges start over
        self.n = 0
        self._waiting: list[tuple[dict[str, bytes], dict[bytes, bytes], bool]] = []
        self._whole_next = True  # the next entry carries every symbol and replaces the hash
        self._whole_size = 0  # how many fields the whole snapshot has
        # Since the last checkpoint: the newest lines of the snapshot, and the symbols whose book
        # changed (their levels are read at the next checkpoint, as they are then).
        self._fields: dict[bytes, bytes] = {}
        self._dirty: set[str] = set()
        self._ready = trio.Event()
        self.published = 0  # entries written
        self.dropped = 0  # entries dropped while the bus was slow or down

    def figures(self) -> list[Figure]:
        return [
            ("counter", "entries_published", "Stream entries written to the bus.", self.published),
            ("counter", "entries_dropped", "Entries dropped while the bus was slow or down.",
             self.dropped),
            ("gauge", "entries_waiting", "Entries waiting to be written.", len(self._waiting)),
        ]  # fmt: skip

    # -- on the trio thread, inside the hub's publish --------------------------------------------

    def tap(self, now_ms: int, tapped: list[tuple[str, Frame]]) -> None:
        if len(self._waiting) >= MAX_WAITING:
            self.dropped += len(self._waiting)
            self._waiting.clear()
            self._whole_next = True
        self.n += 1
        whole, self._whole_next = self._whole_next, False
        if whole:
            self._fields, self._dirty = self._whole(now_ms), set(self.market.instruments)
        lines = []
        for symbol, f in tapped:
            lines.append(wire.line(symbol, f))
            self._note(now_ms, symbol, f, lines[-1])
        snapshot: dict[bytes, bytes] = {}
        if whole or self.n % wire.CHECKPOINT_EVERY == 0:
            snapshot, self._fields = self._fields, {}
            for symbol in self._dirty:
                snapshot[b"book:" + symbol.encode()] = self._book(symbol)
            self._dirty.clear()
            snapshot[wire.META] = wire.meta(self.epoch, self.n, now_ms, self.universe)
        self._waiting.append((wire.entry(self.epoch, self.n, now_ms, lines), snapshot, whole))
        self._ready.set()

    def _note(self, now_ms: int, symbol: str, f: Frame, line: bytes) -> None:
        """What frame `f` of this publish changes in the snapshot."""
        if f.type == "market_state":
            self._fields[wire.STATE] = wire.stamped(now_ms, line)
        elif f.type == "market_data":  # the symbol changed
            self._fields[b"md:" + symbol.encode()] = wire.stamped(now_ms, line)
            self._dirty.add(symbol)
        elif f.type == "candle":
            self._fields[b"candle:" + symbol.encode()] = wire.stamped(now_ms, line)

    def _book(self, symbol: str) -> bytes:
        book, trades = self.market.books[symbol], self.market.trades[symbol]
        bids, asks = book.all_levels()
        return wire.book_record(book.seq, bids, asks, trades[-1].trade_id if trades else 0)

    def _whole(self, now_ms: int) -> dict[bytes, bytes]:
        """Every symbol's lines, as of now (their books are read at the checkpoint)."""
        market, ts = self.market, now_ms / 1000
        state = frame("market_state", frames.market_state(market), ts)
        self._fields = {wire.STATE: wire.stamped(now_ms, wire.line("", state))}
        for symbol, inst in market.instruments.items():
            md = frame("market_data", frames.market_data(market, symbol, now_ms), ts)
            self._note(now_ms, symbol, md, wire.line(symbol, md))
            candles = market.stats[symbol].candles
            if candles:
                candle = frame("candle", frames.candle(inst, candles[-1]), ts)
                self._note(now_ms, symbol, candle, wire.line(symbol, candle))
        return self._fields

    # -- the sender task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write waiting entries until cancelled, connecting again whenever the bus fails."""
        settings = self.settings
        task_status.started()
        log.info("publishing the market to the bus as epoch %s", self.epoch.decode())
        await bus.keep_connected(
            settings.bus_url, settings.bus_prefix, settings.bus_max_entries, self._serve,
            self._failed,
        )  # fmt: skip

    async def _serve(self, b: bus.Bus, retry: bus.Retry) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            await self._send(b)
            retry.reset()

    def _failed(self) -> None:
        """What waits is dropped (the edges see the gap), and the next entry starts over whole."""
        self.dropped += len(self._waiting)
        self._waiting.clear()
        self._whole_next = True

    async def _send(self, b: bus.Bus) -> None:
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        snapshot: dict[bytes, bytes] = {}
        for _, fields, _ in waiting:
            snapshot.update(fields)  # in order: the newest value of each field wins
        whole = any(w for _, _, w in waiting)  # the merged fields hold that whole snapshot
        try:
            size = await b.publish([e for e, _, _ in waiting], snapshot, reset=whole)
        except bus.BusError:
            self.dropped += len(waiting)  # their numbers stay used: the edges see the gap
            raise
        self.published += len(waiting)
        if whole:
            self._whole_size = size
        elif snapshot and size < self._whole_size and not self._whole_next:
            log.warning("the bus lost its snapshot (Redis restarted?): writing it whole again")
            self._whole_next = True
