"""The cash wallet as a ledger: every change of cash is a ledger row, the balance is their sum.

`wallets.balance_cents` is kept equal to the sum of the user's ledger rows in the same
transaction as each row (a test checks the invariant); `held_cents` is what open buy orders
reserve, so the available cash is balance - held. Deposits are never profit: P&L comes from fills.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from marketsrv.errors import BadRequest, NotFound
from marketsrv.trading.events import UserEvents
from marketsrv.trading.money import MAX_DEPOSIT_CENTS, parse_cents
from marketsrv.units import kes


@dataclass(frozen=True, slots=True)
class Wallet:
    balance_cents: int
    held_cents: int

    @property
    def available_cents(self) -> int:
        return self.balance_cents - self.held_cents

    def figures(self) -> dict[str, Any]:
        return {
            "balance": kes(self.balance_cents),
            "available": kes(self.available_cents),
            "held": kes(self.held_cents),
        }

    def as_json(self, currency: str) -> dict[str, Any]:
        return {**self.figures(), "currency": currency}


def get_wallet(conn: sqlite3.Connection, user_id: int) -> Wallet:
    row = conn.execute(
        "SELECT balance_cents, held_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()
    if row is None:
        raise NotFound("no_wallet", "this user has no wallet")
    return Wallet(row[0], row[1])


def post_ledger(
    conn: sqlite3.Connection,
    user_id: int,
    kind: str,
    cents: int,
    now: int,
    order_id: int | None = None,
    fill_id: int | None = None,
) -> int:
    """One ledger row and the matching balance change (the CHECKs refuse a negative balance)."""
    cur = conn.execute(
        "INSERT INTO ledger (user_id, kind, amount_cents, order_id, fill_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, kind, cents, order_id, fill_id, now),
    )
    conn.execute(
        "UPDATE wallets SET balance_cents = balance_cents + ? WHERE user_id = ?", (cents, user_id)
    )
    return int(cur.lastrowid or 0)


def amount_cents(raw: object) -> int:
    cents = parse_cents(raw, "amount")
    if cents <= 0:
        raise BadRequest("invalid_amount", "amount must be positive")
    if cents > MAX_DEPOSIT_CENTS:
        raise BadRequest("invalid_amount", f"amount must be at most {kes(MAX_DEPOSIT_CENTS):,.0f}")
    return cents


def deposit(conn: sqlite3.Connection, user_id: int, cents: int, now: int) -> Wallet:
    post_ledger(conn, user_id, "deposit", cents, now)
    wallet = get_wallet(conn, user_id)
    events = UserEvents(now)
    events.wallet(user_id)
    events.write(conn)
    return wallet


def withdraw(conn: sqlite3.Connection, user_id: int, cents: int, now: int) -> Wallet:
    if get_wallet(conn, user_id).available_cents < cents:
        raise BadRequest("insufficient_funds", "Insufficient funds")
    post_ledger(conn, user_id, "withdrawal", -cents, now)
    wallet = get_wallet(conn, user_id)
    events = UserEvents(now)
    events.wallet(user_id)
    events.write(conn)
    return wallet
