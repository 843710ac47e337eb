"""A deterministic synthetic price history, so a new database has charts from its first minute.

The daily closes are a random walk of log returns built BACKWARDS from the instrument's reference
price (today's "previous close"), so the last bar closes exactly there however the walk went. A
day's return is Gaussian with the instrument's daily volatility, with two touches of realism that
stay cheap: a small chance of a move three times the usual size (fat tails) and a GARCH(1,1)-style
variance that rises after big moves and decays back (volatility clustering). Every close is
snapped to the tick grid and, if snapping or the tails pushed it out, stepped towards the next
close until that close lies in the day's price band; a floor a few ticks above zero reflects the
walk so cheap stocks never reach zero.

Each bar then gets an open a small gap from the previous close, a high and a low a random wick
beyond the open and close (inside the band), and a lognormal volume around a per-instrument
turnover, larger on days that moved more. The most recent days also get one-minute candles: a
Brownian bridge from the day's open to its close, scaled so its excursions reach exactly the day's
high and low, snapped to the grid, with the day's volume split over the minutes (a U shape, busier
at the open and the close) so they add up exactly. Everything comes from one `random.Random`
seeded by (seed, symbol): the same seed gives the same history, and prices are integer cents.
"""

from __future__ import annotations

import math
import random
from datetime import date

from marketsrv.market.calendar import Calendar
from marketsrv.market.instruments import Instrument
from marketsrv.market.rules import BASIS_POINTS, TickTable, price_limits
from marketsrv.market.stats import Candle
from marketsrv.units import MINUTE_MS

_JUMP_CHANCE, _JUMP_SIZE = 0.03, 3.0  # an occasional move three times the usual size
_Z_NORM = math.sqrt(1 - _JUMP_CHANCE + _JUMP_CHANCE * _JUMP_SIZE**2)  # keeps var(z) at 1
_ARCH, _GARCH = 0.08, 0.88  # GARCH(1,1) weights of the last shock and the last variance
_GAP, _WICK = 0.25, 0.6  # the open's gap and the high/low wicks, in days' standard deviations
_TRADE_KES = 40_000  # the typical value of one NSE trade
_TOP = 1 << 62  # no upper limit


def _snap(ticks: TickTable, x: float, lo: int, hi: int) -> int:
    """The valid price nearest `x` cents, kept in [lo, hi] (both on the grid)."""
    v = max(1, int(x + 0.5))
    down, up = ticks.floor(v), ticks.ceil(v)
    return min(hi, max(lo, down if down and v - down <= up - v else up))


def _floor_price(inst: Instrument) -> int:
    """The lowest close the walk may reach: a few ticks above zero, and high enough that the band
    spans two ticks there (below that a fixed tick can pin the price for good)."""
    tick = inst.ticks.tick_at(1)
    lowest = 5 * tick
    if inst.band_bps:
        lowest = max(lowest, 2 * tick * BASIS_POINTS // inst.band_bps)
    return min(inst.ticks.ceil(lowest), inst.reference_cents)


def _closes(rng: random.Random, inst: Instrument, n: int) -> tuple[list[int], list[float]]:
    """n + 1 closes ending at the reference (the first is the first bar's open), and the standard
    deviation of each of the n days."""
    base, ticks = inst.daily_volatility, inst.ticks
    # Clip a day's move well inside the band so snapping rarely has to pull a close back in.
    cap = 0.8 * math.log1p(inst.band_bps / BASIS_POINTS) if inst.band_bps else 0.25
    sigmas: list[float] = []
    moves: list[float] = []
    variance = 1.0
    for _ in range(n):
        z = rng.gauss(0.0, 1.0) * (_JUMP_SIZE if rng.random() < _JUMP_CHANCE else 1.0) / _Z_NORM
        sigma = base * math.sqrt(variance)
        sigmas.append(sigma)
        moves.append(max(-cap, min(cap, sigma * z)))
        variance = min(4.0, 1 - _ARCH - _GARCH + _ARCH * z * z + _GARCH * variance)
    lowest = _floor_price(inst)
    closes = [0] * (n + 1)
    closes[n] = close = inst.reference_cents
    for i in range(n - 1, -1, -1):
        prev = close * math.exp(-moves[i])
        if prev < lowest:  # reflect off the floor rather than stick to it
            prev = close * math.exp(abs(moves[i]))
        p = _snap(ticks, prev, lowest, _TOP)
        # The close must lie in the band around this previous close: step towards it until so
        # (p == close always qualifies, so this ends).
        limits = price_limits(p, inst.band_bps, ticks)
        while not limits.contains(close):
            p = ticks.up(p) if close > limits.high else ticks.down(p)
            limits = price_limits(p, inst.band_bps, ticks)
        closes[i] = close = p
    return closes, sigmas


def _minutes(
    rng: random.Random, inst: Instrument, bar: Candle, start_ms: int, count: int
) -> list[Candle]:
    """`count` one-minute candles that add up to `bar`; sets `bar.trades` to their sum."""
    o, h, lo, c, ticks = bar.open, bar.high, bar.low, bar.close, inst.ticks
    # A Brownian bridge: a walk with its straight line from 0 to its end taken out, zero at both.
    walk = [0.0]
    for _ in range(count):
        walk.append(walk[-1] + rng.gauss(0.0, 1.0))
    end = walk[-1]
    bridge = [w - end * k / count for k, w in enumerate(walk)]
    line = [o + (c - o) * k / count for k in range(count + 1)]
    # Scale the rises and the dips apart so the highest point is exactly the high, the lowest the low.
    up = min(((h - y) / b for y, b in zip(line, bridge, strict=True) if b > 0), default=0.0)
    down = min(((y - lo) / -b for y, b in zip(line, bridge, strict=True) if b < 0), default=0.0)
    points = [y + b * (up if b > 0 else down) for y, b in zip(line, bridge, strict=True)]
    # One tick over the whole day's range (the usual case): snap inline, it is most of the time.
    step = ticks.tick_at(lo)
    if any(t != step for start, t in ticks.bands if lo < start <= h):
        step = 0

    def snap(x: float, a: int, b: int) -> int:
        return min(b, max(a, int(x / step + 0.5) * step)) if step else _snap(ticks, x, a, b)

    path = [o, *(snap(x, lo, h) for x in points[1:-1]), c]
    # Minute volumes: one lot each, the rest by weight (busier near the open and the close).
    units = bar.volume // inst.lot_size
    weights = [(1 + 2 * (2 * k / count - 1) ** 2) * rng.expovariate(1.0) for k in range(count)]
    scale = (units - count) / sum(weights)
    lots = [1 + int(w * scale) for w in weights]
    lots[max(range(count), key=weights.__getitem__)] += units - sum(lots)
    per_trade = bar.trades / units
    wick = _WICK * (h - lo) / math.sqrt(count)
    candles: list[Candle] = []
    for k in range(count):
        a, b = path[k], path[k + 1]
        top = snap(max(a, b) + abs(rng.gauss(0.0, wick)), max(a, b), h)
        bottom = snap(min(a, b) - abs(rng.gauss(0.0, wick)), lo, min(a, b))
        trades = max(1, min(lots[k], round(lots[k] * per_trade)))
        candles.append(
            Candle(start_ms + k * MINUTE_MS, a, top, bottom, b, lots[k] * inst.lot_size, trades)
        )
    # The day's high and low were reached: at the bridge's extremes (a wick, if snapping missed).
    peak = max(range(count + 1), key=points.__getitem__)
    trough = min(range(count + 1), key=points.__getitem__)
    candles[min(peak, count - 1)].high = h
    candles[min(trough, count - 1)].low = lo
    bar.trades = sum(m.trades for m in candles)
    return candles


def synthetic_history(
    inst: Instrument,
    seed: int,
    calendar: Calendar,
    today: date,
    days: int = 365,
    minute_days: int = 2,
) -> tuple[list[Candle], list[Candle]]:
    """(daily bars, one-minute candles), oldest first: `days` trading days before `today`, the
    last closing at the reference price, and one-minute candles for the last `minute_days`."""
    rng = random.Random(f"{seed}:{inst.symbol}:history")
    dates = calendar.past_trading_days(today, days)
    n = len(dates)
    if n == 0:
        return [], []
    closes, sigmas = _closes(rng, inst, n)
    ticks, lot, base = inst.ticks, inst.lot_size, inst.daily_volatility
    lowest = _floor_price(inst)
    # A typical day's turnover for this stock, in cents: KES 3-30 million, less for cheap stocks.
    cheapness = min(1.0, inst.reference_cents / 2000) ** 0.5  # 1 from KES 20 up
    turnover = 100 * math.exp(rng.uniform(math.log(3e6), math.log(3e7))) * cheapness
    minute_from = n - min(minute_days, n)
    bars: list[Candle] = []
    minutes: list[Candle] = []
    for i, day in enumerate(dates):
        prev, c, sigma = closes[i], closes[i + 1], sigmas[i]
        limits = price_limits(prev, inst.band_bps, ticks)
        floor = max(limits.low, lowest)
        o = prev  # the first bar: its own open is its previous close
        if i:  # a small gap from the previous close
            o = _snap(ticks, prev * math.exp(rng.gauss(0, _GAP * sigma)), floor, limits.high)
        top, bottom = max(o, c), min(o, c)
        h = _snap(ticks, top * math.exp(abs(rng.gauss(0, _WICK * sigma))), top, limits.high)
        lo = _snap(ticks, bottom * math.exp(-abs(rng.gauss(0, _WICK * sigma))), floor, bottom)
        # Busier on days that moved more: the size of the move in standard deviations.
        moved = abs(math.log(c / prev)) / base if base else 0.0
        shares = turnover / c * rng.lognormvariate(-0.125, 0.5) * (0.5 + 0.6 * min(moved, 4.0))
        start_ms, count = calendar.trading_minutes(day) if i >= minute_from else (0, 1)
        units = max(count, round(shares / lot))  # a minute day needs a lot for every minute
        per_trade = _TRADE_KES * 100 * rng.lognormvariate(0, 0.3)
        trades = max(1, min(units, round(units * lot * c / per_trade)))
        bar = Candle(calendar.day_ms(day), o, h, lo, c, units * lot, trades)
        if i >= minute_from:
            minutes += _minutes(rng, inst, bar, start_ms, count)
        bars.append(bar)
    return bars, minutes
