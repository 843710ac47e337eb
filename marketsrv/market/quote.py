"""A symbol's quote: the one set of figures that the REST stock and the stream's `market_data`
both render, so the two can never say different things about the same moment.

Prices are KES (exact to the cent, from integer ticks); a session without trades yet shows the
last price as its open, high and low.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketsrv.market.state import Market, State


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    name: str
    sector: str
    price: float
    previous_close: float
    open: float
    high: float
    low: float
    change: float
    change_percent: float
    volume: int
    turnover: float
    vwap: float | None
    trades: int
    bid: float | None
    ask: float | None
    bid_size: int
    ask_size: int
    tick_size: float
    lot_size: int
    state: State  # pre_open, open, closed or halted
    lower_limit: float | None  # the day's price limits (None: the instrument has no band)
    upper_limit: float | None
    seq: int  # the book's sequence number
    updated_ms: int  # when the symbol last changed


def quote(market: Market, symbol: str) -> Quote:
    inst = market.instruments[symbol]
    stats = market.stats[symbol]
    bid, bid_size, ask, ask_size = market.top_of_book(symbol)
    price = inst.price
    current = stats.current
    vwap = stats.vwap
    return Quote(
        symbol=symbol,
        name=inst.name,
        sector=inst.sector,
        price=price(current),
        previous_close=price(stats.previous_close),
        open=price(current if stats.open is None else stats.open),
        high=price(current if stats.high is None else stats.high),
        low=price(current if stats.low is None else stats.low),
        change=price(stats.change),
        change_percent=stats.change_percent,
        volume=stats.volume,
        turnover=stats.turnover / 100,
        vwap=None if vwap is None else round(vwap) / 100,
        trades=stats.trade_count,
        bid=None if bid is None else price(bid),
        ask=None if ask is None else price(ask),
        bid_size=bid_size,
        ask_size=ask_size,
        tick_size=float(inst.tick_size(current)),
        lot_size=inst.lot_size,
        state=market.state_of(symbol),
        lower_limit=price(market.limits[symbol].low) if inst.band_bps else None,
        upper_limit=price(market.limits[symbol].high) if inst.band_bps else None,
        seq=market.books[symbol].seq,
        updated_ms=market.updated_ms[symbol],
    )
