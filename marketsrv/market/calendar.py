"""Trading days and the phases of a trading day.

Two calendars, chosen by the `calendar` setting:

- `always`: a 24-hour market, always open, whose trading day rolls at midnight in the configured
  time zone (the default: a demo moves at any hour).
- `nse`: the Nairobi Securities Exchange's week, Monday to Friday in Africa/Nairobi: pre-open
  09:00-09:30 (orders rest but do not match), the opening auction at 09:30 (one uncrossing price),
  continuous trading until 15:00, then closed. A trading day lasts from its pre-open to the next
  trading day's pre-open, so the evening and the weekend still show the last day's figures.
  Public holidays are not modelled: every weekday trades.

Times are epoch milliseconds; the calendar turns them into local dates with zoneinfo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from marketsrv.units import MINUTE_MS

Phase = Literal["pre_open", "open", "closed"]
MODES = ("always", "nse")
NSE_ZONE = "Africa/Nairobi"
PRE_OPEN, OPEN, CLOSE = time(9, 0), time(9, 30), time(15, 0)


@dataclass(frozen=True, slots=True)
class Session:
    """Where a moment falls: its trading day, the phase, and when that phase ends."""

    day: date
    phase: Phase
    until_ms: int


class Calendar:
    def __init__(self, mode: str = "always", timezone: str = NSE_ZONE) -> None:
        if mode not in MODES:
            raise ValueError(f"calendar must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.zone = ZoneInfo(NSE_ZONE if mode == "nse" else timezone)

    def _ms(self, day: date, at: time) -> int:
        return int(datetime.combine(day, at, self.zone).timestamp() * 1000)

    def _local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def is_trading_day(self, day: date) -> bool:
        return self.mode == "always" or day.weekday() < 5

    def next_trading_day(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return day

    def previous_trading_day(self, day: date) -> date:
        day -= timedelta(days=1)
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
        return day

    def session_at(self, ms: int) -> Session:
        local = self._local(ms)
        today = local.date()
        if self.mode == "always":
            return Session(today, "open", self._ms(today + timedelta(days=1), time(0)))
        # nse: the trading day is the latest one whose pre-open has begun.
        if self.is_trading_day(today) and local.time() >= PRE_OPEN:
            day = today
        else:
            day = self.previous_trading_day(today)
        if day == today and local.time() < OPEN:
            return Session(day, "pre_open", self._ms(day, OPEN))
        if day == today and local.time() < CLOSE:
            return Session(day, "open", self._ms(day, CLOSE))
        return Session(day, "closed", self._ms(self.next_trading_day(day), PRE_OPEN))

    def day_start_ms(self, day: date) -> int:
        """When `day`'s figures start: midnight (always) or its pre-open (nse)."""
        return self._ms(day, time(0) if self.mode == "always" else PRE_OPEN)

    def day_ms(self, day: date) -> int:
        """The timestamp of `day`'s daily bar: local midnight of that day."""
        return self._ms(day, time(0))

    def trading_minutes(self, day: date) -> tuple[int, int]:
        """(start ms, minutes) of continuous trading on `day`."""
        if self.mode == "always":
            start = self._ms(day, time(0))
            return start, (self._ms(day + timedelta(days=1), time(0)) - start) // MINUTE_MS
        start = self._ms(day, OPEN)
        return start, (self._ms(day, CLOSE) - start) // MINUTE_MS

    def past_trading_days(self, before: date, count: int) -> list[date]:
        """The `count` trading days before `before`, oldest first."""
        days: list[date] = []
        day = before
        while len(days) < count:
            day = self.previous_trading_day(day)
            days.append(day)
        return days[::-1]

    def local_date(self, ms: int) -> date:
        return self._local(ms).date()


def week_start(day: date) -> date:
    """The Monday of `day`'s week: where a weekly bar begins."""
    return day - timedelta(days=day.weekday())
