"""JSON for the HTTP layer through orjson: several times faster than the standard library.

Keys keep their declared order (a stock starts with its symbol) instead of being sorted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from pydantic_core import to_jsonable_python
from quart.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    return to_jsonable_python(value)  # pydantic models and the like; raises if it cannot


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        # Quart's indent/separators arguments do not apply: the output is always compact.
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)
