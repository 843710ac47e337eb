"""Response types of the accounts and trading API, for the OpenAPI document.

Request bodies are validated by the models of `trading/requests.py`, which document them too.
Answers are encoded once with orjson on the hot path; these models describe them, and
tests/test_openapi.py checks that the answers sent and the types documented agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class UserOut(BaseModel):
    id: int
    username: str
    is_admin: bool = Field(description="may run the market's scenarios (/api/admin/)")


class TokenOut(BaseModel):
    token: str = Field(description="send as 'Authorization: Bearer <token>'")
    user: UserOut


class Detail(BaseModel):
    detail: str


class WalletOut(BaseModel):
    balance: float
    available: float
    held: float = Field(description="reserved by open buy orders")
    currency: str = Field(description="the universe's currency: KES for the NSE")


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


class FillRow(BaseModel):
    id: int
    order_id: int
    symbol: str
    side: Literal["buy", "sell"]
    price: float
    quantity: int
    amount: float
    realized_pnl: float
    trade_id: int
    created_at: str


class FillPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[FillRow]
