"""An edge: the market streams served from the bus, with no simulator and no ledger.

`EdgeHub` is the stream hub over a mirror of every symbol instead of a market: its clients
subscribe, get snapshots and updates exactly as on the primary (the same frames, byte for
byte: the updates are the primary's own bytes, and the snapshots are built from the mirror by
the primary's code). `follow` keeps the mirror: it joins (the snapshot and the newest entries,
read in one transaction: the snapshot, then the entries after its checkpoint), then applies
entry after entry. Anything out of step (a new
epoch, a lost entry, a broken diff chain) makes it join again, and then every client gets fresh
snapshots of what it watches: a fresh book, never a wrong one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import trio

from marketsrv.market import Market
from marketsrv.runtime import Figure
from marketsrv.scale import bus, wire
from marketsrv.scale.mirror import BookMirror, OutOfStep
from marketsrv.settings import Settings
from marketsrv.streams import Hub, HubSettings
from marketsrv.streams.connection import Connection
from marketsrv.streams.frames import Frame

log = logging.getLogger("marketsrv.scale")

READ_COUNT = 100  # entries read at once (10 s of the default interval)
BLOCK_MS = 1000  # a read waits this long for the first entry (keep it short: see the notes)
JOIN_RETRY_S = 0.5  # while the primary has not written a whole snapshot yet


class EdgeHub(Hub):
    def __init__(self, market: Market, settings: HubSettings | None = None) -> None:
        super().__init__(market, settings)
        self.books: dict[str, BookMirror] = {}
        self.state: Frame | None = None
        self.epoch = b""
        self.n = 0
        self.now_ms = 0  # the newest entry's instant
        self.joins = 0
        self.applied = 0
        self.also_close: list[Callable[[], None]] = []  # the forwarded sockets' close_all

    def close_all(self) -> None:
        super().close_all()
        for close in self.also_close:
            close()

    def figures(self) -> list[Figure]:
        behind = (self.market.clock() - self.now_ms) / 1000 if self.now_ms else 0.0
        return [
            ("counter", "joins", "Times this edge joined the bus (a new epoch, a gap...).",
             self.joins),
            ("counter", "entries_applied", "Stream entries applied to the mirror.", self.applied),
            ("gauge", "behind_seconds", "How old the newest entry applied is (the primary's"
             " clock against this one's).", behind),
        ]  # fmt: skip

    # -- what the streams' sessions call ---------------------------------------------------------

    def subscribe(self, conn: Connection, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            if symbol not in conn.symbols:
                mirror = self.books.get(symbol)
                conn.trades_after[symbol] = mirror.last_trade if mirror else 0
            conn.symbols.add(symbol)
            self.subscribers[symbol].add(conn)

    def book_snapshot(self, symbol: str, depth: int | None) -> Frame:
        mirror = self.books.get(symbol)
        if mirror is None:  # not joined yet: an empty book, which the join's snapshot replaces
            mirror = BookMirror(symbol, _EMPTY)
        return mirror.book(depth, self.now_ms)

    def send_snapshots(
        self, conn: Connection, symbols: Iterable[str], order_book: bool = False
    ) -> None:
        for symbol in symbols:
            mirror = self.books.get(symbol)
            if mirror is None:
                continue  # not joined yet: the join sends them
            if conn.market_data:
                conn.offer_market(symbol, mirror.market_data)
            if conn.order_book or order_book:
                if conn.book_mode == "diff":
                    conn.start_diffs(symbol, mirror.book(None, self.now_ms))
                else:
                    conn.offer_book(symbol, mirror.book(conn.depth, self.now_ms))
            if conn.candles and mirror.candle is not None:
                conn.offer_candle(symbol, mirror.candle)
        conn.wake()

    def publish(self, part: int = 0, parts: int = 1) -> None:
        """An edge publishes what the bus brings (`apply`), never on a timer of its own."""

    # -- what the bus brings ----------------------------------------------------------------------

    def load(self, snapshot: wire.Snapshot) -> None:
        """Start (again) from a snapshot; every client gets fresh snapshots of its symbols."""
        state_changed = self.state is not None and self.state.data != snapshot.state.data
        new_epoch = snapshot.epoch != self.epoch
        self.books = {s: BookMirror(s, st) for s, st in snapshot.symbols.items()}
        self.state, self.epoch, self.n = snapshot.state, snapshot.epoch, snapshot.n
        self.now_ms = snapshot.now_ms
        self.joins += 1
        for conn in self.connections:
            if state_changed and conn.market_data:
                conn.reply(snapshot.state)
            if new_epoch:  # a restarted primary may number trades from an older save
                for symbol in conn.symbols:
                    conn.trades_after[symbol] = self.books[symbol].last_trade
            if conn.symbols:
                self.send_snapshots(conn, conn.symbols)

    def apply(self, batch: wire.Batch) -> None:
        """Offer an entry's frames to the clients, as the primary's hub offered them."""
        if batch.epoch != self.epoch:
            raise OutOfStep("the primary restarted (a new epoch)")
        if batch.n != self.n + 1:
            raise OutOfStep(f"entries {self.n + 1} to {batch.n - 1} were lost")
        self.n, self.now_ms = batch.n, batch.now_ms
        changed: list[BookMirror] = []
        for symbol, f in batch.frames:
            if f.type == "market_state":
                self.state = f
                for conn in self.connections:
                    if conn.market_data:
                        conn.reply(f)
                continue
            mirror = self.books.get(symbol)
            if mirror is None:
                raise OutOfStep(f"an entry names {symbol!r}, which this edge does not list")
            subscribers = self.subscribers.get(symbol, ())
            if f.type == "market_data":
                mirror.market_data = f
                changed.append(mirror)
                for conn in subscribers:
                    if conn.market_data:
                        conn.offer_market(symbol, f)
            elif f.type == "order_book_update":
                mirror.apply(f)
                for conn in subscribers:
                    if conn.order_book and conn.book_mode == "diff":
                        conn.offer_book_update(symbol, f)
            elif f.type == "candle":
                mirror.candle = f
                for conn in subscribers:
                    if conn.candles:
                        conn.offer_candle(symbol, f)
            elif f.type == "trade" and f.seq is not None:
                mirror.last_trade = f.seq
                for conn in subscribers:
                    if conn.trades and f.seq > conn.trades_after.get(symbol, 0):
                        conn.offer_trade(f)
        for mirror in changed:  # snapshot mode: the book at each client's depth, built once
            books: dict[int | None, Frame] = {}
            for conn in self.subscribers.get(mirror.symbol, ()):
                if conn.order_book and conn.book_mode != "diff":
                    book = books.get(conn.depth)
                    if book is None:
                        book = books[conn.depth] = mirror.book(conn.depth, batch.now_ms)
                    conn.offer_book(mirror.symbol, book)
        for conn in self.connections:
            conn.flush()
        self.applied += 1
        self.publishes += 1


_EMPTY = wire.SymbolState(0, [], [], 0, Frame("market_data", b"{}", 0.0), None)


async def follow(
    hub: EdgeHub,
    settings: Settings,
    universe: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep `hub`'s mirror from the bus until cancelled, joining again whenever needed."""

    async def work(b: bus.Bus, retry: bus.Retry) -> None:
        while True:
            try:
                after = await _join(b, hub, universe)
                while True:
                    for entry in await b.read(after, BLOCK_MS, READ_COUNT):
                        hub.apply(_batch(entry))
                        after = entry.id
                        retry.reset()  # following again: the next trouble starts a fresh pause
            except OutOfStep as why:
                log.info("joining the bus again in %.1f s: %s", retry.wait, why)
                await retry.pause()  # what keeps failing is not re-joined in a tight loop

    task_status.started()
    await bus.keep_connected(
        settings.bus_url, settings.bus_prefix, settings.bus_max_entries, work, lambda: None
    )


def _batch(entry: bus.Entry) -> wire.Batch:
    try:
        return wire.parse_entry(entry.fields)
    except (KeyError, ValueError, TypeError) as exc:
        raise OutOfStep(f"entry {entry.id!r} cannot be read: {exc!r}") from exc


async def _join(b: bus.Bus, hub: EdgeHub, universe: str) -> bytes:
    """Load the newest snapshot into the hub and apply the entries after it; the id of the last."""
    symbols, said = list(hub.market.instruments), ""
    while True:
        joined = await b.join(wire.JOIN_TAIL)
        why = joinable(joined, symbols, universe)
        if isinstance(why, tuple):
            snapshot, after = why
            hub.load(snapshot)
            for entry in after:
                hub.apply(_batch(entry))
            log.info("joined the bus at entry %d of epoch %s", hub.n, hub.epoch.decode())
            return joined.entries[0].id
        if why != said:
            log.warning("waiting to join the bus: %s", why)
            said = why
        await trio.sleep(JOIN_RETRY_S)


def joinable(
    joined: bus.Joined, symbols: list[str], universe: str
) -> tuple[wire.Snapshot, list[bus.Entry]] | str:
    """The snapshot and the entries after it (oldest first), or why the bus cannot be joined."""
    if not joined.entries:
        return "the primary has not published yet"
    try:
        snapshot = wire.parse_snapshot(joined.snapshot, symbols)
        batches = [wire.parse_entry(e.fields) for e in joined.entries]
    except (KeyError, ValueError, TypeError) as exc:
        return f"the snapshot cannot be read: {exc!r}"
    if snapshot is None:
        return "the primary has not written a whole snapshot yet"
    if snapshot.universe != universe:
        return (
            f"the primary lists another universe ({snapshot.universe}, this edge {universe}):"
            " give both the same --universe file"
        )
    after = [
        (entry, batch)
        for entry, batch in zip(joined.entries, batches, strict=True)
        if batch.epoch == snapshot.epoch and batch.n > snapshot.n
    ][::-1]
    newest = batches[0]
    if newest.epoch != snapshot.epoch or [b.n for _, b in after] != list(
        range(snapshot.n + 1, newest.n + 1)
    ):
        return "the snapshot and the newest entries do not meet"
    return snapshot, [entry for entry, _ in after]


async def run_edge(
    hub: EdgeHub,
    settings: Settings,
    universe: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The edge's long-lived work: follow the bus, and watch for slow and dead clients."""
    async with trio.open_nursery() as nursery:
        await nursery.start(follow, hub, settings, universe)
        task_status.started()
        while True:
            await trio.sleep(1.0)
            hub.watch(nursery)
