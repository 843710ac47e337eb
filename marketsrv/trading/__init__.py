"""Accounts and paper trading: users and tokens, the cash ledger, orders through the live book,
holdings and P&L, all durable in `storage` and reached from trio through `Store`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from marketsrv.market import Market
from marketsrv.trading.accounts import Accounts, AuthLimits
from marketsrv.trading.orders import Orders
from marketsrv.trading.store import Store
from storage import Database

log = logging.getLogger("marketsrv.trading")


@dataclass
class Trading:
    store: Store
    accounts: Accounts
    orders: Orders

    @classmethod
    def open(
        cls,
        path: str,
        market: Market,
        *,
        synchronous: str,
        group_commit: bool,
        auth: AuthLimits | None = None,
        exclusive: bool = False,
        off_tick_prices: str = "round",
        before_reload: Callable[[Database], object] | None = None,
    ) -> Trading:
        """Open (or create) the database and put open orders back in the books. Blocking: call
        before the event loop serves, and before the simulator's first tick. `exclusive`: a
        server's, which no other server may share (storage.DatabaseInUse). `before_reload`
        runs on the open database first (the market restores its memory there)."""
        db = Database(path, synchronous=synchronous, group_commit=group_commit, exclusive=exclusive)
        db.open()
        if before_reload is not None:
            try:
                before_reload(db)
            except BaseException:
                db.close()
                raise
        store = Store(db)
        # One clock for every timestamp: the market's (tests drive it by hand).
        accounts = Accounts(store, limits=auth, clock=market.clock)
        trading = cls(store, accounts, Orders(store, market, off_tick_prices))
        reloaded = db.write(trading.orders.reload)
        if reloaded:
            log.info("%d open orders back in the books", reloaded)
        return trading

    def close(self) -> None:
        self.store.db.close()


__all__ = ["AuthLimits", "Trading"]
