"""The market simulator: liquidity providers and takers trading in the real books.

Per symbol a fair value follows a geometric random walk with the instrument's volatility and rare
jumps. Each tick a liquidity provider keeps a ladder of resting quotes around the fair value, moving
only the levels that changed, and takers send marketable orders that eat one to three levels, leaning
towards the fair value so that the traded price follows it. Every printed price comes from a trade.

Time is compressed so a demo moves: one simulated trading day of volatility passes every
`DAY_SECONDS` of wall time. The same seed and universe replay the same orders and trades.

Quotes sit on the instrument's tick grid (the tick in force at each price) and inside the day's
price limits, and the fair value is held inside them too, so the simulator never trades outside
the band. It trades only while the market is open: in pre-open and after the close it keeps a
still ladder (the book stays visible and the auction has something to meet), and a halted symbol
is left alone. An operator's scenario (scenarios.py) changes an agent's regime for a while.
"""

from __future__ import annotations

import math
import random
import time

from marketsrv.engine import Side, TimeInForce
from marketsrv.market.instruments import Instrument
from marketsrv.market.state import Market, MarketRefused

DAY_SECONDS = 600.0  # wall seconds per simulated trading day of volatility
LEVELS = 12  # quoted levels per side; more than the default depth of 10
JUMP_PROBABILITY_PER_DAY = 2.0  # expected jumps per simulated day
JUMP_SIZE = 0.02  # standard deviation of a jump's log return
SPREAD_FRACTION = 0.0008  # half the quoted spread as a fraction of the price (at least half a tick)
ROUND_LOT = 100  # shares per quoted unit: the board lot is 1, but nobody quotes single shares


class Regime:
    """How an agent behaves now: normal, or changed by a scenario until `until_tick`."""

    __slots__ = (
        "levels", "name", "pull_rate", "pull_to", "size", "spread", "until_tick", "volatility",
    )  # fmt: skip

    def __init__(self, name: str = "normal") -> None:
        self.name = name  # the scenario that set it
        self.volatility = 1.0  # multiplies the walk's standard deviation
        self.spread = 1.0  # multiplies the quoted spread
        self.levels = LEVELS  # quoted levels per side
        self.size = 1.0  # multiplies quote sizes
        self.pull_to: float | None = None  # a log fair value the walk is drawn back to
        self.pull_rate = 0.0  # the share of the gap to `pull_to` closed each tick
        self.until_tick: int | None = None  # when the regime ends (None: until replaced)


class _SymbolAgent:
    """The simulated participants of one symbol; all their randomness comes from `rng`."""

    __slots__ = (
        "asks", "bids", "ceiling", "floor", "inst", "jump_p", "log_fair", "regime", "rng", "sigma",
    )  # fmt: skip

    def __init__(self, inst: Instrument, seed: int, tick_s: float, volatility_scale: float) -> None:
        self.inst = inst
        self.rng = random.Random(f"{seed}:{inst.symbol}")
        ref = inst.reference_cents
        self.log_fair = math.log(ref)
        # Keep the walk in a range where the tick grid still makes a sensible book.
        self.floor = math.log(max(10.0, ref / 4))
        self.ceiling = math.log(ref * 4)
        self.sigma = inst.daily_volatility * volatility_scale * math.sqrt(tick_s / DAY_SECONDS)
        self.jump_p = JUMP_PROBABILITY_PER_DAY * tick_s / DAY_SECONDS if volatility_scale else 0.0
        self.bids: dict[int, int] = {}  # price cents -> order id of our resting quote
        self.asks: dict[int, int] = {}
        self.regime = Regime()

    @property
    def fair(self) -> float:
        return math.exp(self.log_fair)

    def move_fair_value(self, low: int, high: int) -> float:
        """One step of the walk, held inside the day's limits [low, high] (cents)."""
        rng, regime = self.rng, self.regime
        step = self.sigma * regime.volatility * rng.gauss(0.0, 1.0)
        if self.jump_p and rng.random() < self.jump_p:
            step += rng.gauss(0.0, JUMP_SIZE)
        if regime.pull_to is not None:  # a recovery: close a share of the gap each tick
            step += (regime.pull_to - self.log_fair) * regime.pull_rate
        floor = max(self.floor, math.log(low))
        ceiling = min(self.ceiling, math.log(high))
        self.log_fair = min(ceiling, max(floor, self.log_fair + step))
        return math.exp(self.log_fair)

    def quote_size(self, level: int) -> int:
        unit = max(self.inst.lot_size, ROUND_LOT)
        return max(
            self.inst.lot_size,
            int(unit * self.rng.randint(1, 10) * (1 + level // 3) * self.regime.size)
            // self.inst.lot_size
            * self.inst.lot_size,
        )


class Simulator:
    def __init__(
        self,
        market: Market,
        *,
        seed: int,
        tick_interval_ms: int = 100,
        volatility_scale: float = 1.0,
        active_fraction: float = 1.0,
        takers_per_tick: float = 0.5,
    ) -> None:
        self.market = market
        self.seed = seed
        self.tick_interval_ms = tick_interval_ms
        self.active_fraction = active_fraction
        self.takers_per_tick = takers_per_tick
        tick_s = tick_interval_ms / 1000
        self.agents = {
            inst.symbol: _SymbolAgent(inst, seed, tick_s, volatility_scale)
            for inst in market.instruments.values()
        }
        self.ticks = 0
        self.busy_s = 0.0  # CPU-bound time spent in step(), for the health page and benchmarks

    def step(self) -> None:
        """Advance every symbol by one tick."""
        started = time.perf_counter()
        market = self.market
        trading = market.phase == "open"
        for symbol, agent in self.agents.items():
            regime = agent.regime
            if regime.until_tick is not None and self.ticks >= regime.until_tick:
                agent.regime = Regime()
            if symbol in market.halted:
                continue
            if not trading:
                # Quiet: a still ladder, placed once, so the book is visible and the auction
                # has liquidity to meet.
                if not agent.bids and not agent.asks:
                    self._requote(agent, agent.fair, refresh=False)
                continue
            if self.active_fraction >= 1.0 or agent.rng.random() < self.active_fraction:
                limits = market.limits[symbol]
                fair = agent.move_fair_value(limits.low, limits.high)
                # Takers first, then the ladder is made whole again: between ticks (when the
                # streams and REST read it) every book shows all its quoted levels.
                self._take(agent, fair)
                self._requote(agent, fair)
        self.ticks += 1
        self.busy_s += time.perf_counter() - started

    def fair_values(self) -> dict[str, float]:
        """Each symbol's fair value in cents: what a restart resumes from."""
        return {symbol: agent.fair for symbol, agent in self.agents.items()}

    def resume_from(self, fair: dict[str, float]) -> None:
        for symbol, value in fair.items():
            agent = self.agents.get(symbol)
            if agent is not None and value > 0:
                agent.log_fair = min(agent.ceiling, max(agent.floor, math.log(value)))

    def _ladder(self, agent: _SymbolAgent, fair: float) -> tuple[list[int], list[int]]:
        """The prices to quote (cents), best first: on the tick grid, inside today's limits."""
        inst, regime = agent.inst, agent.regime
        ticks, limits = inst.ticks, self.market.limits[inst.symbol]
        half = max(ticks.tick_at(int(fair)) / 2, fair * SPREAD_FRACTION * regime.spread)
        best_bid = min(limits.high, ticks.floor(int(fair - half)))
        best_ask = max(limits.low, ticks.ceil(math.ceil(fair + half)))
        if best_ask <= best_bid:
            best_ask = ticks.up(best_bid)
        levels = regime.levels
        return (
            ticks.ladder(best_bid, levels, True, limits.low) if best_bid > 0 else [],
            ticks.ladder(best_ask, levels, False, limits.high),
        )

    def _requote(self, agent: _SymbolAgent, fair: float, refresh: bool = True) -> None:
        market, symbol = self.market, agent.inst.symbol
        book = market.books[symbol]
        want_bids, want_asks = self._ladder(agent, fair)
        # Withdraw stale quotes on both sides before adding any, so our own ladder never crosses.
        for quotes, wanted in ((agent.bids, want_bids), (agent.asks, want_asks)):
            keep = set(wanted)
            for price in [p for p in quotes if p not in keep]:
                market.cancel(symbol, quotes.pop(price))
        # Refresh one random level a tick so depth keeps changing like a real book's.
        rng = agent.rng
        side_quotes = agent.bids if rng.random() < 0.5 else agent.asks
        if refresh and side_quotes:
            price = rng.choice(list(side_quotes))
            market.cancel(symbol, side_quotes.pop(price))
        for side, quotes, wanted in (
            (Side.BUY, agent.bids, want_bids),
            (Side.SELL, agent.asks, want_asks),
        ):
            for level, price in enumerate(wanted):
                order_id = quotes.get(price)
                if order_id is not None and book.remaining(order_id):
                    continue
                try:
                    result = market.submit(
                        symbol, side, agent.quote_size(level), price, TimeInForce.GTC
                    )
                except MarketRefused:  # halted or out of band since: quote again next tick
                    return
                if result.resting:
                    quotes[price] = result.order_id
                else:
                    quotes.pop(price, None)

    def _take(self, agent: _SymbolAgent, fair: float) -> None:
        rng = agent.rng
        count = int(self.takers_per_tick)
        if rng.random() < self.takers_per_tick - count:
            count += 1
        if not count:
            return
        market, symbol = self.market, agent.inst.symbol
        book = market.books[symbol]
        lot = agent.inst.lot_size
        for _ in range(count):
            bid, ask = book.best_bid(), book.best_ask()
            if bid is None or ask is None:
                return
            # Informed flow: buy more often when the fair value is above the mid, and vice versa.
            tick = agent.inst.ticks.tick_at(bid)
            lean = max(-0.3, min(0.3, (fair - (bid + ask) / 2) / max(tick, ask - bid) * 0.3))
            side = Side.BUY if rng.random() < 0.5 + lean else Side.SELL
            roll = rng.random()
            levels = 0 if roll < 0.6 else 1 if roll < 0.85 else 2 if roll < 0.95 else 3
            bids, asks = book.depth(levels + 1)
            ladder = asks if side is Side.BUY else bids
            if not ladder:
                return
            eaten = sum(q for _, q in ladder[:levels])
            last_price, last_qty = ladder[min(levels, len(ladder) - 1)]
            unit = max(lot, ROUND_LOT)
            lots = max(1, last_qty // unit)
            size = eaten + unit * rng.randint(1, max(1, lots // 2))
            try:
                market.submit(symbol, side, size, last_price, TimeInForce.IOC)
            except MarketRefused:  # a user's order resting outside today's limits
                return
