"""Builders shared by the tests: a controllable clock, instruments, and hand-stepped markets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from marketsrv.market import Instrument, Market, Simulator, load_universe

REPO = Path(__file__).resolve().parent.parent
SYM50 = REPO / "scripts" / "data" / "universe-sym50.json"


class FakeClock:
    """A millisecond clock that only moves when told, for deterministic timestamps."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def make_instrument(symbol: str = "TEST", price: str = "50.00", tick: str = "0.05") -> Instrument:
    return Instrument(
        symbol=symbol,
        name=f"{symbol} Ltd",
        sector="Testing",
        reference_price=Decimal(price),
        tick_size=Decimal(tick),
        lot_size=100,
        daily_volatility=0.02,
        tick_cents=int(Decimal(tick) * 100),
    )


def simulated_market(
    seed: int = 7, steps: int = 0, clock: FakeClock | None = None, **sim: Any
) -> tuple[Market, Simulator]:
    """The bundled universe with a simulator stepped `steps` times by hand (no background task)."""
    clock = clock or FakeClock()
    market = Market(load_universe(), clock=clock)
    simulator = Simulator(market, seed=seed, **sim)
    for _ in range(steps):
        simulator.step()
        clock.advance(100)
    return market, simulator


class RecordingTransport:
    """A stream transport that keeps what would have been written, for in-process tests."""

    fast = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.aborted = False

    async def send(self, frames: Any) -> None:
        import orjson

        self.sent.extend(orjson.loads(f.payload) for f in frames)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def abort(self) -> None:
        self.aborted = True

    def last_received(self) -> float | None:
        return None

    def take(self) -> list[dict[str, Any]]:
        out, self.sent = self.sent, []
        return out
