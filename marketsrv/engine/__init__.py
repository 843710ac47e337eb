"""The matching engine: one `OrderBook` per symbol and the value types it speaks in.

Everything else in marketsrv imports the engine from here, never from its modules.
"""

from marketsrv.engine.book import OrderBook
from marketsrv.engine.types import (
    BookDiff,
    OrderRejected,
    OrderResult,
    OrderType,
    RestingOrder,
    Side,
    TimeInForce,
    Trade,
)

__all__ = [
    "BookDiff",
    "OrderBook",
    "OrderRejected",
    "OrderResult",
    "OrderType",
    "RestingOrder",
    "Side",
    "TimeInForce",
    "Trade",
]
