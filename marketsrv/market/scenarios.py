"""Scenarios for demos: what an operator can make the market do, so a frontend can be seen to
survive it. Each is a change to the market (a halt) or to the simulator's agents (a regime that
lasts `duration_s`, then the agent returns to normal).

    halt         the symbol refuses orders (symbol_halted); its book stays visible
    resume       trading again
    jump         news: the fair value moves `percent` at once (inside the day's limits)
    volatile     the walk's volatility times `factor` (default 5)
    drought      a thin book: two levels a side, ten times the spread, a fifth of the size
    flash_crash  the fair value falls `percent` (default 8) at once and recovers over the duration
    calm         every regime back to normal (halts stay until resumed)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from marketsrv.market.days import uncross
from marketsrv.market.simulator import Regime, Simulator
from marketsrv.market.state import Market

NAMES = ("halt", "resume", "jump", "volatile", "drought", "flash_crash", "calm")
DEFAULT_DURATION_S = 60.0
MAX_DURATION_S = 24 * 3600.0


class ScenarioError(ValueError):
    """A scenario that cannot run: `code` is the error code the API answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    symbols: tuple[str, ...]  # empty: every symbol
    percent: float | None = None
    factor: float | None = None
    duration_s: float | None = None


def run(market: Market, simulator: Simulator | None, scenario: Scenario) -> str:
    """Apply `scenario` now; a sentence that says what was done."""
    if scenario.name not in NAMES:
        raise ScenarioError(
            "unknown_scenario", f"no scenario {scenario.name!r}: {', '.join(NAMES)}"
        )
    for symbol in scenario.symbols:
        if symbol not in market.instruments:
            raise ScenarioError("unknown_symbol", f"Unknown symbol '{symbol}'.")
    symbols = list(scenario.symbols or market.instruments)
    name = scenario.name
    where = ", ".join(scenario.symbols) if scenario.symbols else "every symbol"
    if name == "halt":
        for symbol in symbols:
            market.halt(symbol, "trading halted by the operator")
        return f"halted {where}"
    if name == "resume":
        for symbol in symbols:
            market.resume(symbol)
            if market.phase == "open":  # halted through the opening auction: hold it now
                uncross(market, symbol)
        return f"resumed {where}"
    if simulator is None:
        raise ScenarioError(
            "simulator_off", f"the {name} scenario moves the simulator, which is not running"
        )
    duration = scenario.duration_s if scenario.duration_s is not None else DEFAULT_DURATION_S
    if not 0 < duration <= MAX_DURATION_S:
        raise ScenarioError("invalid_duration_s", "duration_s must be above 0 and at most a day")
    until = simulator.ticks + max(1, int(duration * 1000 / simulator.tick_interval_ms))
    percent = scenario.percent if scenario.percent is not None else 5.0
    if name == "jump" and not (-90 < percent <= 100 and percent != 0):
        raise ScenarioError(
            "invalid_percent", "a jump's percent is non-zero, above -90, at most 100"
        )
    if name == "flash_crash":
        percent = -abs(scenario.percent if scenario.percent is not None else 8.0)
        if not -90 < percent < 0:
            raise ScenarioError("invalid_percent", "a flash crash falls more than 0 and under 90%")
    factor = scenario.factor if scenario.factor is not None else 5.0
    if name == "volatile" and not 0 < factor <= 50:
        raise ScenarioError("invalid_factor", "factor must be above 0 and at most 50")
    for symbol in symbols:
        agent = simulator.agents[symbol]
        regime = Regime(name if name != "calm" else "normal")
        if name == "calm":
            agent.regime = regime
            continue
        regime.until_tick = until
        if name in ("jump", "flash_crash"):
            if name == "flash_crash":
                regime.pull_to = agent.log_fair
                # Recover about 95% of the fall by the end: (1 - rate) ** ticks = 0.05.
                regime.pull_rate = 1 - 0.05 ** (1 / max(1, until - simulator.ticks))
                regime.volatility = 2.0
            agent.log_fair += math.log1p(percent / 100)
            if name == "jump":
                # News moves the price for good: nothing to undo, the agent is normal again.
                regime.until_tick, regime.name = None, "normal"
        elif name == "volatile":
            regime.volatility = factor
        elif name == "drought":
            regime.levels, regime.spread, regime.size = 2, 10.0, 0.2
        agent.regime = regime
    if name == "calm":
        return f"{where} back to normal"
    return f"{name.replace('_', ' ')} on {where}" + (
        "" if name == "jump" else f" for {duration:g} s"
    )
