"""The exchange's price rules: the tick size in force at a price, and the day's price band.

Prices here are integer cents, the unit of every price in the books. The NSE publishes its tick
size by price band (below KES 5: 0.01; 5 to under 10: 0.02; 10 to under 50: 0.05; 50 to under
500: 0.25; 500 to under 1,000: 1.00; from 1,000: 5.00), so the valid prices form a grid whose step
grows with the price. Every band starts on a multiple of its own tick and of the tick below it,
which keeps rounding simple: rounding inside a band never lands on an invalid price.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from decimal import Decimal

BASIS_POINTS = 10_000


@dataclass(frozen=True, slots=True)
class TickTable:
    """Tick sizes by price: `bands` are (from price, tick) in cents, ascending, the first from 0."""

    bands: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.bands or self.bands[0][0] != 0:
            raise ValueError("the first tick band must start at 0")
        for (start, tick), (next_start, next_tick) in zip(self.bands, self.bands[1:], strict=False):
            if next_start <= start:
                raise ValueError("tick bands must be in ascending order of price")
            if next_start % tick or next_start % next_tick:
                raise ValueError(
                    f"a tick band must start on a multiple of its tick and of the tick below it"
                    f" ({next_start / 100:.2f})"
                )
        if any(tick < 1 for _, tick in self.bands):
            raise ValueError("a tick must be at least one cent")

    @classmethod
    def fixed(cls, tick: int) -> TickTable:
        return cls(((0, tick),))

    @property
    def is_fixed(self) -> bool:
        return len(self.bands) == 1

    def tick_at(self, price: int) -> int:
        """The tick in force at `price`: that of the band holding it."""
        bands = self.bands
        if len(bands) == 1:
            return bands[0][1]
        return bands[bisect_right(bands, (price, 1 << 62)) - 1][1]

    def ladder(self, start: int, count: int, down: bool, bound: int) -> list[int]:
        """Up to `count` valid prices from `start` (valid) going down (or up), none past
        `bound`: a quoted side of a book. Within one band it is a range (the simulator asks for
        two ladders per symbol per tick); across a band edge it steps price by price."""
        tick = self.tick_at(start)
        end = start - (count - 1) * tick if down else start + (count - 1) * tick
        bands = self.bands
        if len(bands) == 1 or bisect_right(bands, (start, 1 << 62)) == bisect_right(
            bands, (end, 1 << 62)
        ):
            if down:
                return list(range(start, max(bound, end, 1) - 1, -tick))
            return list(range(start, min(bound, end) + 1, tick))
        prices: list[int] = []
        price = start
        while len(prices) < count and price > 0 and (price >= bound if down else price <= bound):
            prices.append(price)
            price = self.down(price) if down else self.up(price)
        return prices

    def is_valid(self, price: int) -> bool:
        return price > 0 and price % self.tick_at(price) == 0

    def floor(self, price: int) -> int:
        """The highest valid price at or below `price` (0 when none is)."""
        return price - price % self.tick_at(price) if price > 0 else 0

    def ceil(self, price: int) -> int:
        """The lowest valid price at or above `price`."""
        price = max(price, 1)
        tick = self.tick_at(price)
        rest = price % tick
        return price if rest == 0 else price - rest + tick

    def up(self, price: int) -> int:
        """The next valid price above `price`."""
        return self.ceil(price + 1)

    def down(self, price: int) -> int:
        """The next valid price below `price`; 0 when there is none."""
        return self.floor(price - 1)

    def describe(self) -> str:
        """The table as people read it: "0.05" or "0.01 below 5.00; 0.02 from 5.00; ..."."""
        if self.is_fixed:
            return cents_text(self.bands[0][1])
        return "; ".join(
            f"{cents_text(tick)} from {cents_text(start)}" if start else f"{cents_text(tick)}"
            for start, tick in self.bands
        )


# The NSE's tick sizes by price band (cents).
NSE_TICKS = TickTable(((0, 1), (500, 2), (1000, 5), (5000, 25), (50000, 100), (100000, 500)))


def cents_text(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2))


@dataclass(frozen=True, slots=True)
class PriceLimits:
    """The prices allowed today, in cents, both ends included."""

    low: int
    high: int

    def contains(self, price: int) -> bool:
        return self.low <= price <= self.high

    def clamp(self, price: int) -> int:
        return min(self.high, max(self.low, price))

    def describe(self) -> str:
        return f"{cents_text(self.low)} to {cents_text(self.high)}"


NO_LIMITS = PriceLimits(1, 1 << 62)


def price_limits(previous_close: int, band_bps: int | None, ticks: TickTable) -> PriceLimits:
    """The day's band around the previous close (`band_bps` basis points each way), on the tick
    grid and inside the band; None is a market without a band."""
    if not band_bps:
        return NO_LIMITS
    low = -(-previous_close * (BASIS_POINTS - band_bps) // BASIS_POINTS)  # rounded up
    high = previous_close * (BASIS_POINTS + band_bps) // BASIS_POINTS
    low, high = ticks.ceil(max(1, low)), ticks.floor(high)
    if high < low:  # a band narrower than a tick: the previous close alone may trade
        low = high = ticks.ceil(previous_close)
    return PriceLimits(low, high)
