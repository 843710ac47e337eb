"""Settlement: the SQL of an order's life, each function run inside one writer transaction.

accept: check and hold the cash or shares, insert the order.   settle: record what the book did
(fills on both sides, cash, holdings, realized P&L, statuses, released holds).   close_order:
end an order and release what it still holds. Each names the user events it causes to the
write's `UserEvents` (trading/events.py), which the write stores in the outbox at its end.

Holds: a buy order holds `hold_price_cents x quantity` (its limit, or for a market order the
collar price); each fill releases the hold of its shares and debits what they actually cost.
A sell order holds its shares. Average cost is kept as the exact total `cost_cents`; a sell fill
removes `cost_cents x q / quantity` of it (rounded, the whole of it when the holding empties), so
realized P&L plus remaining cost always add up to the cash paid and received.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from marketsrv.engine import OrderResult
from marketsrv.errors import BadRequest, Conflict
from marketsrv.market import Instrument
from marketsrv.trading.events import UserEvents
from marketsrv.trading.views import OPEN, order_row
from marketsrv.trading.wallet import get_wallet, post_ledger


@dataclass(frozen=True, slots=True)
class NewOrder:
    user_id: int
    symbol: str
    side: str  # "buy" | "sell"
    order_type: str  # "market" | "limit"
    time_in_force: str  # "gtc" | "ioc" | "fok"
    quantity: int
    price_cents: int | None  # the limit; None for market orders
    book_price_cents: int | None  # the price in the book (market orders: the collar)
    hold_price_cents: int  # what one share holds for a buy: the limit, or the collar
    client_order_id: str | None
    request_hash: str
    created_ms: int  # when it was accepted, by the market's clock
    note: str = ""  # what the server changed in it (an off-tick price rounded), for the 201


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade as one user's order saw it."""

    order_id: int
    user_id: int
    symbol: str
    side: str
    price_cents: int
    quantity: int
    trade_id: int
    created_ms: int  # the trade's time


def accept(conn: sqlite3.Connection, out: UserEvents, o: NewOrder) -> tuple[sqlite3.Row, bool]:
    """Insert the order and its hold; (row, True) if new, (existing row, False) if a retry."""
    if o.client_order_id is not None:
        row = conn.execute(
            "SELECT * FROM orders WHERE user_id = ? AND client_order_id = ?",
            (o.user_id, o.client_order_id),
        ).fetchone()
        if row is not None:
            if row["request_hash"] != o.request_hash:
                raise Conflict(
                    "client_order_id_reused", "client_order_id was used for a different order"
                )
            return row, False
    held_cents = held_shares = 0
    if o.side == "buy":
        held_cents = o.hold_price_cents * o.quantity
        if get_wallet(conn, o.user_id).available_cents < held_cents:
            raise BadRequest("insufficient_funds", "Insufficient funds")
        conn.execute(
            "UPDATE wallets SET held_cents = held_cents + ? WHERE user_id = ?",
            (held_cents, o.user_id),
        )
    else:
        held_shares = o.quantity
        row = conn.execute(
            "SELECT quantity - held_quantity FROM holdings WHERE user_id = ? AND symbol = ?",
            (o.user_id, o.symbol),
        ).fetchone()
        if row is None or row[0] < o.quantity:
            raise BadRequest("insufficient_holdings", "Insufficient holdings")
        conn.execute(
            "UPDATE holdings SET held_quantity = held_quantity + ? WHERE user_id = ? AND symbol = ?",
            (o.quantity, o.user_id, o.symbol),
        )
    now = o.created_ms
    cur = conn.execute(
        "INSERT INTO orders (user_id, client_order_id, request_hash, symbol, side, order_type,"
        " time_in_force, price_cents, book_price_cents, quantity, held_cents, held_shares, status,"
        " note, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        (o.user_id, o.client_order_id, o.request_hash, o.symbol, o.side, o.order_type,
         o.time_in_force, o.price_cents, o.book_price_cents, o.quantity, held_cents, held_shares,
         o.note, now, now),
    )  # fmt: skip
    order_id = int(cur.lastrowid or 0)
    out.order(o.user_id, order_id)
    if o.side == "buy":  # the hold
        out.wallet(o.user_id)
    else:
        out.holding(o.user_id, o.symbol)
    return order_row(conn, order_id), True


def apply_fill(conn: sqlite3.Connection, out: UserEvents, f: Fill) -> int:
    """Cash, shares, hold release and realized P&L of one fill; returns the P&L in cents."""
    now = f.created_ms
    order = order_row(conn, f.order_id)
    notional = f.price_cents * f.quantity
    pnl = 0
    holding = conn.execute(
        "SELECT quantity, cost_cents FROM holdings WHERE user_id = ? AND symbol = ?",
        (f.user_id, f.symbol),
    ).fetchone()
    if f.side == "buy":
        hold_per_share = order["held_cents"] // max(1, order["quantity"] - order["filled_quantity"])
        release = min(order["held_cents"], hold_per_share * f.quantity)
        conn.execute(
            "UPDATE wallets SET held_cents = held_cents - ? WHERE user_id = ?", (release, f.user_id)
        )
        conn.execute(
            "UPDATE orders SET held_cents = held_cents - ? WHERE id = ?", (release, f.order_id)
        )
        conn.execute(
            "INSERT INTO holdings (user_id, symbol, quantity, cost_cents) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, symbol) DO UPDATE SET quantity = quantity + excluded.quantity,"
            " cost_cents = cost_cents + excluded.cost_cents",
            (f.user_id, f.symbol, f.quantity, notional),
        )
    else:
        quantity, cost = holding[0], holding[1]
        removed = (
            cost if f.quantity == quantity else (cost * f.quantity * 2 + quantity) // (2 * quantity)
        )
        pnl = notional - removed
        conn.execute(
            "UPDATE holdings SET quantity = quantity - ?, held_quantity = held_quantity - ?,"
            " cost_cents = cost_cents - ?, realized_pnl_cents = realized_pnl_cents + ?"
            " WHERE user_id = ? AND symbol = ?",
            (f.quantity, f.quantity, removed, pnl, f.user_id, f.symbol),
        )
        conn.execute(
            "UPDATE orders SET held_shares = held_shares - ? WHERE id = ?", (f.quantity, f.order_id)
        )
    cur = conn.execute(
        "INSERT INTO fills (order_id, user_id, symbol, side, price_cents, quantity,"
        " realized_pnl_cents, trade_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (f.order_id, f.user_id, f.symbol, f.side, f.price_cents, f.quantity, pnl, f.trade_id, now),
    )
    fill_id = int(cur.lastrowid or 0)
    kind, cash = ("buy_fill", -notional) if f.side == "buy" else ("sell_fill", notional)
    post_ledger(conn, f.user_id, kind, cash, now, f.order_id, fill_id)
    filled = order["filled_quantity"] + f.quantity
    status = "executed" if filled == order["quantity"] else "partially_filled"
    conn.execute(
        "UPDATE orders SET filled_quantity = ?, filled_cents = filled_cents + ?, status = ?,"
        " updated_at = ? WHERE id = ?",
        (filled, notional, status, now, f.order_id),
    )
    out.fill(f.user_id, [fill_id, f.order_id, f.symbol, f.side, f.price_cents, f.quantity, pnl,
                         f.trade_id, now])  # fmt: skip
    out.order(f.user_id, f.order_id)
    out.account(f.user_id, f.symbol)
    return pnl


def close_order(
    conn: sqlite3.Connection, out: UserEvents, order_id: int, status: str, note: str, now: int
) -> sqlite3.Row:
    """End an order (cancelled, failed, or the unfilled rest of an IOC): release what it holds."""
    order = order_row(conn, order_id)
    if order["held_cents"]:
        conn.execute(
            "UPDATE wallets SET held_cents = held_cents - ? WHERE user_id = ?",
            (order["held_cents"], order["user_id"]),
        )
    if order["held_shares"]:
        conn.execute(
            "UPDATE holdings SET held_quantity = held_quantity - ? WHERE user_id = ? AND symbol = ?",
            (order["held_shares"], order["user_id"], order["symbol"]),
        )
    if order["filled_quantity"] == order["quantity"]:
        status = "executed"
    conn.execute(
        "UPDATE orders SET held_cents = 0, held_shares = 0, status = ?, note = ?, updated_at = ?"
        " WHERE id = ?",
        (status, note, now, order_id),
    )
    out.order(order["user_id"], order_id)
    if order["held_cents"]:  # the hold released
        out.wallet(order["user_id"])
    if order["held_shares"]:
        out.holding(order["user_id"], order["symbol"])
    return order_row(conn, order_id)


def release_unused(conn: sqlite3.Connection, order_id: int) -> None:
    """A buy filled below its hold price keeps the difference held; give it back once done."""
    order = order_row(conn, order_id)
    if order["status"] == "executed" and order["held_cents"]:
        conn.execute(
            "UPDATE wallets SET held_cents = held_cents - ? WHERE user_id = ?",
            (order["held_cents"], order["user_id"]),
        )
        conn.execute("UPDATE orders SET held_cents = 0 WHERE id = ?", (order_id,))


def open_orders(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return list(
        conn.execute("SELECT * FROM orders WHERE status IN (?, ?) ORDER BY id", OPEN).fetchall()
    )


def owner_of(user_id: int) -> str:
    """A user's orders in the engine: owner `u<id>`, so self-trade prevention is per user, and
    order id the negative of the database id (simulated orders have positive ids)."""
    return f"u{user_id}"


def user_of(owner: str | None) -> int | None:
    return int(owner[1:]) if owner and owner.startswith("u") else None


def settle(
    conn: sqlite3.Connection,
    out: UserEvents,
    inst: Instrument,
    result: OrderResult,
    taker_id: int | None,
    now: int,
) -> None:
    """Record what the book did with one order, in one pass: every trade's fills on the user
    sides (fill rows, cash postings, holdings, P&L, order statuses, their events), the user's
    resting orders the self-trade rule cancelled, and how the taker ended (`taker_id` None: a
    simulated taker, whose fills against users' resting orders are recorded alone, or the
    opening auction, where both sides rested and the buy side is recorded as the taker)."""
    symbol = inst.symbol
    for trade in result.trades:
        price = trade.price  # cents, like every price in the books
        maker_user = user_of(trade.maker_owner)
        if maker_user is not None:
            apply_fill(conn, out, Fill(-trade.maker_order_id, maker_user, symbol,
                                       trade.aggressor.opposite.value, price, trade.quantity,
                                       trade.trade_id, trade.timestamp_ms))  # fmt: skip
            release_unused(conn, -trade.maker_order_id)
        taker_user = user_of(trade.taker_owner)
        if taker_user is not None:
            order_id = taker_id if taker_id is not None else -trade.taker_order_id
            apply_fill(conn, out, Fill(order_id, taker_user, symbol, trade.aggressor.value,
                                       price, trade.quantity, trade.trade_id,
                                       trade.timestamp_ms))  # fmt: skip
            if taker_id is None:  # an auction's buy side, which rested like a maker
                release_unused(conn, order_id)
    for resting_id, _ in result.self_trade_cancels:
        note = "cancelled: it would have traded with another order of yours (self-trade prevention)"
        close_order(conn, out, -resting_id, "cancelled", note, now)
    if taker_id is not None and result.cancelled:
        _end_taker(conn, out, taker_id, result, now)
    elif taker_id is not None:
        release_unused(conn, taker_id)


def _end_taker(
    conn: sqlite3.Connection, out: UserEvents, taker_id: int, result: OrderResult, now: int
) -> None:
    """Close what of a user's incoming order neither filled nor rests."""
    row = order_row(conn, taker_id)
    if result.filled:
        status = "cancelled"
        note = f"partly filled ({result.filled} of {result.quantity}); the rest was cancelled"
    elif row["time_in_force"] == "fok":
        status, note = "cancelled", "fill or kill: not enough liquidity to fill it all at once"
    elif row["order_type"] == "market":
        status, note = "failed", "no liquidity within the market order's price collar or limit"
    else:
        status, note = "cancelled", "immediate or cancel: nothing to trade at this price"
    close_order(conn, out, taker_id, status, note, now)
