"""Orders from users: validation, the hold, matching in the live book, and settlement.

    accept (durable: order + hold)  ->  match in the book (trio thread)  ->  settle (durable)

The answer goes out only after both transactions committed, so an acknowledged order and its
fills survive a crash. A user's engine order id is the negative of its database id (simulated
orders have positive ids) and its owner is `u<user id>`, so self-trade prevention applies per user:
an incoming order cancels the user's own resting orders it would meet. Trades that simulated
takers make against a user's resting order are settled through the market's trade listener.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
from decimal import Decimal
from typing import Any

import orjson
import trio

from marketsrv.engine import OrderRejected, OrderResult, Side, TimeInForce
from marketsrv.errors import BadRequest, Conflict, NotFound, Unavailable
from marketsrv.market import Instrument, Market
from marketsrv.market.rules import cents_text
from marketsrv.market.state import MarketRefused
from marketsrv.trading import settlement
from marketsrv.trading.money import parse_cents
from marketsrv.trading.requests import OrderRequest
from marketsrv.trading.settlement import OPEN, NewOrder, owner_of
from marketsrv.trading.store import Store
from marketsrv.trading.views import order_view
from marketsrv.units import MAX_DEPTH
from storage import StorageClosed

log = logging.getLogger("marketsrv.trading")

COLLAR = Decimal("0.05")  # a market order trades at most 5% past the price that completes it
IN_FLIGHT_WAIT_S = 10.0  # a cancel waits this long at most for the order's own settlement


class Orders:
    def __init__(self, store: Store, market: Market, off_tick_prices: str = "round") -> None:
        self.store = store
        self.market = market
        self.off_tick_prices = off_tick_prices  # round | reject: a limit price between two ticks
        market.listeners.append(self._on_result)
        self._settling = 0  # submits made by this service settle themselves
        self._in_flight: set[int] = set()  # accepted orders whose settlement is not yet durable
        # Users with an acceptance under way: its order is in the database (a reader can see it
        # and a cancel can name it) before this task learns its id and marks it in flight.
        # Per user, the tickets (a running count) of the acceptances under way.
        self._accepting: dict[int, set[int]] = {}
        self._tickets = 0
        self._settled = trio.lowlevel.ParkingLot()  # woken whenever either of the two shrinks
        # Set when a settlement could not be written: the books and the database then disagree,
        # so no new order is taken until a restart reloads the books from the database.
        self.suspended: str | None = None

    # -- validation ----------------------------------------------------------------------------

    def parse(self, user_id: int, req: OrderRequest) -> NewOrder:
        """The domain checks of an order whose body `OrderRequest` validated."""
        symbol = req.the_symbol
        inst = self.market.instruments.get(symbol)
        if inst is None:
            raise BadRequest("unknown_symbol", f"Unknown symbol '{symbol}'.")
        side, quantity, price = req.side, req.quantity, req.price
        order_type = req.order_type or ("market" if price is None else "limit")
        tif = req.time_in_force or ("gtc" if order_type == "limit" else "ioc")
        if order_type == "market" and tif == "gtc":
            raise BadRequest(
                "invalid_time_in_force", "a market order is ioc or fok: it never rests"
            )
        client_order_id = req.client_order_id
        state = self.market.state_of(symbol)
        if state == "halted":
            raise Conflict(
                "symbol_halted",
                f"{symbol} is halted ({self.market.halted[symbol]}); its orders wait until it"
                " resumes",
            )
        if state != "open" and (order_type == "market" or tif != "gtc"):
            raise Conflict(
                "market_closed",
                f"the market is {state.replace('_', '-')}: market, ioc and fok orders are refused"
                " until it opens; limit orders (gtc) are accepted and rest until the opening"
                " auction",
            )
        if quantity % inst.lot_size:
            raise BadRequest(
                "invalid_quantity",
                f"quantity must be a whole number of board lots of {inst.lot_size} shares",
            )
        limits = self.market.limits[symbol]
        protection: int | None = None  # a market order's price limit, in cents
        note = ""
        if order_type == "limit":
            if price is None:
                raise BadRequest("invalid_price", "a limit order needs a price")
            cents = parse_cents(price, "price")
            if cents <= 0:
                raise BadRequest("invalid_price", "price must be positive")
            book_price = self._on_tick(inst, side, cents)
            if book_price != cents:
                note = (
                    f"price {cents_text(cents)} is between ticks; {cents_text(book_price)} was used"
                    f" (tick {cents_text(inst.ticks.tick_at(book_price))}, rounded in your favour)"
                )
            if not limits.contains(book_price):
                raise BadRequest(
                    "price_out_of_band",
                    f"price must be within today's limits for {symbol}: {limits.describe()}"
                    f" ({inst.band_bps / 100:g}% either side of the previous close"
                    f" {cents_text(self.market.stats[symbol].previous_close)})"
                    if inst.band_bps
                    else f"price must be within {limits.describe()}",
                )
            cents = book_price
            hold_cents = cents
        else:
            cents = None
            book_price = self._collar(symbol, Side(side), quantity)
            book_price = limits.clamp(book_price)  # never past the day's limits either
            if price not in (None, ""):
                # A price on a market order is its protection limit: it trades at that price
                # or better, never past it (and never past the collar either).
                protection = parse_cents(price, "price")
                book_price = self._protect(Side(side), protection, book_price)
                if not limits.contains(book_price):  # it could never trade today
                    raise BadRequest(
                        "price_out_of_band",
                        f"the price limit {cents_text(protection)} is outside today's limits"
                        f" for {symbol}: {limits.describe()}",
                    )
            hold_cents = book_price
        # What makes two requests the same order (client_order_id retries): what the user
        # asked for, not what the book made of it (the collar moves with the market).
        canonical = orjson.dumps(
            [symbol, side, order_type, tif, quantity, cents, protection],
            option=orjson.OPT_SORT_KEYS,
        )
        return NewOrder(
            user_id=user_id, symbol=symbol, side=side, order_type=order_type, time_in_force=tif,
            quantity=quantity, price_cents=cents, book_price_cents=book_price,
            hold_price_cents=hold_cents, client_order_id=client_order_id,
            request_hash=hashlib.sha256(canonical).hexdigest(), created_ms=self.market.clock(),
            note=note,
        )  # fmt: skip

    def _on_tick(self, inst: Instrument, side: str, cents: int) -> int:
        """`cents` on the tick grid: as it is, or rounded in the user's favour (a buy down, a
        sell up) when `off_tick_prices` is round; refused when it is reject."""
        if inst.ticks.is_valid(cents):
            return cents
        tick = cents_text(inst.ticks.tick_at(cents))
        if self.off_tick_prices == "reject":
            raise BadRequest(
                "invalid_price",
                f"price {cents_text(cents)} is not on the tick grid: the tick at this price is"
                f" {tick} ({inst.ticks.describe()})",
            )
        rounded = inst.ticks.floor(cents) if side == "buy" else inst.ticks.ceil(cents)
        if rounded <= 0:
            raise BadRequest("invalid_price", f"price is below the lowest tick ({tick})")
        return rounded

    @staticmethod
    def _protect(side: Side, cents: int, collar: int) -> int:
        if cents == 0:  # what many frontends send for "no price"
            return collar
        if cents < 0:
            raise BadRequest("invalid_price", "price must be positive")
        return min(collar, cents) if side is Side.BUY else max(collar, cents)

    def _collar(self, symbol: str, side: Side, quantity: int) -> int:
        """The worst price a market order may trade at: where sweeping the book would complete
        it (or the book's far end), moved 5% further; without a book, 5% from the last price.
        (The day's price limits then bound it.)"""
        book = self.market.books[symbol]
        bids, asks = book.depth(MAX_DEPTH)
        ladder = asks if side is Side.BUY else bids
        reference = self.market.stats[symbol].current
        left = quantity
        for price, size in ladder:
            reference = price
            left -= size
            if left <= 0:
                break
        if side is Side.BUY:
            return math.ceil(reference * (1 + COLLAR))
        return max(1, math.floor(reference * (1 - COLLAR)))

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
            row, created = await self.store.write(lambda conn: settlement.accept(conn, order))
            if created:  # in flight before the acceptance is let go: no await in between
                self._in_flight.add(row["id"])
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
                    error: Exception = Conflict(exc.code, str(exc))
                else:
                    note = f"failed: the matching engine refused it ({exc})"
                    error = BadRequest("order_rejected", note)
                now = self.market.clock()
                await self.store.write(
                    lambda conn: settlement.close_order(conn, order_id, "failed", note, now)
                )
                raise error from None
            finally:
                self._settling -= 1

            now = self.market.clock()

            def settle(conn: sqlite3.Connection) -> dict[str, Any]:
                settlement.settle(
                    conn, self.market.instruments[order.symbol], result, order_id, now
                )
                return order_view(conn, order_id)  # same transaction: no extra read hop

            try:
                return await self.store.write(settle), True
            except Exception as exc:
                self._suspend(exc)
                raise Unavailable("settlement_failed", self.suspended or "") from exc
        finally:
            self._in_flight.discard(order_id)
            self._settled.unpark_all()

    def _suspend(self, exc: BaseException) -> None:
        log.critical("a settlement could not be written (%s): trading suspended", exc)
        self.suspended = (
            "an order matched but could not be recorded; trading is suspended until the server"
            " restarts and reloads the books from the database"
        )

    async def cancel(self, user_id: int, order_id: int) -> dict[str, Any]:
        row = await self.store.read(lambda conn: settlement.order_row(conn, order_id))
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

        def work(conn: sqlite3.Connection) -> tuple[bool, dict[str, Any]]:
            still_open = settlement.order_row(conn, order_id)["status"] in OPEN
            if still_open:
                settlement.close_order(conn, order_id, "cancelled", "cancelled by the user", now)
            return still_open, order_view(conn, order_id)

        closed, order = await self.store.write(work)
        if not closed:  # it filled, or expired, before the cancel reached it
            raise BadRequest(
                "order_not_open", f"the order is {order['status']} and cannot be cancelled"
            )
        return order

    def _on_result(self, symbol: str, result: OrderResult) -> None:
        """Market listener: settle user orders that other flow traded against (simulated takers,
        the opening auction)."""
        if self._settling or not (
            any(t.maker_order_id < 0 or t.taker_order_id < 0 for t in result.trades)
            or any(order_id < 0 for order_id, _ in result.self_trade_cancels)
        ):
            return

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
            now = self.market.clock()
            self.store.db.submit(
                lambda conn: settlement.settle(
                    conn, self.market.instruments[symbol], result, None, now
                ),
                done,
            )
        except StorageClosed:
            log.error("fills of resting user orders arrived after the database closed")

    # -- reading -------------------------------------------------------------------------------

    async def get(self, user_id: int, order_id: int) -> dict[str, Any]:
        return await self.store.read(lambda conn: order_view(conn, order_id, user_id))

    def reload(self, conn: sqlite3.Connection) -> int:
        """At start-up, before the simulator runs: put open GTC orders back in the (empty) books in
        their time order; orders accepted but never matched (IOC/FOK) are closed, releasing holds."""
        count, now = 0, self.market.clock()
        for row in settlement.open_orders(conn):
            if row["symbol"] not in self.market.instruments:
                note = f"cancelled: {row['symbol']} is no longer listed on this server"
                settlement.close_order(conn, row["id"], "cancelled", note, now)
                continue
            if row["time_in_force"] != "gtc":
                note = "cancelled: the server restarted before it was matched"
                settlement.close_order(conn, row["id"], "cancelled", note, now)
                continue
            remaining = row["quantity"] - row["filled_quantity"]
            self._settling += 1
            try:
                result = self.market.restore(
                    row["symbol"], Side(row["side"]), remaining, row["book_price_cents"],
                    owner_of(row["user_id"]), -row["id"],
                )  # fmt: skip
            finally:
                self._settling -= 1
            if result.trades or result.self_trade_cancels:
                # Two open orders that crossed: their match happened before the crash but its
                # settlement never committed. Settle it now, in this same transaction.
                settlement.settle(
                    conn, self.market.instruments[row["symbol"]], result, row["id"], now
                )
            count += 1
        return count
