"""Response types of holdings, the portfolio, its history, metrics and the activity; the
descriptions are the definitions (trading/portfolio.py, metrics.py, equity.py say the same)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from marketsrv.api.trading_schemas import OrderOut, WalletOut

MARK = "marked at the symbol's last trade (the previous close before today's first)"


class HoldingOut(BaseModel):
    symbol: str
    name: str
    quantity: int
    available_quantity: int = Field(description="not held by open sell orders")
    avg_price: float = Field(
        description="average cost per share, rounded to 4 decimals: sum cost_basis, not this"
    )
    current_price: float = Field(description=MARK)
    previous_close: float
    market_value: float = Field(description=f"quantity x current_price, {MARK}")
    cost_basis: float = Field(description="what the shares held cost (average cost), exact")
    unrealized_pnl: float = Field(description="market_value - cost_basis")
    pnl_percent: float = Field(description="unrealized_pnl / cost_basis, a percentage")
    day_pnl: float = Field(
        description="today's P&L, as brokers compute it: value now - the day's opening shares"
        " at the previous close - today's buys + today's sells"
    )
    realized_pnl: float = Field(description="all time: per sell fill, proceeds - average cost")


class PortfolioWallet(BaseModel):
    balance: float
    available: float
    held: float


class ClosedToday(BaseModel):
    symbol: str
    name: str
    realized_pnl: float = Field(description="realized today by the sells that closed it")


class SummaryTotals(BaseModel):
    total_cash: float = Field(description="the wallet's balance, held cash included")
    total_holdings_value: float
    total_portfolio_value: float = Field(description="equity: cash + holdings value")
    total_unrealized_pnl: float
    total_realized_pnl: float = Field(description="all time, every symbol ever held")
    today_realized_pnl: float
    today_pnl: float = Field(
        description="day P&L of every position (see holdings' day_pnl), closed ones included;"
        " deposits and withdrawals never count"
    )
    holdings_count: int


class PortfolioSummary(BaseModel):
    wallet: PortfolioWallet
    holdings: list[HoldingOut]
    closed_today: list[ClosedToday] = Field(description="positions sold out today")
    summary: SummaryTotals


class AccountSummary(BaseModel):
    cash_balance: float
    total_realized_pnl: float
    active_holdings: int


class TradingStatistics(BaseModel):
    total_trades: int = Field(
        description="closing orders: sell orders that filled, however many fills each took;"
        " total = winning + losing + break-even"
    )
    winning_trades: int = Field(description="closing orders with a realized P&L above zero")
    losing_trades: int = Field(description="below zero")
    break_even_trades: int = Field(description="exactly zero: neither won nor lost")
    closing_trades: int = Field(description="the same as total_trades")
    total_fills: int = Field(description="fills on both sides")
    win_rate: float = Field(description="winning / total trades, a percentage")
    average_win: float
    average_loss: float = Field(description="negative")
    largest_win: float
    largest_loss: float = Field(description="negative")
    profit_factor: float | None = Field(
        description="winning trades' P&L over losing trades' loss; null without a loss"
    )
    max_drawdown_percent: float = Field(
        description="the deepest fall from a peak of the time-weighted equity index"
    )
    time_weighted_return_percent: float = Field(
        description="since the first equity record, cash flows left out"
    )


class PeriodFigures(BaseModel):
    pnl: float = Field(description="P&L realized in the period")
    trades: int = Field(description="closing orders with a fill in the period")
    return_percent: float = Field(description="time-weighted return over the period")


class Performance(BaseModel):
    today: PeriodFigures = Field(description="the current trading day")
    week: PeriodFigures = Field(description="the calendar week, from Monday 00:00")
    month: PeriodFigures = Field(description="the calendar month, from the 1st 00:00")


class PortfolioMetrics(BaseModel):
    account_summary: AccountSummary
    trading_statistics: TradingStatistics
    performance: Performance
    recent_orders: list[OrderOut]


class PortfolioOverview(BaseModel):
    id: int
    name: str
    cash_balance: float
    total_value: float
    holdings: list[HoldingOut]


class PortfolioHistory(BaseModel):
    period: Literal["1D", "1W", "1M", "3M", "1Y", "ALL"]
    base_value: float = Field(description="equity at the first point")
    timestamps: list[int] = Field(description="ms; the last one is now")
    equity: list[float] = Field(description="cash + holdings at each point")
    profit_loss: list[float] = Field(
        description="equity change since the first point, less the cash flows since"
    )
    profit_loss_pct: list[float] = Field(
        description="time-weighted return since the first point, a percentage"
    )
    cash_flow: list[float] = Field(
        description="deposits - withdrawals since the previous point (not P&L)"
    )


class Activity(BaseModel):
    id: str = Field(description="unique in the list: fill:12, deposit:3, order:7, reset:1")
    type: Literal["fill", "deposit", "withdrawal", "order_cancelled", "order_rejected", "reset"]
    timestamp: int
    at: str
    symbol: str | None
    side: Literal["buy", "sell"] | None
    quantity: int | None
    price: float | None
    amount: float | None = Field(description="cash moved: negative out; null if none")
    order_id: int | None
    description: str


class ActivityPage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[Activity]


class ResetOut(BaseModel):
    detail: str
    wallet: WalletOut
