"""Money at the edges: amounts in and out of JSON, exact, in integer cents inside.

A JSON number such as 100000.5 or a string such as "100000.50" is read through its decimal text
(never through float arithmetic) and must have at most two decimals. A string must be plain ASCII
decimal text (`-?digits[.digits]`): no exponent, no `_` separators, no white space and no other
scripts' digits, all of which Python's own `Decimal()` would take.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext

from marketsrv.errors import BadRequest

MAX_DEPOSIT_CENTS = 100_000_000_00  # 100 million KES in one deposit


MAX_DIGITS = 15  # no amount or price has more integer digits; checked before any arithmetic
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def parse_cents(raw: object, what: str = "amount") -> int:
    """`raw` in cents, or BadRequest `invalid_<what>` saying what is wrong with it."""

    def refuse(message: str) -> BadRequest:
        return BadRequest(f"invalid_{what}", message)

    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise refuse(f"{what} must be a number")
    text = repr(raw) if isinstance(raw, float) else str(raw)
    if len(text) > 64 or (isinstance(raw, str) and not DECIMAL_TEXT.fullmatch(text)):
        raise refuse(f"{what} must be a number written with the digits 0-9, like 1500.50")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise refuse(f"{what} must be a number") from None
    if not value.is_finite():
        raise refuse(f"{what} must be a finite number")
    # Size first: "1e999999" is a short string but a million-digit integer, whose arithmetic
    # would hold the event loop for seconds.
    if value and value.adjusted() > MAX_DIGITS:
        raise refuse(f"{what} is too large")
    with localcontext() as exact:
        exact.prec = 100  # the text has at most 64 digits: nothing below is ever rounded
        cents = value.scaleb(2)
        if cents != cents.to_integral_value():
            raise refuse(f"{what} can have at most 2 decimals")
        return int(cents)
