"""The request bodies of accounts and trading: the types that validate are the types that document.

Each model here validates a body (through `validate_body`) and is also the request schema of its
endpoint in `/api/openapi.json`, so the two cannot drift. They check shape and type only, strictly
(`order_type: false` is refused, not read as the default; numbers as strings are plain ASCII
digits); the domain rules (listed symbol, tick, price band, funds) stay in the services. A failing
field becomes the house's code, `invalid_<field>` (docs/protocol.md), with the field named.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from marketsrv.errors import BadRequest
from marketsrv.trading.money import DECIMAL_TEXT
from marketsrv.units import whole_number

MAX_QUANTITY = 1_000_000
M = TypeVar("M", bound=BaseModel)

# Fields whose code is not simply invalid_<field>.
_CODES = {"stock_symbol": "invalid_symbol"}


def field_code(field: str) -> str:
    """The error code of a request field: `invalid_<field>`, with the few exceptions above."""
    return _CODES.get(field, f"invalid_{field}")


def validate_body(model: type[M], body: Any) -> M:
    """`body` as `model`, or BadRequest with the first failing field's code."""
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        ctx_error = (error.get("ctx") or {}).get("error")
        if ctx_error is not None:  # our own validators' words
            message = str(ctx_error)
        elif error["type"] == "missing":
            message = f"{field} is required"
        else:
            message = f"{field}: {error['msg']}" if field else error["msg"]
        if field:
            code = field_code(field)
        else:  # a rule across fields names its code as its error type
            code = error["type"] if error["type"].startswith("invalid_") else "invalid_body"
        raise BadRequest(code, message, field=field or None) from None


def _lower_text(name: str) -> Any:
    def check(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value.strip().lower()

    return BeforeValidator(check)


def _whole_number(value: object) -> object:
    """100, 100.0 and "100" are a hundred; "1_000", "１" and True are not numbers of ours."""
    if isinstance(value, bool):
        raise ValueError("quantity must be a whole number")
    if isinstance(value, str):
        number = whole_number(value, 9)
        if number is None:
            raise ValueError("quantity must be a whole number written with the digits 0-9")
        return number
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _money_text(name: str) -> Any:
    """A JSON number or decimal text, passed on as text for the exact parse (money.py)."""

    def check(value: object) -> object:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{name} must be a number")
        return value if isinstance(value, str) else repr(value)

    return BeforeValidator(check)


_MONEY_SCHEMA = WithJsonSchema(
    {
        "oneOf": [
            {"type": "number"},
            {"type": "string", "pattern": "^" + DECIMAL_TEXT.pattern + "$"},
        ],
        "description": 'KES, at most 2 decimals: a JSON number or ASCII decimal text ("28.50")',
    }
)

Quantity = Annotated[
    int,
    BeforeValidator(_whole_number),
    Field(ge=1, le=MAX_QUANTITY),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                {"type": "string", "pattern": "^[0-9]{1,7}$"},
            ],
            "description": 'whole shares, 1 to 1,000,000: 100, 100.0 or "100"',
        }
    ),
]


class OrderRequest(BaseModel):
    """`POST /api/trading/orders/`: either body shape of the seed client."""

    model_config = ConfigDict(extra="ignore")

    symbol: StrictStr | None = Field(None, description="the symbol, e.g. SCOM (or stock_symbol)")
    stock_symbol: StrictStr | None = Field(None, description="the seed client's name for symbol")
    side: Annotated[Literal["buy", "sell"], _lower_text("side")] = Field(
        description="buy or sell, in any case ('BUY' works too)"
    )
    quantity: Quantity
    order_type: Annotated[Literal["market", "limit"] | None, _lower_text("order_type")] = Field(
        None, description="limit when a price is given, else market (any case)"
    )
    price: Annotated[str | None, _money_text("price"), _MONEY_SCHEMA] = Field(
        None,
        description="a limit order's price, on the tick; on a market order its protection"
        ' limit; absent, null, "" or 0: none',
    )
    time_in_force: Annotated[Literal["gtc", "ioc", "fok"] | None, _lower_text("time_in_force")] = (
        Field(None, description="gtc (limit orders' default), ioc (market's default) or fok")
    )
    client_order_id: StrictStr | None = Field(
        None, min_length=1, max_length=64, description="makes retries safe: 1-64 characters"
    )

    @model_validator(mode="after")
    def _one_symbol(self) -> OrderRequest:
        if not (self.symbol or self.stock_symbol or "").strip():
            raise PydanticCustomError(
                "invalid_symbol", "symbol is required: a string such as 'SCOM'"
            )
        return self

    @property
    def the_symbol(self) -> str:
        return (self.symbol or self.stock_symbol or "").strip().upper()


class Credentials(BaseModel):
    """`POST /api/accounts/register/` and `login/`."""

    model_config = ConfigDict(extra="ignore")

    username: StrictStr = Field(description="3-64 ASCII letters, digits or . _ @ + -")
    password: StrictStr = Field(description="6-256 characters, not all white space")


class Amount(BaseModel):
    """`POST /api/trading/wallet/` (deposit) and `wallet/withdraw/`."""

    model_config = ConfigDict(extra="ignore")

    amount: Annotated[str, _money_text("amount"), _MONEY_SCHEMA] = Field(
        description="KES, positive, at most 2 decimals"
    )


class ResetRequest(BaseModel):
    """`POST /api/trading/account/reset/`."""

    model_config = ConfigDict(extra="ignore")

    cash: Annotated[str, _money_text("cash"), _MONEY_SCHEMA] = Field(
        description="KES the account starts again with: 0 or more, at most 2 decimals"
    )
