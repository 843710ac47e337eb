"""Orders from users: validation, the hold, matching in the live book, and settlement.

    accept (durable: order + hold)  ->  match in the book (trio thread)  ->  settle (durable)

The answer goes out only after both transactions committed, so an acknowledged order and its
fills survive a crash. A user's engine order id is the negative of its database id (simulated
orders have positive ids) and its owner is `u<user id>`, so self-trade prevention applies per user:
an incoming order cancels the user's own resting orders it would meet. Trades that simulated
takers make against a user's resting order are settled through the market's trade listener.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

from marketsrv.engine import OrderRejected, OrderResult, RestingOrder, Side, TimeInForce
from marketsrv.errors import BadRequest, Conflict, NotFound, Unavailable
from marketsrv.market import Market
from marketsrv.market.days import keep_time
from marketsrv.market.state import MarketRefused
from marketsrv.trading import activity, intake, settlement
from marketsrv.trading.events import UserEvents, order_data, recording
from marketsrv.trading.requests import OrderRequest
from marketsrv.trading.settlement import NewOrder, owner_of
from marketsrv.trading.store import Store
from marketsrv.trading.views import OPEN, order_row, order_view
from marketsrv.trading.wallet import get_wallet
from storage import StorageClosed

log = logging.getLogger("marketsrv.trading")

IN_FLIGHT_WAIT_S = 10.0  # a cancel waits this long at most for the order's own settlement


class Orders:
    def __init__(self, store: Store, market: Market, off_tick_prices: str = "round") -> None:
        self.store = store
        self.market = market
        self.off_tick_prices = off_tick_prices  # round | reject: a limit price between two ticks
        market.listeners.append(self._on_result)
        market.expiry_listeners.append(self._on_expired)
        self._settling = 0  # submits made by this service settle themselves
        # Accepted orders whose settlement is not yet durable, and their users.
        self._in_flight: dict[int, int] = {}
        # Users with an acceptance under way: its order is in the database (a reader can see it
        # and a cancel can name it) before this task learns its id and marks it in flight.
        # Per user, the tickets (a running count) of the acceptances under way.
        self._accepting: dict[int, set[int]] = {}
        self._tickets = 0
        self._settled = trio.lowlevel.ParkingLot()  # woken whenever either of the two shrinks
        # Set when a settlement could not be written: the books and the database then disagree,
        # so no new order is taken until a restart reloads the books from the database.
        self.suspended: str | None = None
        # For /metrics: orders taken, orders refused by the code of their answer (the API counts
        # both), and users' fills (each user's side of a trade).
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.fills = 0

    def parse(self, user_id: int, req: OrderRequest) -> NewOrder:
        """The domain checks of an order whose body `OrderRequest` validated (intake.py)."""
        # The market loop keeps time once a tick; an order at 15:00:00.050 must already meet
        # the closed market, not the open one.
        keep_time(self.market)
        return intake.parse(self.market, self.off_tick_prices, user_id, req)

    # -- placing and cancelling ----------------------------------------------------------------

    async def place(self, order: NewOrder) -> tuple[dict[str, Any], bool]:
        """Accept, match and settle; (the order with its fills, created?).

        Shielded: once the acceptance is queued the order must reach the book and be settled,
        even if the client hangs up meanwhile (quart-trio cancels the handler then).
        """
        if self.suspended:
            raise Unavailable("trading_suspended", self.suspended)
        with trio.CancelScope(shield=True):
            outcome = await self._place(order)
        return outcome

    async def _place(self, order: NewOrder) -> tuple[dict[str, Any], bool]:
        uid = order.user_id
        self._tickets += 1
        ticket = self._tickets
        self._accepting.setdefault(uid, set()).add(ticket)
        try:
            row, created = await self.store.write(
                recording(order.created_ms, lambda conn, out: settlement.accept(conn, out, order))
            )
            if created:  # in flight before the acceptance is let go: no await in between
                self._in_flight[row["id"]] = uid
        finally:
            self._accepting[uid].discard(ticket)
            if not self._accepting[uid]:
                del self._accepting[uid]
            self._settled.unpark_all()
        if not created:
            return await self.get(order.user_id, row["id"]), False
        order_id = row["id"]
        try:
            self._settling += 1
            try:
                result = self.market.submit(
                    order.symbol, Side(order.side), order.quantity, order.book_price_cents,
                    TimeInForce(order.time_in_force), owner_of(order.user_id), -order_id,
                )  # fmt: skip
            except OrderRejected as exc:
                # Validation should have refused it (or the market halted or closed while it
                # was being accepted); never leave it open without a book entry.
                if isinstance(exc, MarketRefused):
                    note = f"refused: {exc}"
                    refusal = BadRequest if exc.code == "price_out_of_band" else Conflict
                    error: Exception = refusal(exc.code, str(exc))
                else:
                    note = f"failed: the matching engine refused it ({exc})"
                    error = BadRequest("order_rejected", note)
                now = self.market.clock()
                await self.store.write(
                    recording(now, lambda c, out: settlement.close_order(
                        c, out, order_id, "failed", note, now))
                )  # fmt: skip
                raise error from None
            finally:
                self._settling -= 1
            self.fills += user_fills(result)

            now = self.market.clock()

            def settle(conn: sqlite3.Connection) -> dict[str, Any]:
                out = UserEvents(now)
                settlement.settle(
                    conn, out, self.market.instruments[order.symbol], result, order_id, now
                )
                out.write(conn)
                # The order's event is the answer (same transaction: no extra read hop).
                if order_id in out.orders:  # it traded or closed: its event has it
                    return order_data(out.orders[order_id])
                return order_view(conn, order_id)  # it rests untouched

            try:
                return await self.store.write(settle), True
            except Exception as exc:
                self._suspend(exc)
                raise Unavailable("settlement_failed", self.suspended or "") from exc
        finally:
            self._in_flight.pop(order_id, None)
            self._settled.unpark_all()

    def _suspend(self, exc: BaseException) -> None:
        log.critical("a settlement could not be written (%s): trading suspended", exc)
        self.suspended = (
            "an order matched but could not be recorded; trading is suspended until the server"
            " restarts and reloads the books from the database"
        )

    async def cancel(self, user_id: int, order_id: int) -> dict[str, Any]:
        row = await self.store.read(lambda conn: order_row(conn, order_id))
        if row["user_id"] != user_id:
            raise NotFound("order_not_found", "no such order")
        if row["status"] not in OPEN:
            raise BadRequest(
                "order_not_open", f"the order is {row['status']} and cannot be cancelled"
            )
        # An order still being accepted or matched is in neither the book nor a final state:
        # wait for its settlement (a few milliseconds), then take it out of the book.
        # Only acceptances that began before this order was seen can be this order's: later
        # ones (the user placing more) need not be waited for.
        before = self._tickets
        deadline = trio.current_time() + IN_FLIGHT_WAIT_S
        while self.market.cancel(row["symbol"], -order_id) is None and (
            order_id in self._in_flight
            or any(t <= before for t in self._accepting.get(user_id, ()))
        ):
            with trio.move_on_at(deadline) as waited:
                await self._settled.park()
            if waited.cancelled_caught:
                raise Conflict("order_in_flight", "the order is still being matched; try again")

        # Not in the book any more: either its last fill is queued for the database ahead of
        # this write (then the order is no longer open there either), or the two disagree after
        # a failed settlement, and closing it releases its hold.
        now = self.market.clock()

        def work(conn: sqlite3.Connection, out: UserEvents) -> bool:
            still_open = order_row(conn, order_id)["status"] in OPEN
            if still_open:
                note = "cancelled by the user"
                settlement.close_order(conn, out, order_id, "cancelled", note, now)
            return still_open

        def answer(conn: sqlite3.Connection) -> tuple[bool, dict[str, Any]]:
            out = UserEvents(now)
            closed = work(conn, out)
            out.write(conn)
            return closed, order_data(out.orders[order_id]) if closed else order_view(
                conn, order_id
            )

        closed, order = await self.store.write(answer)
        if not closed:  # it filled, or expired, before the cancel reached it
            raise BadRequest(
                "order_not_open", f"the order is {order['status']} and cannot be cancelled"
            )
        return order

    async def reset_account(self, user_id: int, cash_cents: int) -> dict[str, Any]:
        """Take the user's open orders out of the books, then clear the account in one write
        (activity.reset); the new wallet. Not while an order of theirs is being placed."""
        # No await from the check to the queued write: an order placed after it is written
        # after the reset, and none is half way between the database and the book.
        if self.suspended:
            raise Unavailable("trading_suspended", self.suspended)
        if self._accepting.get(user_id) or user_id in self._in_flight.values():
            raise Conflict("order_in_flight", "an order of yours is being placed; try again")
        owner = owner_of(user_id)
        for symbol, book in self.market.books.items():
            for order in [o for o in book.orders() if o.owner == owner]:
                self.market.cancel(symbol, order.order_id)
        now = self.market.clock()

        def work(conn: sqlite3.Connection, out: UserEvents) -> dict[str, Any]:
            activity.reset(conn, out, user_id, cash_cents, now)
            return get_wallet(conn, user_id).as_json(self.market.currency)

        with trio.CancelScope(shield=True):  # the books changed: the database must follow
            try:
                result: dict[str, Any] = await self.store.write(recording(now, work))
            except Exception as exc:
                self._suspend(exc)  # the books and the database disagree now
                raise Unavailable("settlement_failed", self.suspended or "") from exc
        return result

    def _on_result(self, symbol: str, result: OrderResult) -> None:
        """Market listener: settle user orders that other flow traded against (simulated takers,
        the opening auction)."""
        if self._settling or not (
            any(t.maker_order_id < 0 or t.taker_order_id < 0 for t in result.trades)
            or any(order_id < 0 for order_id, _ in result.self_trade_cancels)
        ):
            return

        self.fills += user_fills(result)
        now = self.market.clock()
        inst = self.market.instruments[symbol]
        self._record(
            recording(now, lambda conn, out: settlement.settle(conn, out, inst, result, None, now))
        )

    def _on_expired(self, symbol: str, orders: list[RestingOrder], why: str) -> None:
        """Market listener: users' orders a new day's limits took out of the book are closed."""
        ids = [-o.order_id for o in orders if o.order_id < 0]
        if not ids:
            return
        now, note = self.market.clock(), f"cancelled: {why}"

        def work(conn: sqlite3.Connection, out: UserEvents) -> None:
            for order_id in ids:
                if order_row(conn, order_id)["status"] in OPEN:
                    settlement.close_order(conn, out, order_id, "cancelled", note, now)

        self._record(recording(now, work))

    def _record(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """Write what the book did to users' orders outside a request: queued on the writer
        (the book has moved already); a failure suspends trading, on the trio thread."""
        try:
            token: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
        except RuntimeError:  # no event loop (a test stepping the market by hand)
            token = None

        def done(_: Any, error: BaseException | None) -> None:
            # Runs on the writer thread: the service's state changes on the trio thread only.
            if error is not None:
                if token is None:
                    self._suspend(error)
                else:
                    token.run_sync_soon(self._suspend, error)

        try:
            self.store.db.submit(work, done)
        except StorageClosed:
            log.error("a change to users' resting orders arrived after the database closed")

    # -- reading -------------------------------------------------------------------------------

    async def get(self, user_id: int, order_id: int) -> dict[str, Any]:
        return await self.store.read(lambda conn: order_view(conn, order_id, user_id))

    def reload(self, conn: sqlite3.Connection) -> int:
        """At start-up, before the simulator runs: put open GTC orders back in the (empty) books in
        their time order; orders accepted but never matched (IOC/FOK) are closed, releasing holds."""
        count, now = 0, self.market.clock()
        out = UserEvents(now)
        for row in settlement.open_orders(conn):
            if row["symbol"] not in self.market.instruments:
                note = f"cancelled: {row['symbol']} is no longer listed on this server"
                settlement.close_order(conn, out, row["id"], "cancelled", note, now)
                continue
            if row["time_in_force"] != "gtc":
                note = "cancelled: the server restarted before it was matched"
                settlement.close_order(conn, out, row["id"], "cancelled", note, now)
                continue
            price = row["book_price_cents"]
            if not self.market.allows(row["symbol"], price):
                # Accepted under other limits (an earlier day, or an older version's ticks):
                # it would trade where today's market cannot.
                limits = self.market.limits[row["symbol"]].describe()
                note = f"cancelled: its price is outside today's price limits ({limits})"
                settlement.close_order(conn, out, row["id"], "cancelled", note, now)
                continue
            remaining = row["quantity"] - row["filled_quantity"]
            self._settling += 1
            try:
                result = self.market.reinstate(
                    row["symbol"], Side(row["side"]), remaining, price, owner_of(row["user_id"]),
                    -row["id"],
                )  # fmt: skip
            finally:
                self._settling -= 1
            if result.trades or result.self_trade_cancels:
                # Two open orders that crossed: their match happened before the crash but its
                # settlement never committed. Settle it now, in this same transaction.
                settlement.settle(
                    conn, out, self.market.instruments[row["symbol"]], result, row["id"], now
                )
            count += 1
        out.write(conn)
        return count


def user_fills(result: OrderResult) -> int:
    """The users' sides among a result's trades (their order ids are negative)."""
    return sum((t.maker_order_id < 0) + (t.taker_order_id < 0) for t in result.trades)
