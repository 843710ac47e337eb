"""Throttles for the password endpoints: how many tries a client address or an account gets.

A `Throttle` counts events per key in a sliding window (a deque of times per key). A try is
charged *before* the password is checked, so forty parallel guesses cannot all pass the check
before the first of them fails; a login that succeeds is refunded. The number of keys is bounded:
past `max_keys` the key idle longest is forgotten, so a flood of addresses cannot grow memory.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from marketsrv.errors import TooManyRequests


class Throttle:
    def __init__(
        self,
        limit: int,
        window_s: float,
        clock: Callable[[], float],
        *,
        what: str,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.what = what  # "login attempts from this address", for the message
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        if self.limit <= 0:
            return 0.0
        events = self._events.get(key)
        if not events:
            return 0.0
        now = self._clock()
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if len(events) < self.limit:
            return 0.0
        return events[0] + self.window_s - now

    def charge(self, key: str) -> float:
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            if len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(now)
        return now

    def refund(self, key: str, stamp: float) -> None:
        events = self._events.get(key)
        if events is not None:
            with contextlib.suppress(ValueError):  # already out of the window
                events.remove(stamp)


def enforce(checks: Iterable[tuple[Throttle, str]]) -> list[tuple[Throttle, str, float]]:
    """Refuse with 429 if any key is over its limit; otherwise charge them all.

    Returns the charges, for `refund_all` when the attempt should not count.
    """
    checks = [(t, k) for t, k in checks if t.limit > 0]
    for throttle, key in checks:
        wait = throttle.retry_after(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                "too_many_attempts",
                f"Too many {throttle.what}: try again in {seconds} s.",
                retry_after=seconds,
            )
    return [(t, k, t.charge(k)) for t, k in checks]


def refund_all(charges: list[tuple[Throttle, str, float]]) -> None:
    for throttle, key, stamp in charges:
        throttle.refund(key, stamp)
