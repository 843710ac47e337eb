"""The user's events, as the private stream (`/ws/user/`) carries them, in the shapes the REST API
answers with:

    order.accepted | order.partially_filled | order.filled | order.cancelled | order.rejected
        the order, as GET /api/trading/orders/<id>/ shows it
    fill       one fill of one of the user's orders
    account.reset  the account was reset: {"id", "cash"}
    wallet     the wallet after the change: balance, available, held
    holding    one symbol's holding after the change (quantity 0 once sold out)

A write gathers them in a `UserEvents` as it goes and writes them at its end, in its own
transaction (`write`): an order, a wallet or a holding is read once there, in its final state,
however often the write touched it. Each user's events go out in that order: fills, orders, the
reset, the wallet, holdings; so an order's events come before the account figures they changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from marketsrv.errors import NotFound
from marketsrv.trading import outbox
from marketsrv.trading.views import order_json
from marketsrv.units import iso_ms, kes

T = TypeVar("T")

ORDER_EVENTS = {
    "pending": "order.accepted",
    "partially_filled": "order.partially_filled",
    "executed": "order.filled",
    "cancelled": "order.cancelled",
    "failed": "order.rejected",
}


ORDER_FACTS = (
    "id", "client_order_id", "symbol", "side", "order_type", "time_in_force", "price_cents",
    "quantity", "filled_quantity", "filled_cents", "status", "note", "created_at", "updated_at",
)  # fmt: skip
FILL_FACTS = ("id", "price_cents", "quantity", "realized_pnl_cents", "trade_id", "created_at")
_STATUS = ORDER_FACTS.index("status")
_ORDER_SQL = f"SELECT {', '.join(ORDER_FACTS)} FROM orders WHERE id = ?"
_FILLS_SQL = f"SELECT {', '.join(FILL_FACTS)} FROM fills WHERE order_id = ? ORDER BY id"


class UserEvents:
    """The events of one write transaction, by user, until `write` numbers and stores them."""

    def __init__(self, now: int) -> None:
        self.now = now
        self._fills: dict[int, list[list[Any]]] = {}
        self._orders: dict[int, int] = {}  # order id -> its user when it changed (a reset
        # archives the user's orders to user 0 before the write ends)
        self._resets: dict[int, list[int]] = {}
        self._wallets: dict[int, None] = {}  # dicts as ordered sets
        self._holdings: dict[tuple[int, str], None] = {}
        self.orders: dict[int, list[Any]] = {}  # after `write`: each order's facts

    def fill(self, user_id: int, facts: list[Any]) -> None:
        """`facts`: id, order_id, symbol, side, price_cents, quantity, pnl_cents, trade_id, at."""
        self._fills.setdefault(user_id, []).append(facts)

    def order(self, user_id: int, order_id: int) -> None:
        self._orders[order_id] = user_id

    def reset(self, user_id: int, reset_id: int, cash_cents: int) -> None:
        self._resets[user_id] = [reset_id, cash_cents]

    def wallet(self, user_id: int) -> None:
        self._wallets[user_id] = None

    def holding(self, user_id: int, symbol: str) -> None:
        self._holdings[(user_id, symbol)] = None

    def account(self, user_id: int, symbol: str) -> None:
        """The wallet and the symbol's holding after a change to either."""
        self.wallet(user_id)
        self.holding(user_id, symbol)

    def write(self, conn: sqlite3.Connection) -> None:
        """Read what changed, as it is now, and write one outbox row per user; then start
        gathering again (a write that changes what the events read, after naming them, writes
        them first: an account reset, before it archives the orders)."""
        by_user: dict[int, list[outbox.Event]] = {}
        for user_id, made in self._fills.items():
            by_user.setdefault(user_id, []).extend(("fill", f) for f in made)
        for order_id, user_id in self._orders.items():
            row = conn.execute(_ORDER_SQL, (order_id,)).fetchone()
            if row is None:
                raise NotFound("order_not_found", "no such order")
            fills = [list(f) for f in conn.execute(_FILLS_SQL, (order_id,))]
            facts = self.orders[order_id] = [list(row), fills]
            by_user.setdefault(user_id, []).append((ORDER_EVENTS[row[_STATUS]], facts))
        for user_id, reset in self._resets.items():
            by_user.setdefault(user_id, []).append(("account.reset", reset))
        for user_id in self._wallets:
            wallet = conn.execute(
                "SELECT balance_cents, held_cents FROM wallets WHERE user_id = ?", (user_id,)
            ).fetchone()
            by_user.setdefault(user_id, []).append(("wallet", list(wallet)))
        for user_id, symbol in self._holdings:
            holding = conn.execute(
                "SELECT quantity, held_quantity, cost_cents, realized_pnl_cents FROM holdings"
                " WHERE user_id = ? AND symbol = ?",
                (user_id, symbol),
            ).fetchone()
            by_user.setdefault(user_id, []).append(
                ("holding", [symbol, *(holding or (0, 0, 0, 0))])
            )
        for user_id, events in by_user.items():
            outbox.append(conn, user_id, events, self.now)
        self._fills, self._orders, self._resets = {}, {}, {}
        self._wallets, self._holdings = {}, {}


def render(topic: str, facts: Any) -> dict[str, Any]:
    """An event's `data`, from the facts the outbox keeps (a dict: written before version 5
    of the schema, when the outbox kept the data itself). Raises on facts it cannot read."""
    if isinstance(facts, dict):
        return facts
    if topic.startswith("order."):
        return order_data(facts)
    if topic == "fill":
        fill_id, order_id, symbol, side, price, quantity, pnl, trade_id, at = facts
        return {
            "id": fill_id, "order_id": order_id, "symbol": symbol, "side": side,
            "price": kes(price), "quantity": quantity, "realized_pnl": kes(pnl),
            "trade_id": trade_id, "created_at": iso_ms(at),
        }  # fmt: skip
    if topic == "wallet":
        balance, held = facts
        return {"balance": kes(balance), "available": kes(balance - held), "held": kes(held)}
    if topic == "holding":
        symbol, quantity, held, cost, realized = facts
        return {
            "symbol": symbol,
            "quantity": quantity,
            "available_quantity": quantity - held,
            "cost_basis": kes(cost),
            "avg_price": round(cost / quantity / 100, 4) if quantity else 0.0,
            "realized_pnl": kes(realized),
        }
    if topic == "account.reset":
        reset_id, cash = facts
        return {"id": reset_id, "cash": kes(cash)}
    raise ValueError(f"no such event: {topic}")


def order_data(facts: list[Any]) -> dict[str, Any]:
    """The order as GET /api/trading/orders/<id>/ shows it, from its facts."""
    row, fills = facts
    return order_json(
        dict(zip(ORDER_FACTS, row, strict=True)),
        [dict(zip(FILL_FACTS, f, strict=True)) for f in fills],
    )


def recording(
    now: int, work: Callable[[sqlite3.Connection, UserEvents], T]
) -> Callable[[sqlite3.Connection], T]:
    """A write: `work` with a `UserEvents` to name its events in, written when it is done."""

    def run(conn: sqlite3.Connection) -> T:
        out = UserEvents(now)
        result = work(conn, out)
        out.write(conn)
        return result

    return run
