"""An order's intake: the domain checks that turn a validated request into a `NewOrder`.

The request's shape is checked by `requests.OrderRequest`; here are the market's rules as they
stand at this moment: the symbol is listed and not halted, the market is open for this kind of
order, whole board lots, the price on the tick grid (rounded in the user's favour or refused, the
`off_tick_prices` setting) and inside today's price band, and a market order's collar.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal

import orjson

from marketsrv.engine import Side
from marketsrv.errors import BadRequest, Conflict
from marketsrv.market import Instrument, Market
from marketsrv.market.rules import cents_text
from marketsrv.trading.money import parse_cents
from marketsrv.trading.requests import OrderRequest
from marketsrv.trading.settlement import NewOrder
from marketsrv.units import MAX_DEPTH

COLLAR = Decimal("0.05")  # a market order trades at most 5% past the price that completes it


def parse(market: Market, off_tick_prices: str, user_id: int, req: OrderRequest) -> NewOrder:
    """The domain checks of an order whose body `OrderRequest` validated."""
    symbol = req.the_symbol
    inst = market.instruments.get(symbol)
    if inst is None:
        raise BadRequest("unknown_symbol", f"Unknown symbol '{symbol}'.")
    side, quantity, price = req.side, req.quantity, req.price
    order_type = req.order_type or ("market" if price is None else "limit")
    tif = req.time_in_force or ("gtc" if order_type == "limit" else "ioc")
    if order_type == "market" and tif == "gtc":
        raise BadRequest("invalid_time_in_force", "a market order is ioc or fok: it never rests")
    client_order_id = req.client_order_id
    state = market.state_of(symbol)
    if state == "halted":
        raise Conflict(
            "symbol_halted",
            f"{symbol} is halted ({market.halted[symbol]}); its orders wait until it resumes",
        )
    if state != "open" and (order_type == "market" or tif != "gtc"):
        raise Conflict(
            "market_closed",
            f"the market is {state.replace('_', '-')}: market, ioc and fok orders are refused"
            " until it opens; limit orders (gtc) are accepted and rest until the opening"
            " auction",
        )
    if quantity % inst.lot_size:
        raise BadRequest(
            "invalid_quantity",
            f"quantity must be a whole number of board lots of {inst.lot_size} shares",
        )
    limits = market.limits[symbol]
    protection: int | None = None  # a market order's price limit, in cents
    note = ""
    if order_type == "limit":
        if price is None:
            raise BadRequest("invalid_price", "a limit order needs a price")
        cents = parse_cents(price, "price")
        if cents <= 0:
            raise BadRequest("invalid_price", "price must be positive")
        book_price = on_tick(inst, side, cents, off_tick_prices)
        if book_price != cents:
            note = (
                f"price {cents_text(cents)} is between ticks; {cents_text(book_price)} was used"
                f" (tick {cents_text(inst.ticks.tick_at(book_price))}, rounded in your favour)"
            )
        if not limits.contains(book_price):
            raise BadRequest(
                "price_out_of_band",
                f"price must be within today's limits for {symbol}: {limits.describe()}"
                f" ({inst.band_bps / 100:g}% either side of the previous close"
                f" {cents_text(market.stats[symbol].previous_close)})"
                if inst.band_bps
                else f"price must be within {limits.describe()}",
            )
        cents = book_price
        hold_cents = cents
    else:
        cents = None
        book_price = collar(market, symbol, Side(side), quantity)
        book_price = limits.clamp(book_price)  # never past the day's limits either
        if price not in (None, ""):
            # A price on a market order is its protection limit: it trades at that price
            # or better, never past it (and never past the collar either).
            protection = parse_cents(price, "price")
            book_price = protect(Side(side), protection, book_price)
            if not limits.contains(book_price):  # it could never trade today
                raise BadRequest(
                    "price_out_of_band",
                    f"the price limit {cents_text(protection)} is outside today's limits"
                    f" for {symbol}: {limits.describe()}",
                )
        hold_cents = book_price
    # What makes two requests the same order (client_order_id retries): what the user
    # asked for, not what the book made of it (the collar moves with the market).
    canonical = orjson.dumps(
        [symbol, side, order_type, tif, quantity, cents, protection],
        option=orjson.OPT_SORT_KEYS,
    )
    return NewOrder(
        user_id=user_id, symbol=symbol, side=side, order_type=order_type, time_in_force=tif,
        quantity=quantity, price_cents=cents, book_price_cents=book_price,
        hold_price_cents=hold_cents, client_order_id=client_order_id,
        request_hash=hashlib.sha256(canonical).hexdigest(), created_ms=market.clock(),
        note=note,
    )  # fmt: skip


def on_tick(inst: Instrument, side: str, cents: int, off_tick_prices: str) -> int:
    """`cents` on the tick grid: as it is, or rounded in the user's favour (a buy down, a
    sell up) when `off_tick_prices` is round; refused when it is reject."""
    if inst.ticks.is_valid(cents):
        return cents
    tick = cents_text(inst.ticks.tick_at(cents))
    if off_tick_prices == "reject":
        raise BadRequest(
            "invalid_price",
            f"price {cents_text(cents)} is not on the tick grid: the tick at this price is"
            f" {tick} ({inst.ticks.describe()})",
        )
    rounded = inst.ticks.floor(cents) if side == "buy" else inst.ticks.ceil(cents)
    if rounded <= 0:
        raise BadRequest("invalid_price", f"price is below the lowest tick ({tick})")
    return rounded


def protect(side: Side, cents: int, collar: int) -> int:
    if cents == 0:  # what many frontends send for "no price"
        return collar
    if cents < 0:
        raise BadRequest("invalid_price", "price must be positive")
    return min(collar, cents) if side is Side.BUY else max(collar, cents)


def collar(market: Market, symbol: str, side: Side, quantity: int) -> int:
    """The worst price a market order may trade at: where sweeping the book would complete
    it (or the book's far end), moved 5% further; without a book, 5% from the last price.
    (The day's price limits then bound it.)"""
    book = market.books[symbol]
    bids, asks = book.depth(MAX_DEPTH)
    ladder = asks if side is Side.BUY else bids
    reference = market.stats[symbol].current
    left = quantity
    for price, size in ladder:
        reference = price
        left -= size
        if left <= 0:
            break
    if side is Side.BUY:
        return math.ceil(reference * (1 + COLLAR))
    return max(1, math.floor(reference * (1 - COLLAR)))
