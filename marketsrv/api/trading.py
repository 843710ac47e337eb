"""Trading REST under /api/trading/: wallet, orders, fills, holdings, portfolio. All need a token."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_request, document_response

from marketsrv.api.accounts import current_user
from marketsrv.api.jsonio import dumps
from marketsrv.api.openapi import errors
from marketsrv.api.pages import page_of
from marketsrv.api.trading_schemas import (
    FillPage,
    OrderOut,
    OrderPage,
    WalletOut,
)
from marketsrv.errors import BadRequest, MarketsrvError, NotFound
from marketsrv.runtime import current_runtime
from marketsrv.trading import equity, views, wallet
from marketsrv.trading.requests import Amount, OrderRequest, validate_body
from marketsrv.units import whole_number

blueprint = Blueprint("trading", __name__, url_prefix="/api/trading")
PAGE_SIZE = 20


@blueprint.before_request
async def authenticate() -> None:
    if request.method == "OPTIONS":
        return  # a CORS preflight carries no credentials; quart-cors answers it
    request.user = await current_user()  # type: ignore[attr-defined]


def user_id() -> int:
    return int(request.user.id)  # type: ignore[attr-defined]


def page_args() -> tuple[int, int]:
    page = whole_number(request.args.get("page", "1"), 9)
    size = whole_number(request.args.get("page_size", str(PAGE_SIZE)), 9)
    if page is None or page < 1:
        raise BadRequest("invalid_page", "page must be a whole number, at least 1")
    if size is None or not 1 <= size <= 100:
        raise BadRequest("invalid_page_size", "page_size must be a whole number from 1 to 100")
    return page, size


# -- wallet ------------------------------------------------------------------------------------


@blueprint.get("/wallet/")
@document_response(WalletOut)
async def get_wallet() -> dict[str, Any]:
    """Your cash: balance, what open orders hold, and what is available."""
    uid = user_id()
    found = await current_runtime().trading().store.read(lambda c: wallet.get_wallet(c, uid))
    return found.as_json(current_runtime().market.currency)


@blueprint.post("/wallet/")
@document_request(Amount)
@document_response(WalletOut)
async def deposit() -> dict[str, Any]:
    """Add paper money to your wallet."""
    return await move_cash(wallet.deposit)


@blueprint.post("/wallet/withdraw/")
@errors(s400=["insufficient_funds"])
@document_request(Amount)
@document_response(WalletOut)
async def withdraw() -> dict[str, Any]:
    """Take money out of your wallet (no more than is available)."""
    return await move_cash(wallet.withdraw)


async def move_cash(
    move: Callable[[sqlite3.Connection, int, int, int], wallet.Wallet],
) -> dict[str, Any]:
    """A deposit or a withdrawal of the body's `amount`, answered with the wallet after it."""
    cents = wallet.amount_cents(validate_body(Amount, await request.get_json()).amount)
    uid, rt = user_id(), current_runtime()
    now, prices = rt.market.clock(), equity.marks(rt.market)

    def work(c: sqlite3.Connection) -> wallet.Wallet:
        return equity.around_flow(c, uid, prices, now, lambda: move(c, uid, cents, now))

    found = await rt.trading().store.write(work)
    return found.as_json(current_runtime().market.currency)


# -- orders ------------------------------------------------------------------------------------


@blueprint.post("/orders/")
@errors(
    s400=[
        "unknown_symbol",
        "price_out_of_band",
        "insufficient_funds",
        "insufficient_holdings",
        "order_rejected",
    ],
    s409=["client_order_id_reused"],
    s503=["trading_suspended", "settlement_failed"],
)
@document_request(OrderRequest)
@document_response(OrderOut, 201)
async def place_order() -> Response:
    """Place an order: it is held for (cash or shares), matched against the live book at once, and
    what rests waits there. `201` for a new order; with a `client_order_id` already used, `200`
    and that order.
    """
    orders = current_runtime().trading().orders
    uid = user_id()
    try:
        order = orders.parse(uid, validate_body(OrderRequest, await request.get_json()))
        body, created = await orders.place(order)
    except MarketsrvError as exc:
        orders.rejected[exc.code] += 1  # for /metrics, by the code the client was answered
        raise
    orders.accepted += created
    return json_response(body, 201 if created else 200)


def json_response(body: Any, status: int = 200) -> Response:
    """Encoded once with orjson: the hot path skips quart-schema's generic response conversion."""
    return Response(dumps(body), status=status, mimetype="application/json")


STATUSES = {"pending", "partially_filled", "executed", "cancelled", "failed"}


@blueprint.get("/orders/list/")
@errors(s400=["invalid_page", "invalid_page_size", "invalid_status"], s404=["invalid_page"])
@document_response(OrderPage)
async def list_orders() -> dict[str, Any]:
    """Your orders, the newest first, paginated, optionally by `status` and `symbol`."""
    page, size = page_args()
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest("invalid_status", "status must be one of " + ", ".join(sorted(STATUSES)))
    symbol = request.args.get("symbol") or None
    uid = user_id()
    rows, total = (
        await current_runtime()
        .trading()
        .store.read(lambda c: views.orders_page(c, uid, status, symbol, size, (page - 1) * size))
    )
    return page_of(rows, total, page, size)


@blueprint.get("/orders/")
@document_response(list[OrderOut])
async def orders_array() -> list[dict[str, Any]]:
    """The published client's `GET /api/trading/orders/`: a bare array, newest first (100)."""
    uid = user_id()
    rows, _ = (
        await current_runtime()
        .trading()
        .store.read(lambda c: views.orders_page(c, uid, None, None, 100, 0))
    )
    return rows


def _order_id(raw: str) -> int:
    order_id = whole_number(raw, 18)
    if order_id is None:
        raise NotFound("order_not_found", "no such order")
    return order_id


@blueprint.get("/orders/<raw_id>/")
@errors(s404=["order_not_found"])
@document_response(OrderOut)
async def get_order(raw_id: str) -> dict[str, Any]:
    """One of your orders, with its fills."""
    return await current_runtime().trading().orders.get(user_id(), _order_id(raw_id))


@blueprint.delete("/orders/<raw_id>/")
@blueprint.post("/orders/<raw_id>/cancel/")
@errors(s400=["order_not_open"], s404=["order_not_found"], s409=["order_in_flight"])
@document_response(OrderOut)
async def cancel_order(raw_id: str) -> dict[str, Any]:
    """Cancel one of your open orders: what was held for it is released."""
    return await current_runtime().trading().orders.cancel(user_id(), _order_id(raw_id))


@blueprint.get("/fills/")
@errors(s400=["invalid_page", "invalid_page_size"], s404=["invalid_page"])
@document_response(FillPage)
async def fills() -> dict[str, Any]:
    """Your fills, the newest first."""
    page, size = page_args()
    uid = user_id()

    rows, total = (
        await current_runtime()
        .trading()
        .store.read(lambda c: views.fills_page(c, uid, size, (page - 1) * size))
    )
    return page_of(rows, total, page, size)
