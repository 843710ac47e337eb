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
from dataclasses import dataclass

import trio

from marketsrv.market import Market
from marketsrv.trading.store import Store

log = logging.getLogger("marketsrv.trading")

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


def record(conn: sqlite3.Connection, rows: list[tuple[int, int, int]], at: int, kind: str) -> None:
    """Write (user_id, equity, cash) snapshots taken at `at`, each with its flow."""
    for user_id, equity, cash in rows:
        last = conn.execute(
            "SELECT max(at) FROM equity_history WHERE user_id = ?", (user_id,)
        ).fetchone()[0]
        flow = flows(conn, user_id, last if last is not None else -1, at)
        conn.execute(
            "INSERT INTO equity_history (user_id, at, equity_cents, cash_cents, flow_cents, kind)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, at, equity, cash, flow, kind),
        )


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


class EquityRecorder:
    """Takes the snapshots: at each day roll for every user, every `interval_s` for holders."""

    def __init__(self, store: Store, market: Market, interval_s: float) -> None:
        self.store = store
        self.market = market
        self.interval_s = interval_s
        self._closed = trio.Event()  # set by a day roll: a close snapshot is due
        market.roll_listeners.append(self._closed.set)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.interval_s):
                await self._closed.wait()
            kind = "close" if self._closed.is_set() else "intraday"
            self._closed = trio.Event()
            try:
                await self.snapshot(kind)
            except Exception:  # a full disk must not end the server: the next one may work
                log.exception("equity snapshot failed")

    async def snapshot(self, kind: str) -> int:
        """Equity of every user (a close) or of every holder (intraday), now; rows written."""
        every = kind == "close"

        def read(conn: sqlite3.Connection) -> tuple[dict[int, int], list[tuple[int, str, int]]]:
            holds = conn.execute(
                "SELECT user_id, symbol, quantity FROM holdings WHERE quantity > 0"
            ).fetchall()
            holders = {row[0] for row in holds}
            cash = {
                user_id: balance
                for user_id, balance in conn.execute("SELECT user_id, balance_cents FROM wallets")
                if every or user_id in holders
            }
            return cash, holds

        cash, holds = await self.store.read(read)
        at = self.market.clock()
        equity = dict(cash)
        stats = self.market.stats
        for user_id, symbol, quantity in holds:  # marked here, on the trio thread
            price = stats[symbol].current if symbol in stats else 0
            equity[user_id] = equity.get(user_id, 0) + price * quantity
        rows = [(user_id, equity[user_id], cash[user_id]) for user_id in cash]
        if rows:
            await self.store.write(lambda conn: record(conn, rows, at, kind))
        return len(rows)
