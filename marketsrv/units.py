"""Units and time that every layer shares: milliseconds, ISO times, cents and KES, book depths.

A leaf module: it imports nothing of marketsrv, so the engine, the market, the streams, trading
and the API may all use it (tests/test_layers.py keeps it that way). Wall-clock time is read
through one `Clock`, a function returning milliseconds since the epoch: the server makes one
(`wall_clock_ms`) and hands it to the market, which the streams and trading read it from, so a
test's clock controls every timestamp the server writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], int]  # milliseconds since the epoch

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
DAY_MS = 24 * 60 * MINUTE_MS

DEFAULT_DEPTH = 10  # order book levels per side, unless asked
MAX_DEPTH = 50  # the most any REST call or stream serves


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(timestamp_ms: int) -> str:
    """`2026-11-25T03:08:26.557Z`: ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(timestamp_ms: int | None) -> str | None:
    return None if timestamp_ms is None else iso_ms(timestamp_ms)


def whole_number(text: str, digits: int | None = None) -> int | None:
    """`text` as a whole number if it is ASCII digits alone (at most `digits` of them), else None.

    Python's own `int()` and `isdigit()` take "1_0", " 1", "+1", "²" and "１"; no number of ours
    is written so. `digits` bounds what reaches SQLite (64-bit integers).
    """
    if not (text.isascii() and text.isdigit()) or (digits is not None and len(text) > digits):
        return None
    try:
        return int(text)
    except ValueError:  # over Python's 4,300-digit conversion limit
        return None


def kes(cents: int) -> float:
    """Cents as a JSON number of KES (exact to the cent when printed)."""
    return cents / 100
