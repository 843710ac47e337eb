"""The market's day: phases from the calendar, the opening auction, and the day roll.

`keep_time(market)` is called by the market loop before each simulator tick (and by tests with a
hand-driven clock). It is cheap when nothing changes: one comparison against the end of the
current phase. When a phase ends it moves the market to the next one, in order, even across a
long gap (a server stopped over a weekend rolls the days it missed at once):

- a new trading day: each symbol's close becomes its previous close, the day's bar is kept, the
  day's figures restart and the price limits move with the previous close;
- pre-open or closed to open: the opening auction uncrosses each book at one price.

The close is the last trade's price on a 24-hour market (`always`), and the session's VWAP
rounded to the tick on the NSE (`nse`), as the exchange computes its official close.
"""

from __future__ import annotations

import logging

from marketsrv.market.calendar import Session
from marketsrv.market.state import Market
from marketsrv.market.stats import Candle

log = logging.getLogger("marketsrv.market")


def keep_time(market: Market) -> bool:
    """Bring the market's session up to its clock; True if the phase or the day changed."""
    now = market.clock()
    if now < market.session.until_ms:
        return False
    changed = False
    # Walk phase by phase so no day roll or auction is skipped, whatever the gap.
    while now >= market.session.until_ms:
        following = market.calendar.session_at(market.session.until_ms)
        enter(market, following)
        changed = True
    return changed


def enter(market: Market, session: Session) -> None:
    """Move the market into `session`: roll the day if it is a new one, auction if it opens."""
    before = market.session
    if session.day != before.day:
        roll_day(market, session)
    opening = session.phase == "open" and before.phase != "open"
    market.session = session
    market.state_version += 1
    if opening:
        for symbol in market.instruments:
            uncross(market, symbol)
    log.info("market %s (trading day %s)", session.phase.replace("_", "-"), session.day)


def close_price(market: Market, symbol: str) -> int:
    """Today's closing price in cents: VWAP on the NSE calendar, else the last trade."""
    stats = market.stats[symbol]
    if stats.last is None:
        return stats.previous_close
    if market.calendar.mode != "nse":
        return stats.last
    ticks = market.instruments[symbol].ticks
    turnover, volume = stats.turnover, stats.volume  # VWAP = turnover / volume, kept exact
    below = ticks.floor(turnover // volume)
    above = below if below * volume == turnover else ticks.up(below)
    # The nearer tick, half up: vwap - below < above - vwap  <=>  2 turnover < (below+above) vol.
    return below if below and 2 * turnover < (below + above) * volume else above


def roll_day(market: Market, session: Session) -> None:
    """Close the current trading day and start `session`'s (the phase is set by the caller)."""
    bar_ms = market.calendar.day_ms(market.session.day)
    for symbol, stats in market.stats.items():
        close = close_price(market, symbol)
        if stats.open is not None:  # a day without trades leaves no bar, as on an exchange
            market.daily[symbol].append(stats.day_bar(bar_ms, close))
        stats.reset(close)
        market.update_limits(symbol)
        market.expire_outside_limits(symbol)  # the new band: nothing may rest outside it
        market.updated_ms[symbol] = market.clock()
    log.info("trading day %s closed; %s begins", market.session.day, session.day)
    for listener in market.roll_listeners:
        listener()


def uncross(market: Market, symbol: str) -> None:
    """The opening auction of one symbol: what crosses trades at one price."""
    if symbol in market.halted:
        return
    book = market.books[symbol]
    seq = book.seq
    result = book.uncross(reference=market.stats[symbol].previous_close)
    if result.trades:
        market.record(symbol, result)
        log.debug(
            "%s opening auction: %d shares at %d cents",
            symbol,
            result.filled,
            result.trades[0].price,
        )
    elif result.self_trade_cancels:
        market.record(symbol, result)
    if book.seq != seq:
        market.updated_ms[symbol] = market.clock()


def daily_bars(market: Market, symbol: str) -> list[Candle]:
    """The symbol's daily bars, today's (so far, closing at the last trade) last."""
    stats = market.stats[symbol]
    if stats.open is None:
        return list(market.daily[symbol])
    today = stats.day_bar(market.calendar.day_ms(market.session.day), stats.current)
    return [*market.daily[symbol], today]
