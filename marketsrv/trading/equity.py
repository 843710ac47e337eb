"""The account's value over time: equity snapshots, and the returns with cash flows left out.

Equity is cash (the wallet's balance, held cash included) plus the holdings marked at the last
trade. A row is written for every user at each trading day's close, and every `interval_s`
(intraday) for users who hold shares; beside it, the net cash flow (deposits - withdrawals)
since the user's previous row. Returns are time-weighted: each period between two points
returns (equity - flow) / previous equity, and the periods multiply, so a deposit moves equity
but never the return. Profit/loss over a span is the change in equity less the flows.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from marketsrv.market import Market
from marketsrv.trading.store import Store

log = logging.getLogger("marketsrv.trading")

T = TypeVar("T")
Point = tuple[int, int, int]  # at (ms), equity (cents), flow since the previous point (cents)


def flows(conn: sqlite3.Connection, user_id: int, after: int, upto: int) -> int:
    """Deposits less withdrawals in (after, upto], cents."""
    return int(
        conn.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM ledger WHERE user_id = ?"
            " AND kind IN ('deposit', 'withdrawal') AND created_at > ? AND created_at <= ?",
            (user_id, after, upto),
        ).fetchone()[0]
    )


def equity_of(conn: sqlite3.Connection, user_id: int, prices: dict[str, int]) -> tuple[int, int]:
    """(equity, cash) in cents as this transaction sees the account, holdings marked at
    `prices` (taken on the trio thread; a symbol without a price is marked at its cost)."""
    cash = conn.execute(
        "SELECT balance_cents FROM wallets WHERE user_id = ?", (user_id,)
    ).fetchone()[0]
    value = 0
    for symbol, quantity, cost in conn.execute(
        "SELECT symbol, quantity, cost_cents FROM holdings WHERE user_id = ? AND quantity > 0",
        (user_id,),
    ):
        value += prices[symbol] * quantity if symbol in prices else cost
    return cash + value, cash


def record(
    conn: sqlite3.Connection, user_ids: list[int], prices: dict[str, int], at: int, kind: str
) -> None:
    """A point for each user at `at`: equity and cash read in this transaction (so a deposit is
    either in both or in neither), with the flows since the user's previous point."""
    for user_id in user_ids:
        value, cash = equity_of(conn, user_id, prices)
        last = conn.execute(
            "SELECT max(at) FROM equity_history WHERE user_id = ?", (user_id,)
        ).fetchone()[0]
        # A user's points never go back in time (a day's close point is stamped at the day's
        # start, and a deposit in between has its own points already).
        point_at = at if last is None else max(at, last)
        flow = flows(conn, user_id, last if last is not None else -1, point_at)
        conn.execute(
            "INSERT INTO equity_history (user_id, at, equity_cents, cash_cents, flow_cents, kind)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, point_at, value, cash, flow, kind),
        )


def around_flow(
    conn: sqlite3.Connection, user_id: int, prices: dict[str, int], now: int, move: Callable[[], T]
) -> T:
    """A deposit or withdrawal (`move`, writing its ledger row at `now`) between two points of
    the account: just before (`now - 1`) and just after (`now`, with the flow). The flow then has
    a span of its own, and the next span starts from the money as it is: folded into a span
    where it was also invested, the money would count as that span's profit."""
    record(conn, [user_id], prices, now - 1, "flow")
    result = move()
    record(conn, [user_id], prices, now, "flow")
    return result


def now_point(
    conn: sqlite3.Connection, user_id: int, prices: dict[str, int], at: int, points: list[Point]
) -> list[Point]:
    """`points` and the account now, read in the same transaction."""
    last = points[-1][0] if points else -1
    if at < last:  # (the same ms still counts: the account may have moved within it)
        return points
    value, _ = equity_of(conn, user_id, prices)
    return [*points, (at, value, flows(conn, user_id, last, at))]


def history(conn: sqlite3.Connection, user_id: int, since: int) -> list[Point]:
    """The points from the last one at or before `since` (the base) on, oldest first."""
    base = conn.execute(
        "SELECT max(at) FROM equity_history WHERE user_id = ? AND at <= ?", (user_id, since)
    ).fetchone()[0]
    start = base if base is not None else since
    return [
        (at, equity, flow)
        for at, equity, flow in conn.execute(
            "SELECT at, equity_cents, flow_cents FROM equity_history WHERE user_id = ? AND at >= ?"
            " ORDER BY at, id",
            (user_id, start),
        )
    ]


@dataclass(frozen=True, slots=True)
class Series:
    """Cumulative figures at each point, relative to the first (the base)."""

    points: list[Point]
    profit_loss: list[int]  # cents: equity change less the flows since the base
    returns: list[float]  # time-weighted, as fractions

    @property
    def max_drawdown(self) -> float:
        """The deepest fall from a peak of the time-weighted index, as a fraction."""
        peak, worst = 1.0, 0.0
        for r in self.returns:
            index = 1.0 + r
            peak = max(peak, index)
            worst = max(worst, (peak - index) / peak if peak > 0 else 0.0)
        return worst


def series(points: list[Point]) -> Series:
    pl: list[int] = []
    returns: list[float] = []
    growth = 1.0
    flowed = 0
    for i, (_, equity, flow) in enumerate(points):
        if i:
            flowed += flow
            previous = points[i - 1][1]
            if previous > 0:  # an empty account has no return until money comes in
                growth *= (equity - flow) / previous
        pl.append(equity - points[0][1] - flowed if points else 0)
        returns.append(growth - 1.0)
    return Series(points, pl, returns)


def marks(market: Market) -> dict[str, int]:
    """Every symbol's mark in cents (trio thread): what holdings are worth now."""
    return {symbol: stats.current for symbol, stats in market.stats.items()}


class EquityRecorder:
    """Takes the snapshots: at each day roll for every user, every `interval_s` for holders."""

    def __init__(self, store: Store, market: Market, interval_s: float) -> None:
        self.store = store
        self.market = market
        self.interval_s = interval_s
        self._rolled = False  # a day roll happened: a close snapshot is due
        self._wake = trio.Event()
        market.roll_listeners.append(self._on_roll)

    def _on_roll(self) -> None:
        self._rolled = True
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            kind = "close" if self._rolled else "intraday"
            self._rolled = False
            try:
                await self.snapshot(kind)
            except Exception:  # a full disk must not end the server: the next one may work
                log.exception("equity snapshot failed")

    async def snapshot(self, kind: str) -> int:
        """A point for every user with a wallet (a close) or every holder (intraday)."""
        prices, at = marks(self.market), self.market.clock()
        if kind == "close":
            # The new day's first point, at its start (taken moments after the roll, at the
            # closing marks): the base of the day's history and return.
            at = min(at, self.market.calendar.day_start_ms(self.market.session.day))
        query = (
            "SELECT user_id FROM wallets"
            if kind == "close"
            else "SELECT DISTINCT user_id FROM holdings WHERE quantity > 0"
        )

        def work(conn: sqlite3.Connection) -> int:
            users = [row[0] for row in conn.execute(query)]
            record(conn, users, prices, at, kind)
            return len(users)

        written: int = await self.store.write(work)
        return written
