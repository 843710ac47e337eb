"""The HTTP API: JSON error handling and the REST blueprints."""

from marketsrv.api.errors import error_response, register_error_handlers
from marketsrv.api.stocks import blueprint as stocks_blueprint

__all__ = ["error_response", "register_error_handlers", "stocks_blueprint"]
