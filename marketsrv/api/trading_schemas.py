"""Types of the accounts and trading API, for the OpenAPI document.

The trading handlers validate their bodies themselves (both of the seed client's order shapes,
exact money parsing) and encode answers once with orjson, so these models document the wire
format in `/api/openapi.json` without sitting on the hot path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Credentials(BaseModel):
    username: str = Field(description="3-64 letters, digits or . _ @ + -")
    password: str = Field(description="6-256 characters")


class UserOut(BaseModel):
    id: int
    username: str


class TokenOut(BaseModel):
    token: str = Field(description="send as 'Authorization: Bearer <token>'")
    user: UserOut


class Detail(BaseModel):
    detail: str


class Amount(BaseModel):
    amount: float | str = Field(description="KES, positive, at most 2 decimals")


class WalletOut(BaseModel):
    balance: float
    available: float
    held: float = Field(description="reserved by open buy orders")
    currency: Literal["KES"]


class OrderIn(BaseModel):
    symbol: str | None = Field(None, description="or stock_symbol")
    stock_symbol: str | None = None
    side: Literal["buy", "sell"]
    quantity: int = Field(ge=1, le=1_000_000)
    order_type: Literal["market", "limit"] | None = Field(
        None, description="limit when a price is given, else market"
    )
    price: float | str | None = Field(None, description="limit price in KES, on the tick")
    time_in_force: Literal["gtc", "ioc", "fok"] | None = None
    client_order_id: str | None = Field(None, max_length=64, description="makes retries safe")


class FillOut(BaseModel):
    id: int
    price: float
    quantity: int
    realized_pnl: float
    trade_id: int
    created_at: str


class OrderOut(BaseModel):
    id: int
    order_id: int
    client_order_id: str | None
    symbol: str
    stock_symbol: str
    side: Literal["buy", "sell"]
    order_type: Literal["market", "limit"]
    time_in_force: Literal["gtc", "ioc", "fok"]
    price: float | None
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    average_price: float | None
    amount: float
    status: Literal["pending", "partially_filled", "executed", "cancelled", "failed"]
    note: str
    profit_loss: float
    created_at: str
    updated_at: str
    executed_at: str | None
    fills: list[FillOut]


class OrderPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[OrderOut]


class HoldingOut(BaseModel):
    symbol: str
    name: str
    quantity: int
    available_quantity: int
    avg_price: float
    current_price: float
    market_value: float
    cost_basis: float
    unrealized_pnl: float
    pnl_percent: float
    realized_pnl: float


class SummaryTotals(BaseModel):
    total_cash: float
    total_holdings_value: float
    total_portfolio_value: float
    total_unrealized_pnl: float
    today_pnl: float
    holdings_count: int


class PortfolioSummary(BaseModel):
    wallet: WalletOut
    holdings: list[HoldingOut]
    summary: SummaryTotals
