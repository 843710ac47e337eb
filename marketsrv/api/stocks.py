"""Market-data REST: stocks, trending lists, order-book snapshots, trades and candles.

Every answer is computed from the live market at the moment of the request; there is no cache.
"""

from __future__ import annotations

import time

from quart import Blueprint
from quart_schema import hide, validate_querystring, validate_request, validate_response
from werkzeug.exceptions import MethodNotAllowed

from marketsrv.api.openapi import errors
from marketsrv.api.pages import page_of
from marketsrv.api.schemas import (
    BatchRequest,
    BatchResponse,
    CandleList,
    CandleOut,
    CandlesQuery,
    DepthQuery,
    Health,
    Level,
    OrderBookSnapshot,
    PageQuery,
    SimulatorHealth,
    Stock,
    StockPage,
    StreamsHealth,
    TradeList,
    TradeOut,
    TradesQuery,
    TrendingQuery,
)
from marketsrv.errors import NotFound
from marketsrv.market import Instrument, Market
from marketsrv.market.quote import quote
from marketsrv.runtime import current_runtime
from marketsrv.units import MINUTE_MS, iso_ms

blueprint = Blueprint("stocks", __name__, url_prefix="/api")

_INTERVAL_MS = {"1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "1h": 60 * MINUTE_MS}


def stock_view(market: Market, symbol: str) -> Stock:
    q = quote(market, symbol)
    return Stock(
        symbol=q.symbol, name=q.name, sector=q.sector, current_price=q.price,
        previous_close=q.previous_close, open=q.open, high=q.high, low=q.low, change=q.change,
        change_percent=q.change_percent, percentage_change=q.change_percent, volume=q.volume,
        turnover=q.turnover, vwap=q.vwap, trades=q.trades, bid=q.bid, ask=q.ask,
        bid_size=q.bid_size, ask_size=q.ask_size, tick_size=q.tick_size, lot_size=q.lot_size,
        is_active=True, last_updated=iso_ms(q.updated_ms), timestamp=q.updated_ms,
        currency=market.currency,
    )  # fmt: skip


def find_symbol(market: Market, raw: str) -> Instrument:
    inst = market.instruments.get(raw.strip().upper())
    if inst is None:
        raise NotFound("unknown_symbol", f"Unknown symbol '{raw}'.", symbol=raw)
    return inst


def paginate(items: list[Stock], query: PageQuery) -> StockPage:
    start = (query.page - 1) * query.page_size
    chosen = items[start : start + query.page_size]
    return StockPage(**page_of(chosen, len(items), query.page, query.page_size))


@blueprint.get("/health/")
@validate_response(Health)
async def health() -> Health:
    rt = current_runtime()
    sim = rt.simulator
    return Health(
        status="ok",
        symbols=len(rt.market.instruments),
        uptime_s=round(time.monotonic() - rt.started_monotonic, 3),
        simulator=SimulatorHealth(
            running=rt.running and sim is not None,
            ticks=sim.ticks if sim else 0,
            busy_ms=round(sim.busy_s * 1000, 3) if sim else 0.0,
        ),
        streams=StreamsHealth(
            connections=len(rt.hub.connections),
            publishes=rt.hub.publishes,
            slow_closed=rt.hub.slow_closed,
            dropped=rt.hub.dead_dropped,
        ),
    )


@blueprint.get("/stocks/")
@errors(s404=["invalid_page"])
@validate_querystring(PageQuery)
@validate_response(StockPage)
async def list_stocks(query_args: PageQuery) -> StockPage:
    market = current_runtime().market
    return paginate([stock_view(market, s) for s in market.instruments], query_args)


@blueprint.get("/stocks/trending/")
@errors(s404=["invalid_page"])
@validate_querystring(TrendingQuery)
@validate_response(StockPage)
async def trending(query_args: TrendingQuery) -> StockPage:
    market = current_runtime().market
    stocks = [stock_view(market, s) for s in sorted(market.instruments)]
    key = {
        "most_traded": lambda s: -s.volume,
        "highest_change": lambda s: -s.change_percent,
        "lowest_change": lambda s: s.change_percent,
        "highest_price": lambda s: -s.current_price,
    }[query_args.sort_by]
    stocks.sort(key=key)
    return paginate(stocks, query_args)


@blueprint.post("/stocks/batch/")
@validate_request(BatchRequest)
@validate_response(BatchResponse)
async def batch(data: BatchRequest) -> BatchResponse:
    market = current_runtime().market
    stocks, missing, seen = [], [], set()
    for raw in data.symbols:
        symbol = raw.strip().upper()
        if symbol in seen:
            continue
        seen.add(symbol)
        if symbol in market.instruments:
            stocks.append(stock_view(market, symbol))
        else:
            missing.append(raw)
    return BatchResponse(stocks=stocks, missing=missing)


@blueprint.get("/stocks/batch/")
@hide
async def batch_is_post_only() -> dict[str, str]:
    # Without this, GET /stocks/batch/ would read "batch" as a symbol and answer 404.
    raise MethodNotAllowed(valid_methods=["POST"])


@blueprint.get("/stocks/<symbol>/")
@validate_response(Stock)
async def get_stock(symbol: str) -> Stock:
    market = current_runtime().market
    return stock_view(market, find_symbol(market, symbol).symbol)


@blueprint.get("/stocks/<symbol>/orderbook/")
@validate_querystring(DepthQuery)
@validate_response(OrderBookSnapshot)
async def order_book(symbol: str, query_args: DepthQuery) -> OrderBookSnapshot:
    market = current_runtime().market
    inst = find_symbol(market, symbol)
    book = market.books[inst.symbol]
    bids, asks = book.depth(query_args.depth)

    def levels(rows: list[tuple[int, int]]) -> list[Level]:
        return [
            Level(price=inst.price(p), quantity=q, total=inst.cents(p) * q / 100) for p, q in rows
        ]

    return OrderBookSnapshot(
        symbol=inst.symbol,
        bids=levels(bids),
        asks=levels(asks),
        depth=query_args.depth,
        seq=book.seq,
        timestamp=market.clock(),
    )


@blueprint.get("/stocks/<symbol>/trades/")
@validate_querystring(TradesQuery)
@validate_response(TradeList)
async def trades(symbol: str, query_args: TradesQuery) -> TradeList:
    market = current_runtime().market
    inst = find_symbol(market, symbol)
    log = market.trades[inst.symbol]
    newest = [log[i] for i in range(len(log) - 1, max(-1, len(log) - 1 - query_args.limit), -1)]
    return TradeList(
        symbol=inst.symbol,
        trades=[
            TradeOut(
                id=t.trade_id,
                price=inst.price(t.price),
                quantity=t.quantity,
                side=t.aggressor,
                timestamp=t.timestamp_ms,
            )
            for t in newest
        ],
    )


@blueprint.get("/stocks/<symbol>/candles/")
@validate_querystring(CandlesQuery)
@validate_response(CandleList)
async def candles(symbol: str, query_args: CandlesQuery) -> CandleList:
    market = current_runtime().market
    inst = find_symbol(market, symbol)
    rows = market.stats[inst.symbol].candles_for(
        _INTERVAL_MS[query_args.interval], query_args.limit
    )
    price = inst.price
    return CandleList(
        symbol=inst.symbol,
        interval=query_args.interval,
        candles=[
            CandleOut(
                time=c.start_ms,
                open=price(c.open),
                high=price(c.high),
                low=price(c.low),
                close=price(c.close),
                volume=c.volume,
                trades=c.trades,
            )
            for c in rows
        ],
    )
