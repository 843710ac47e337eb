"""The portfolio REST under /api/trading/: holdings, the summary, metrics, equity history, the
activity and the paper account's reset. Figures and their definitions: trading/portfolio.py,
metrics.py, equity.py (the database read in a thread, the marking on the trio thread)."""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

from quart import Blueprint, request
from quart_schema import document_request, document_response

from marketsrv.api.openapi import errors
from marketsrv.api.pages import page_of
from marketsrv.api.portfolio_schemas import (
    ActivityPage,
    HoldingOut,
    PortfolioHistory,
    PortfolioMetrics,
    PortfolioOverview,
    PortfolioSummary,
    ResetOut,
)
from marketsrv.api.trading import authenticate, page_args, user_id
from marketsrv.errors import BadRequest
from marketsrv.runtime import Runtime, current_runtime
from marketsrv.trading import activity, equity, metrics, portfolio, views
from marketsrv.trading.money import MAX_DEPOSIT_CENTS, parse_cents
from marketsrv.trading.requests import ResetRequest, validate_body
from marketsrv.units import DAY_MS, kes, whole_number

blueprint = Blueprint("portfolio", __name__, url_prefix="/api/trading")
blueprint.before_request(authenticate)

PERIOD_MS = {"1W": 7 * DAY_MS, "1M": 30 * DAY_MS, "3M": 91 * DAY_MS, "1Y": 365 * DAY_MS}


async def positions(rt: Runtime, uid: int) -> tuple[portfolio.Account, list[portfolio.Position]]:
    """The user's positions, read in a thread and marked here, on the trio thread."""
    market = rt.market
    day_start = market.calendar.day_start_ms(market.session.day)
    account = await rt.trading().store.read(lambda c: portfolio.read_positions(c, uid, day_start))
    return account, portfolio.value(account.rows, market)


@blueprint.get("/holdings/")
@document_response(list[HoldingOut])
async def holdings() -> list[dict[str, Any]]:
    """Your holdings: shares, average cost, value and P&L at the last price."""
    _, marked = await positions(current_runtime(), user_id())
    return portfolio.holdings(marked)


@blueprint.get("/portfolio/summary/")
@document_response(PortfolioSummary)
async def portfolio_summary() -> dict[str, Any]:
    """Your wallet, holdings marked at the last price, positions sold out today, and the totals."""
    account, marked = await positions(current_runtime(), user_id())
    return portfolio.summary(account, marked)


@blueprint.get("/portfolio/")
@document_response(PortfolioOverview)
async def portfolio_overview() -> dict[str, Any]:
    """The published client's portfolio: cash, total value and holdings."""
    user = request.user  # type: ignore[attr-defined]
    account, marked = await positions(current_runtime(), user.id)
    data = portfolio.summary(account, marked)
    return {
        "id": user.id,
        "name": user.username,
        "cash_balance": data["wallet"]["balance"],
        "total_value": data["summary"]["total_portfolio_value"],
        "holdings": data["holdings"],
    }


@blueprint.get("/portfolio/metrics/")
@document_response(PortfolioMetrics)
async def portfolio_metrics() -> dict[str, Any]:
    """Performance and trading statistics: returns, drawdown, win rate and more, with written
    definitions.
    """
    rt, uid = current_runtime(), user_id()
    now = (rt.market.clock(), equity.marks(rt.market))
    starts = metrics.period_starts(rt.market.calendar, rt.market.session.day)

    def work(c: sqlite3.Connection) -> dict[str, Any]:
        recent, _ = views.orders_page(c, uid, None, None, 10, 0)
        return metrics.metrics(c, uid, recent, starts, now)

    return await rt.trading().store.read(work)


@blueprint.get("/portfolio/history/")
@errors(s400=["invalid_period"])
@document_response(PortfolioHistory)
async def portfolio_history() -> dict[str, Any]:
    """Equity over `period` (1D: the current trading day; 1W, 1M, 3M, 1Y: that many days back;
    ALL), with the profit/loss and time-weighted return since its first point."""
    rt, uid = current_runtime(), user_id()
    period = request.args.get("period", "1M").upper()
    at, prices = rt.market.clock(), equity.marks(rt.market)
    if period == "1D":
        since = rt.market.calendar.day_start_ms(rt.market.session.day)
    elif period == "ALL":
        since = 0
    elif period in PERIOD_MS:
        since = at - PERIOD_MS[period]
    else:
        raise BadRequest("invalid_period", "period is one of 1D, 1W, 1M, 3M, 1Y, ALL")

    def work(c: sqlite3.Connection) -> equity.Series:
        return equity.series(equity.now_point(c, uid, prices, at, equity.history(c, uid, since)))

    s = await rt.trading().store.read(work)
    return {
        "period": period,
        "base_value": kes(s.points[0][1]),
        "timestamps": [p[0] for p in s.points],
        "equity": [kes(p[1]) for p in s.points],
        "profit_loss": [kes(v) for v in s.profit_loss],
        "profit_loss_pct": [round(r * 100, 4) for r in s.returns],
        "cash_flow": [kes(p[2]) if i else 0.0 for i, p in enumerate(s.points)],
    }


def _time_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    number = whole_number(raw, 15)
    if number is None:
        try:
            return current_runtime().market.calendar.day_start_ms(date.fromisoformat(raw))
        except ValueError:
            raise BadRequest(
                f"invalid_{name}", f"{name} is a time in ms or a date (YYYY-MM-DD)"
            ) from None
    return number


@blueprint.get("/activities/")
@errors(
    s400=["invalid_page", "invalid_page_size", "invalid_type", "invalid_from", "invalid_to"],
    s404=["invalid_page"],
)
@document_response(ActivityPage)
async def activities() -> dict[str, Any]:
    """Fills, deposits, withdrawals, cancelled and rejected orders and resets, newest first;
    `type` a comma-separated list of those, `from`/`to` times in ms or dates."""
    page, size = page_args()
    uid = user_id()
    raw = request.args.get("type", "")
    types = [t.strip() for t in raw.split(",") if t.strip()] or list(activity.TYPES)
    unknown = [t for t in types if t not in activity.TYPES]
    if unknown:
        raise BadRequest("invalid_type", f"type is one or more of {', '.join(activity.TYPES)}")
    start, end = _time_arg("from", 0), _time_arg("to", 1 << 62)
    rows, total = (
        await current_runtime()
        .trading()
        .store.read(
            lambda c: activity.activities(c, uid, types, start, end, size, (page - 1) * size)
        )
    )
    return page_of(rows, total, page, size)


@blueprint.post("/account/reset/")
@errors(
    s400=["invalid_cash"], s409=["order_in_flight"], s503=["trading_suspended", "settlement_failed"]
)
@document_request(ResetRequest)
@document_response(ResetOut)
async def reset_account() -> dict[str, Any]:
    """Start the paper account again: open orders cancelled, holdings, orders, fills, ledger and
    equity history cleared, the cash set to `cash`; the reset stays in the activity."""
    body = validate_body(ResetRequest, await request.get_json())
    cents = parse_cents(body.cash, "cash")
    if not 0 <= cents <= MAX_DEPOSIT_CENTS:
        raise BadRequest("invalid_cash", f"cash must be 0 to {kes(MAX_DEPOSIT_CENTS):,.0f}")
    wallet = await current_runtime().trading().orders.reset_account(user_id(), cents)
    return {"detail": "The account was reset.", "wallet": wallet}
