"""Instruments (the listed symbols) and the universe file they are read from.

Every price in the books is integer cents (the currency's minor unit); which prices are valid is
the instrument's tick table (rules.py): the NSE's bands unless the universe file fixes a tick.
Nothing downstream multiplies floats for money.
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

from marketsrv.market.rules import BASIS_POINTS, NSE_TICKS, TickTable

_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,11}$")
DEFAULT_VOLATILITY = Decimal("0.02")
DEFAULT_BAND_PERCENT = Decimal(10)  # the NSE's daily price band: 10% each way


class UniverseError(ValueError):
    """The universe file is missing, malformed, or lists an instrument that cannot trade."""


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    sector: str
    reference_price: Decimal  # the close before the first day the server ran, in KES
    ticks: TickTable  # the tick size in force at each price
    lot_size: int  # board lot in shares: orders are whole lots (the NSE's is 1 since 2025)
    daily_volatility: float  # standard deviation of a day's log return (the simulator's only float)
    band_bps: int | None = 1000  # the day's price band each way in basis points; None: no band

    @staticmethod
    def price(cents: int) -> float:
        """Cents rendered as a JSON number of KES, exact to the cent."""
        return cents / 100

    @property
    def reference_cents(self) -> int:
        return int(self.reference_price * 100)

    def tick_size(self, price: int) -> Decimal:
        """The tick in force at `price` (cents), in KES."""
        return Decimal(self.ticks.tick_at(price)).scaleb(-2)


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


def _cents(value: Decimal, what: str) -> int:
    if (value * 100) % 1 != 0:
        raise UniverseError(f"{what} must be a whole number of cents")
    return int(value * 100)


def _ticks(entry: dict[str, Any], where: str) -> TickTable:
    """`tick_size`: absent or "nse" for the NSE's bands, a number for one fixed tick, or a list
    of bands [{"from": "0", "tick": "0.01"}, {"from": "5", "tick": "0.02"}, ...]."""
    raw = entry.get("tick_size", "nse")
    if raw == "nse":
        return NSE_TICKS
    if isinstance(raw, list):
        bands = []
        for i, band in enumerate(raw):
            if not isinstance(band, dict):
                raise UniverseError(f"{where}: tick_size[{i}] must be an object with from and tick")
            start = band.get("from", 0)
            bands.append(
                (
                    0 if start in (0, "0") else _cents(_decimal(band, "from", where), "from"),
                    _cents(_decimal(band, "tick", where), "tick_size"),
                )
            )
        try:
            return TickTable(tuple(bands))
        except ValueError as exc:
            raise UniverseError(f"{where}: tick_size: {exc}") from None
    tick = _cents(_decimal(entry, "tick_size", where), f"{where}: tick_size")
    if tick < 1:
        raise UniverseError(f"{where}: tick_size must be a whole number of cents")
    return TickTable.fixed(tick)


def parse_instrument(entry: Any, where: str) -> Instrument:
    if not isinstance(entry, dict):
        raise UniverseError(f"{where}: each instrument must be an object")
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise UniverseError(f"{where}: symbol must be 1-12 upper-case letters or digits")
    here = f"{where} ({symbol})"
    ticks = _ticks(entry, here)
    price = _decimal(entry, "reference_price", here)
    if (price * 100) % 1 != 0:
        raise UniverseError(f"{here}: reference_price must be a whole number of cents")
    if not ticks.is_valid(int(price * 100)):
        raise UniverseError(
            f"{here}: reference_price {price} is not on the tick grid"
            f" (tick {ticks.tick_at(int(price * 100)) / 100:.2f} at that price)"
        )
    lot = entry.get("lot_size", 1)
    if not isinstance(lot, int) or isinstance(lot, bool) or lot < 1:
        raise UniverseError(f"{here}: lot_size must be a positive integer")
    vol = entry.get("daily_volatility", float(DEFAULT_VOLATILITY))
    if isinstance(vol, bool) or not isinstance(vol, (int, float)) or not 0 <= vol <= 1:
        raise UniverseError(f"{here}: daily_volatility must be between 0 and 1")
    band = entry.get("price_band_percent", DEFAULT_BAND_PERCENT)
    if isinstance(band, bool) or not isinstance(band, (int, float, str, Decimal)):
        raise UniverseError(f"{here}: price_band_percent must be a number (0: no band)")
    try:
        band_percent = Decimal(str(band))
    except InvalidOperation:
        raise UniverseError(f"{here}: price_band_percent must be a number (0: no band)") from None
    if not band_percent.is_finite() or not 0 <= band_percent < 100:
        raise UniverseError(f"{here}: price_band_percent must be from 0 (no band) to under 100")
    band_bps = int(band_percent * BASIS_POINTS / 100)
    return Instrument(
        symbol=symbol,
        name=str(entry.get("name", symbol)),
        sector=str(entry.get("sector", "")),
        reference_price=price,
        ticks=ticks,
        lot_size=lot,
        daily_volatility=float(vol),
        band_bps=band_bps or None,
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
