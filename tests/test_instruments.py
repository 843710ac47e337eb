"""Instruments and universe files: the bundled NSE list, money at the edges, and bad files."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from marketsrv.market import UniverseError, load_universe
from tests.builders import SYM50, make_instrument


def test_bundled_universe_is_the_nse() -> None:
    instruments = load_universe()
    symbols = {i.symbol for i in instruments}
    assert len(instruments) >= 20 and {"SCOM", "KCB", "EQTY"} <= symbols
    for inst in instruments:
        assert inst.name and inst.sector and inst.lot_size > 0
        assert inst.ticks.is_valid(inst.reference_cents), inst.symbol


def test_benchmark_universe_has_fifty_symbols() -> None:
    symbols = [i.symbol for i in load_universe(SYM50)]
    assert symbols == [f"SYM{i:03d}" for i in range(50)]


def test_prices_convert_exactly() -> None:
    inst = make_instrument(price="28.50", tick="0.05")
    assert inst.price(2855) == 28.55 and inst.reference_cents == 2850
    assert inst.tick_size(2855) == Decimal("0.05") and not inst.ticks.is_valid(2852)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"symbol": "bad sym", "reference_price": "1", "tick_size": "0.01"}, "symbol"),
        ({"symbol": "A", "reference_price": "-1", "tick_size": "0.01"}, "positive"),
        ({"symbol": "A", "reference_price": "1", "tick_size": "0.001"}, "whole number of cents"),
        ({"symbol": "A", "reference_price": "1", "tick_size": "0.01", "lot_size": 0}, "lot_size"),
        ({"symbol": "A", "reference_price": "x", "tick_size": "0.01"}, "not a number"),
    ],
)
def test_bad_instruments_are_refused(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = tmp_path / "u.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(UniverseError, match=message):
        load_universe(path)


def test_bad_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text("{not json")
    with pytest.raises(UniverseError, match="not valid JSON"):
        load_universe(path)
    path.write_text(json.dumps({"instruments": []}))
    with pytest.raises(UniverseError, match="non-empty"):
        load_universe(path)
    twice = {"symbol": "A", "reference_price": "1", "tick_size": "0.01"}
    path.write_text(json.dumps([twice, twice]))
    with pytest.raises(UniverseError, match="listed twice"):
        load_universe(path)
    with pytest.raises(UniverseError, match="cannot read"):
        load_universe(tmp_path / "missing.json")
