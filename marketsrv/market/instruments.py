"""Instruments (the listed symbols) and the universe file they are read from.

Money crosses into the engine here: a price in KES becomes an integer number of the instrument's
ticks, and a tick count becomes integer cents. Nothing downstream multiplies floats for money.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,11}$")
DEFAULT_VOLATILITY = Decimal("0.02")


class UniverseError(ValueError):
    """The universe file is missing, malformed, or lists an instrument that cannot trade."""


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    sector: str
    reference_price: Decimal  # previous close in KES; the session starts here
    tick_size: Decimal  # smallest price step in KES
    lot_size: int  # board lot in shares; the simulator trades whole lots
    daily_volatility: float  # standard deviation of a day's log return (the simulator's only float)
    tick_cents: int  # tick_size in cents, exact

    def to_ticks(self, price: Decimal) -> int:
        """A KES price as ticks; raises ValueError when it is not on the tick grid."""
        ticks, rest = divmod(price, self.tick_size)
        if rest != 0:
            raise ValueError(f"{price} is not a multiple of the tick size {self.tick_size}")
        return int(ticks)

    def cents(self, ticks: int) -> int:
        return ticks * self.tick_cents

    def price(self, ticks: int) -> float:
        """Ticks rendered as a JSON number of KES, exact to the cent."""
        return ticks * self.tick_cents / 100

    @property
    def reference_ticks(self) -> int:
        return int((self.reference_price / self.tick_size).to_integral_value())


def _decimal(entry: dict[str, Any], key: str, where: str) -> Decimal:
    raw = entry.get(key)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise UniverseError(f"{where}: {key} must be a number or a decimal string")
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise UniverseError(f"{where}: {key} {raw!r} is not a number") from exc
    if not value.is_finite() or value <= 0:
        raise UniverseError(f"{where}: {key} must be positive")
    return value


def parse_instrument(entry: Any, where: str) -> Instrument:
    if not isinstance(entry, dict):
        raise UniverseError(f"{where}: each instrument must be an object")
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise UniverseError(f"{where}: symbol must be 1-12 upper-case letters or digits")
    tick = _decimal(entry, "tick_size", f"{where} ({symbol})")
    if (tick * 100) % 1 != 0:
        raise UniverseError(f"{where} ({symbol}): tick_size must be a whole number of cents")
    price = _decimal(entry, "reference_price", f"{where} ({symbol})")
    if price < tick:
        raise UniverseError(f"{where} ({symbol}): reference_price is below one tick")
    lot = entry.get("lot_size", 100)
    if not isinstance(lot, int) or isinstance(lot, bool) or lot < 1:
        raise UniverseError(f"{where} ({symbol}): lot_size must be a positive integer")
    vol = entry.get("daily_volatility", float(DEFAULT_VOLATILITY))
    if isinstance(vol, bool) or not isinstance(vol, (int, float)) or not 0 <= vol <= 1:
        raise UniverseError(f"{where} ({symbol}): daily_volatility must be between 0 and 1")
    return Instrument(
        symbol=symbol,
        name=str(entry.get("name", symbol)),
        sector=str(entry.get("sector", "")),
        reference_price=price,
        tick_size=tick,
        lot_size=lot,
        daily_volatility=float(vol),
        tick_cents=int(tick * 100),
    )


def parse_universe(data: Any, where: str) -> list[Instrument]:
    items = data.get("instruments") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise UniverseError(f"{where}: expected a non-empty list of instruments")
    instruments = [parse_instrument(item, f"{where}[{i}]") for i, item in enumerate(items)]
    seen: set[str] = set()
    for inst in instruments:
        if inst.symbol in seen:
            raise UniverseError(f"{where}: symbol {inst.symbol} is listed twice")
        seen.add(inst.symbol)
    return instruments


def universe_text(path: str | Path | None = None) -> tuple[str, str]:
    """(the universe file's text, where it came from); None or "" is the bundled NSE list."""
    if not path:
        text = resources.files("marketsrv.data").joinpath("nse.json").read_text(encoding="utf-8")
        return text, "bundled nse.json"
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise UniverseError(f"cannot read universe file {path}: {exc.strerror}") from exc


def universe_version(path: str | Path | None = None) -> str:
    """A short digest of the universe file: which list a server runs, for its start-up line."""
    return hashlib.sha256(universe_text(path)[0].encode()).hexdigest()[:12]


_CURRENCY = re.compile(r"[A-Z]{3}")


def universe_currency(path: str | Path | None = None) -> str:
    """The universe file's `currency` (ISO 4217, three capitals), KES when it names none."""
    text, where = universe_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UniverseError(f"{where} is not valid JSON: {exc}") from exc
    currency = data.get("currency", "KES") if isinstance(data, dict) else "KES"
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise UniverseError(f"{where}: currency must be three capital letters, like KES")
    return currency


def load_universe(path: str | Path | None = None) -> list[Instrument]:
    """Read a universe file; None or "" reads the bundled Nairobi Securities Exchange list."""
    text, where = universe_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UniverseError(f"{where} is not valid JSON: {exc}") from exc
    return parse_universe(data, where)
