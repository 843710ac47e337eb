"""What goes over the bus, as bytes: the frames of one publish, and the snapshot of a symbol.

An entry is one publish of the primary's hub (one stream interval):

    epoch   a random id, new at every start of the primary: a new one means start over
    n       the entry's number in its epoch, from 1 with no gaps: a gap means entries were lost
    t       the publish's instant (ms by the market's clock); every frame's `ts` is t / 1000
    f       the frames, one a line: `TYPE SYMBOL SEQ DATA` (`-` for no symbol or no seq), where
            DATA is the frame's encoded `data`, so an edge rebuilds the primary's exact bytes

The snapshot hash holds, as of its checkpoint entry, `~meta` (that entry's epoch, n and t, and
the universe's version), `~state` (the
market_state frame's line), and per symbol `book:S` (its levels in cents, seq and last trade
id), `md:S` (its newest market_data line) and `candle:S` (its newest candle line); the lines
kept there start with the `t` of the publish that built them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from marketsrv.streams.frames import Frame

# The snapshot is written with every CHECKPOINT_EVERY-th entry (and the first of an epoch): an
# edge joins from it and the entries after it, all read in one transaction (JOIN_TAIL of them).
CHECKPOINT_EVERY = 10
JOIN_TAIL = 2 * CHECKPOINT_EVERY + 2
META = b"~meta"
STATE = b"~state"
Levels = list[tuple[int, int]]  # (price in cents, quantity), best first


def line(symbol: str, frame: Frame) -> bytes:
    seq = b"-" if frame.seq is None else str(frame.seq).encode()
    return b"%s %s %s %s" % (frame.type.encode(), (symbol or "-").encode(), seq, frame.data)


def parse_line(raw: bytes, ts: float) -> tuple[str, Frame]:
    """(symbol, frame) of a line, the frame as the primary built it, byte for byte."""
    kind, symbol, seq, data = raw.split(b" ", 3)
    return (
        "" if symbol == b"-" else symbol.decode(),
        Frame(kind.decode(), data, ts, None if seq == b"-" else int(seq)),
    )


def stamped(now_ms: int, raw: bytes) -> bytes:
    """A line kept in the snapshot, with the instant of the publish that built it."""
    return b"%d %s" % (now_ms, raw)


def parse_stamped(raw: bytes) -> Frame:
    now_ms, rest = raw.split(b" ", 1)
    return parse_line(rest, int(now_ms) / 1000)[1]


def entry(epoch: bytes, n: int, now_ms: int, lines: list[bytes]) -> dict[str, bytes]:
    return {"epoch": epoch, "n": b"%d" % n, "t": b"%d" % now_ms, "f": b"\n".join(lines)}


@dataclass(frozen=True)
class Batch:
    """A decoded entry."""

    epoch: bytes
    n: int
    now_ms: int
    frames: list[tuple[str, Frame]]


def parse_entry(fields: Any) -> Batch:
    now_ms = int(fields[b"t"])
    ts = now_ms / 1000
    body: bytes = fields[b"f"]
    frames = [parse_line(raw, ts) for raw in body.split(b"\n")] if body else []
    return Batch(fields[b"epoch"], int(fields[b"n"]), now_ms, frames)


def meta(epoch: bytes, n: int, now_ms: int, universe: str) -> bytes:
    return orjson.dumps({"epoch": epoch.decode(), "n": n, "t": now_ms, "universe": universe})


def book_record(seq: int, bids: Levels, asks: Levels, last_trade: int) -> bytes:
    return orjson.dumps({"seq": seq, "bids": bids, "asks": asks, "trade": last_trade})


@dataclass(frozen=True)
class SymbolState:
    seq: int
    bids: Levels
    asks: Levels
    last_trade: int
    market_data: Frame
    candle: Frame | None


@dataclass(frozen=True)
class Snapshot:
    epoch: bytes
    n: int
    now_ms: int
    universe: str
    state: Frame
    symbols: dict[str, SymbolState]


def parse_snapshot(fields: dict[bytes, bytes], symbols: list[str]) -> Snapshot | None:
    """The snapshot of `symbols`, or None while it is not whole (the primary has not yet
    written it all, or Redis lost it and the primary has not noticed yet)."""
    if META not in fields or STATE not in fields:
        return None
    info = orjson.loads(fields[META])
    states = {}
    for symbol in symbols:
        record, md = fields.get(b"book:" + symbol.encode()), fields.get(b"md:" + symbol.encode())
        if record is None or md is None:
            return None
        book = orjson.loads(record)
        candle = fields.get(b"candle:" + symbol.encode())
        states[symbol] = SymbolState(
            book["seq"],
            [(p, q) for p, q in book["bids"]],
            [(p, q) for p, q in book["asks"]],
            book["trade"],
            parse_stamped(md),
            None if candle is None else parse_stamped(candle),
        )
    return Snapshot(
        info["epoch"].encode(),
        info["n"],
        info["t"],
        info["universe"],
        parse_stamped(fields[STATE]),
        states,
    )
