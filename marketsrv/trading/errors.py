"""Errors of the trading services (a `ClientError`, rendered by the REST layer)."""

from marketsrv.errors import ClientError


class TradingError(ClientError):
    pass
