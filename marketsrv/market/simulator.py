"""The market simulator: liquidity providers and takers trading in the real books.

Per symbol a fair value follows a geometric random walk with the instrument's volatility and rare
jumps. Each tick a liquidity provider keeps a ladder of resting quotes around the fair value, moving
only the levels that changed, and takers send marketable orders that eat one to three levels, leaning
towards the fair value so that the traded price follows it. Every printed price comes from a trade.

Time is compressed so a demo moves: one simulated trading day of volatility passes every
`DAY_SECONDS` of wall time. The same seed and universe replay the same orders and trades.
"""

from __future__ import annotations

import math
import random
import time

from marketsrv.engine import Side, TimeInForce
from marketsrv.market.instruments import Instrument
from marketsrv.market.state import Market

DAY_SECONDS = 600.0  # wall seconds per simulated trading day of volatility
LEVELS = 12  # quoted levels per side; more than the default depth of 10
JUMP_PROBABILITY_PER_DAY = 2.0  # expected jumps per simulated day
JUMP_SIZE = 0.02  # standard deviation of a jump's log return
SPREAD_FRACTION = 0.0008  # half the quoted spread as a fraction of the price (at least half a tick)


class _SymbolAgent:
    """The simulated participants of one symbol; all their randomness comes from `rng`."""

    __slots__ = ("asks", "bids", "ceiling", "floor", "inst", "jump_p", "log_fair", "rng", "sigma")

    def __init__(self, inst: Instrument, seed: int, tick_s: float, volatility_scale: float) -> None:
        self.inst = inst
        self.rng = random.Random(f"{seed}:{inst.symbol}")
        ref = inst.reference_ticks
        self.log_fair = math.log(ref)
        # Keep the walk in a band where the tick grid still makes a sensible book.
        self.floor = math.log(max(10.0, ref / 4))
        self.ceiling = math.log(ref * 4)
        self.sigma = inst.daily_volatility * volatility_scale * math.sqrt(tick_s / DAY_SECONDS)
        self.jump_p = JUMP_PROBABILITY_PER_DAY * tick_s / DAY_SECONDS if volatility_scale else 0.0
        self.bids: dict[int, int] = {}  # price ticks -> order id of our resting quote
        self.asks: dict[int, int] = {}

    def move_fair_value(self) -> float:
        rng = self.rng
        step = self.sigma * rng.gauss(0.0, 1.0)
        if self.jump_p and rng.random() < self.jump_p:
            step += rng.gauss(0.0, JUMP_SIZE)
        self.log_fair = min(self.ceiling, max(self.floor, self.log_fair + step))
        return math.exp(self.log_fair)

    def quote_size(self, level: int) -> int:
        return self.inst.lot_size * self.rng.randint(1, 10) * (1 + level // 3)


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
        self.agents = [
            _SymbolAgent(inst, seed, tick_s, volatility_scale)
            for inst in market.instruments.values()
        ]
        self.ticks = 0
        self.busy_s = 0.0  # CPU-bound time spent in step(), for the health page and benchmarks

    def step(self) -> None:
        """Advance every symbol by one tick."""
        started = time.perf_counter()
        for agent in self.agents:
            if self.active_fraction >= 1.0 or agent.rng.random() < self.active_fraction:
                fair = agent.move_fair_value()
                # Takers first, then the ladder is made whole again: between ticks (when the
                # streams and REST read it) every book shows all its quoted levels.
                self._take(agent, fair)
                self._requote(agent, fair)
        self.ticks += 1
        self.busy_s += time.perf_counter() - started

    def _requote(self, agent: _SymbolAgent, fair: float) -> None:
        market, symbol = self.market, agent.inst.symbol
        book = market.books[symbol]
        half = max(0.5, fair * SPREAD_FRACTION)
        best_bid = max(1, math.floor(fair - half))
        best_ask = max(best_bid + 1, math.ceil(fair + half))
        want_bids = range(max(1, best_bid - LEVELS + 1), best_bid + 1)
        want_asks = range(best_ask, best_ask + LEVELS)
        # Withdraw stale quotes on both sides before adding any, so our own ladder never crosses.
        for quotes, wanted in ((agent.bids, want_bids), (agent.asks, want_asks)):
            for price in [p for p in quotes if p not in wanted]:
                market.cancel(symbol, quotes.pop(price))
        # Refresh one random level a tick so depth keeps changing like a real book's.
        rng = agent.rng
        side_quotes = agent.bids if rng.random() < 0.5 else agent.asks
        if side_quotes:
            price = rng.choice(list(side_quotes))
            market.cancel(symbol, side_quotes.pop(price))
        for side, quotes, wanted, top in (
            (Side.BUY, agent.bids, want_bids, best_bid),
            (Side.SELL, agent.asks, want_asks, best_ask),
        ):
            for price in wanted:
                order_id = quotes.get(price)
                if order_id is not None and book.remaining(order_id):
                    continue
                size = agent.quote_size(abs(price - top))
                result = market.submit(symbol, side, size, price, TimeInForce.GTC)
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
        for _ in range(count):
            bid, ask = book.best_bid(), book.best_ask()
            if bid is None or ask is None:
                return
            # Informed flow: buy more often when the fair value is above the mid, and vice versa.
            lean = max(-0.3, min(0.3, (fair - (bid + ask) / 2) / max(1, ask - bid) * 0.3))
            side = Side.BUY if rng.random() < 0.5 + lean else Side.SELL
            roll = rng.random()
            levels = 0 if roll < 0.6 else 1 if roll < 0.85 else 2 if roll < 0.95 else 3
            bids, asks = book.depth(levels + 1)
            ladder = asks if side is Side.BUY else bids
            if not ladder:
                return
            eaten = sum(q for _, q in ladder[:levels])
            last_price, last_qty = ladder[min(levels, len(ladder) - 1)]
            lots = max(1, last_qty // agent.inst.lot_size)
            size = eaten + agent.inst.lot_size * rng.randint(1, max(1, lots // 2))
            market.submit(symbol, side, size, last_price, TimeInForce.IOC)
