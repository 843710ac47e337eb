"""Market-data REST: stocks, trending lists, order-book snapshots, trades and candles.

Every answer is computed from the live market at the moment of the request; there is no cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio
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
    MarketHealth,
    MemoryHealth,
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
from marketsrv.errors import BadRequest, NotFound
from marketsrv.market import Instrument, Market
from marketsrv.market.calendar import week_start
from marketsrv.market.days import daily_bars
from marketsrv.market.quote import quote
from marketsrv.market.stats import Candle, merge_candles
from marketsrv.runtime import Runtime, current_runtime
from marketsrv.units import DAY_MS, MINUTE_MS, iso_ms

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
        lower_limit=q.lower_limit, upper_limit=q.upper_limit, state=q.state,
        trading_day=market.session.day.isoformat(), is_active=q.state != "halted",
        last_updated=iso_ms(q.updated_ms), timestamp=q.updated_ms, currency=market.currency,
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
    """The server's state: the market's phase and trading day, the simulator's and the streams'
    counters.
    """
    rt = current_runtime()
    sim = rt.simulator
    market = rt.market
    return Health(
        status="ok",
        symbols=len(market.instruments),
        uptime_s=round(time.monotonic() - rt.started_monotonic, 3),
        market=MarketHealth(
            state=market.phase,
            trading_day=market.session.day.isoformat(),
            calendar=market.calendar.mode,  # type: ignore[arg-type]
            next_change=market.session.until_ms,
            halted=dict(sorted(market.halted.items())),
        ),
        memory=MemoryHealth(**rt.memory.figures()) if rt.memory else None,
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
    """Every stock, paginated: price, change, volume, high and low, bid and ask."""
    market = current_runtime().market
    return paginate([stock_view(market, s) for s in market.instruments], query_args)


@blueprint.get("/stocks/trending/")
@errors(s404=["invalid_page"])
@validate_querystring(TrendingQuery)
@validate_response(StockPage)
async def trending(query_args: TrendingQuery) -> StockPage:
    """Stocks sorted by `sort_by`: most traded, highest or lowest change, highest price."""
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
    """Several stocks in one call: `{"symbols": [...]}`; unknown ones are listed under `missing`."""
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
    """One stock: price, change, volume, high/low, bid/ask, VWAP, turnover and the day's price
    band.
    """
    market = current_runtime().market
    return stock_view(market, find_symbol(market, symbol).symbol)


@blueprint.get("/stocks/<symbol>/orderbook/")
@validate_querystring(DepthQuery)
@validate_response(OrderBookSnapshot)
async def order_book(symbol: str, query_args: DepthQuery) -> OrderBookSnapshot:
    """The symbol's order book, `depth` levels a side, with the book's `seq` (the streams' diffs
    continue from it).
    """
    market = current_runtime().market
    inst = find_symbol(market, symbol)
    book = market.books[inst.symbol]
    bids, asks = book.depth(query_args.depth)

    def levels(rows: list[tuple[int, int]]) -> list[Level]:
        return [Level(price=inst.price(p), quantity=q, total=p * q / 100) for p, q in rows]

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
    """The symbol's newest trades, newest first."""
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
@errors(s400=["invalid_range"])
@validate_querystring(CandlesQuery)
@validate_response(CandleList)
async def candles(symbol: str, query_args: CandlesQuery) -> CandleList:
    """Candles oldest first: the newest `limit` that open in [`from`, `to`). Times are the
    candles' open times in ms; a daily bar's is the local midnight of its trading day."""
    rt = current_runtime()
    market = rt.market
    inst = find_symbol(market, symbol)
    q = query_args
    if q.start is not None and q.end is not None and q.start >= q.end:
        raise BadRequest("invalid_range", "from must be before to")
    if q.interval in ("1d", "1w"):
        bars = daily_bars(market, inst.symbol)
        if q.interval == "1d":
            rows = merge_candles(bars, DAY_MS, q.limit, q.start, q.end, bucket=_same)
        else:
            rows = merge_candles(bars, 0, q.limit, q.start, q.end, bucket=_week(market))
    else:
        rows = await _minute_candles(rt, inst.symbol, _INTERVAL_MS[q.interval], q)
    price = inst.price
    return CandleList(
        symbol=inst.symbol,
        interval=q.interval,
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


def _same(start_ms: int) -> int:
    return start_ms


def _week(market: Market) -> Callable[[int], int]:
    calendar = market.calendar

    def monday(start_ms: int) -> int:
        return calendar.day_ms(week_start(calendar.local_date(start_ms)))

    return monday


async def _minute_candles(
    rt: Runtime, symbol: str, interval_ms: int, q: CandlesQuery
) -> list[Candle]:
    """Candles of 1m to 1h: from memory when it reaches back far enough, else from the
    database's older one-minute candles followed by memory's; read and merged off the loop."""
    memory = rt.market.stats[symbol].candles
    end = q.end if q.end is not None else 1 << 62
    first = memory[0].start_ms if memory else end
    # Copies: the merge runs in a thread, and the newest candle is still changing here.
    recent = [
        Candle(c.start_ms, c.open, c.high, c.low, c.close, c.volume, c.trades)
        for c in memory
        if c.start_ms < end and (q.start is None or c.start_ms >= q.start)
    ]
    # One-minute candles the answer may need at most: `limit` intervals' worth.
    wanted = q.limit * (interval_ms // MINUTE_MS) - len(recent)
    keeper = rt.memory
    reaches_back = q.start is None or q.start < first

    def read_and_merge() -> list[Candle]:
        older: list[Candle] = []
        if keeper is not None and reaches_back and wanted > 0:
            older = keeper.older_candles(symbol, q.start or 0, min(first, end), wanted)
        return merge_candles([*older, *recent], interval_ms, q.limit, q.start, q.end)

    return await trio.to_thread.run_sync(read_and_merge)
