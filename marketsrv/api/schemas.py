"""Request, query and response types of the market-data REST API.

They are validated by pydantic through quart-schema, which also builds `/openapi.json` from them.
Prices are JSON numbers in KES, exact to the cent; timestamps are integer milliseconds since the epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from marketsrv.units import DEFAULT_DEPTH, MAX_DEPTH, whole_number

MAX_PAGE_SIZE = 100
MAX_BATCH_SYMBOLS = 200
MAX_CANDLES = 5000
MAX_TIME_MS = 10**15  # epoch milliseconds, past the year 33000: more is not a time


def _ascii_whole(value: object) -> object:
    """Query numbers are ASCII digits: pydantic alone would take "1_0", "+1", " 1" and "1.0"."""
    if isinstance(value, str) and whole_number(value) is None:
        raise ValueError("must be a whole number written with the digits 0-9")
    return value


QueryInt = Annotated[int, BeforeValidator(_ascii_whole)]


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PageQuery(_Query):
    page: QueryInt = Field(1, ge=1, description="Page number, from 1.")
    page_size: QueryInt = Field(20, ge=1, le=MAX_PAGE_SIZE, description="Items per page.")


class TrendingQuery(PageQuery):
    sort_by: Literal["most_traded", "highest_change", "lowest_change", "highest_price"] = (
        "most_traded"
    )


class DepthQuery(_Query):
    depth: QueryInt = Field(
        DEFAULT_DEPTH, ge=1, le=MAX_DEPTH, description="Levels per side, 1 to 50."
    )


class TradesQuery(_Query):
    limit: QueryInt = Field(50, ge=1, le=1000, description="Newest trades to return, 1 to 1000.")


class CandlesQuery(_Query):
    interval: Literal["1m", "5m", "15m", "1h", "1d", "1w"] = Field(
        "1m",
        description="Candle length. 1m to 1h are built from one-minute candles (kept"
        " `candle_retention_days`); 1d and 1w from daily bars (kept for good; a week starts on"
        " Monday).",
    )
    limit: QueryInt = Field(
        100, ge=1, le=MAX_CANDLES, description=f"Newest candles to return, 1 to {MAX_CANDLES}."
    )
    start: QueryInt | None = Field(
        None, alias="from", ge=0, le=MAX_TIME_MS,
        description="Only candles that open at or after this time (ms).",
    )  # fmt: skip
    end: QueryInt | None = Field(
        None, alias="to", ge=0, le=MAX_TIME_MS,
        description="Only candles that open before this time (ms).",
    )  # fmt: skip


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    symbols: list[str] = Field(max_length=MAX_BATCH_SYMBOLS)


class Stock(BaseModel):
    symbol: str
    name: str
    sector: str
    current_price: float
    previous_close: float
    open: float
    high: float
    low: float
    change: float
    change_percent: float
    percentage_change: float
    volume: int
    turnover: float
    vwap: float | None
    trades: int
    bid: float | None
    ask: float | None
    bid_size: int
    ask_size: int
    tick_size: float = Field(description="The tick in force at the current price (KES).")
    lot_size: int = Field(description="The board lot: quantities are whole multiples of it.")
    lower_limit: float | None = Field(
        description="The lowest price allowed today (the daily band); null: no band."
    )
    upper_limit: float | None = Field(description="The highest price allowed today.")
    state: Literal["pre_open", "open", "closed", "halted"] = Field(
        description="pre_open: orders rest, no matching; open; closed; halted: orders refused."
    )
    trading_day: str = Field(description="The trading day these figures belong to (ISO date).")
    currency: str
    is_active: bool  # false while halted
    last_updated: str  # ISO 8601, UTC
    timestamp: int


class StockPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[Stock]


class BatchResponse(BaseModel):
    stocks: list[Stock]
    missing: list[str]


class Level(BaseModel):
    price: float
    quantity: int
    total: float  # this level's notional, price × quantity


class OrderBookSnapshot(BaseModel):
    symbol: str
    bids: list[Level]
    asks: list[Level]
    depth: int
    seq: int
    timestamp: int


class TradeOut(BaseModel):
    id: int
    price: float
    quantity: int
    side: Literal["buy", "sell"]  # the aggressor's side
    timestamp: int


class TradeList(BaseModel):
    symbol: str
    trades: list[TradeOut]


class CandleOut(BaseModel):
    time: int  # open time of the candle
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int


class CandleList(BaseModel):
    symbol: str
    interval: str
    candles: list[CandleOut]


class SimulatorHealth(BaseModel):
    running: bool
    ticks: int
    busy_ms: float


class StreamsHealth(BaseModel):
    connections: int  # WebSocket clients now
    publishes: int  # stream intervals published since start
    slow_closed: int  # clients closed as slow consumers (4008)
    dropped: int  # clients dropped because their socket stayed stuck or went silent


class MarketHealth(BaseModel):
    state: Literal["pre_open", "open", "closed"]
    trading_day: str  # ISO date
    calendar: Literal["always", "nse"]
    next_change: int  # when the state next changes (ms)
    halted: dict[str, str]  # symbols halted now, with why


class MemoryHealth(BaseModel):
    saves: int  # batches of market state written since start
    rows_saved: int
    collect_ms: float  # event-loop time spent collecting them


class Health(BaseModel):
    status: Literal["ok"]
    symbols: int
    uptime_s: float
    market: MarketHealth
    simulator: SimulatorHealth
    streams: StreamsHealth
    memory: MemoryHealth | None
