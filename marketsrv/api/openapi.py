"""The OpenAPI document's error responses: every operation lists the statuses and codes it sends.

quart-schema documents what a route answers on success from its types. The errors follow from the
same types and a few facts of the route, so they are derived here rather than written 25 times:
a request body can be `invalid_json`, `invalid_body` or `invalid_<field>` for each of its fields,
a query string `invalid_<parameter>`, a `<symbol>` in the path `unknown_symbol`, a route of the
trading API needs a token (401). What only the service knows a route declares with `@errors`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio
from pydantic import BaseModel, Field
from quart import Quart, Response, current_app
from quart_schema import hide
from quart_schema.openapi import OpenAPIProvider
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing import Rule

from marketsrv.trading.requests import field_code

F = TypeVar("F", bound=Callable[..., Any])
_ERRORS = "_marketsrv_errors"
NEEDS_TOKEN = ("/api/trading/", "/api/accounts/logout/", "/api/accounts/me/", "/api/admin/")
# Each operation's tag (its section of /docs), by the first prefix its path starts with.
TAGS = (
    ("/api/trading/portfolio", "Portfolio"), ("/api/trading/activities", "Portfolio"),
    ("/api/trading/account", "Portfolio"), ("/api/trading", "Trading"),
    ("/api/accounts", "Accounts"), ("/api/chat", "Messages"), ("/api/admin", "Admin"),
    ("/-/", "Operators"), ("/api", "Market data"),
)  # fmt: skip


class ErrorBody(BaseModel):
    """Every error: a stable code and the same human text under three names."""

    code: str = Field(description="stable, machine-readable: branch on this")
    error: str
    detail: str
    message: str


def errors(**by_status: list[str]) -> Callable[[F], F]:
    """Declare codes only the service knows: `@errors(s409=["client_order_id_reused"])`."""

    def mark(func: F) -> F:
        found: dict[int, list[str]] = getattr(func, _ERRORS, {})
        for key, codes in by_status.items():
            found.setdefault(int(key.removeprefix("s")), []).extend(codes)
        setattr(func, _ERRORS, found)
        return func

    return mark


def field_codes(model: Any) -> list[str]:
    """The codes a body or query model's fields fail with (shared with tests/test_error_codes):
    named as the client writes the field (its alias: `from`, not `start`)."""
    fields = getattr(model, "model_fields", {})
    return sorted({field_code(info.alias or name) for name, info in fields.items()})


def error_codes(rule: Rule, func: Any) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {400: ["invalid_host"], 500: ["internal_error"]}
    if rule.rule.startswith(NEEDS_TOKEN):
        out[401] = ["not_authenticated", "invalid_token"]
    if rule.rule.startswith(("/api/trading/", "/api/accounts/")):
        out[503] = ["trading_unavailable"]
    request = getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
    if request is not None:
        out[400] += ["invalid_json", "invalid_body"]
        if request[0].__module__ == "marketsrv.trading.requests":  # validate_body's codes
            out[400] += field_codes(request[0])
        out[413] = ["body_too_large"]
    query = getattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None)
    if query is not None:
        out[400] += ["invalid_query", *field_codes(query)]
    if "<symbol>" in rule.rule:
        out[404] = ["unknown_symbol"]
    for status, codes in getattr(func, _ERRORS, {}).items():
        out.setdefault(status, []).extend(codes)
    return {status: sorted(set(codes)) for status, codes in sorted(out.items())}


def tag_of(path: str) -> str:
    return next(tag for prefix, tag in TAGS if path.startswith(prefix))


class MarketsrvOpenAPI(OpenAPIProvider):
    """quart-schema's document with each operation's errors and tag, made once (on a worker
    thread, see `serve_off_the_loop`): the routes are all registered before the app serves, and
    making it costs about 0.1 s of CPU."""

    _made: dict[str, Any] | None = None
    _making = threading.Lock()

    def schema(self) -> dict[str, Any]:
        with self._making:
            if self._made is None:
                self._made = super().schema()
        return self._made

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        responses = {
            str(status): {
                "description": "codes: " + ", ".join(codes),
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                },
            }
            for status, codes in error_codes(rule, func).items()
        }
        for operations in paths.values():
            for operation in operations.values():
                # copy(): quart-schema shares one responses dict between a rule's methods
                operation["responses"] = {**operation["responses"], **responses}
                operation["tags"] = [tag_of(rule.rule)]
        components["ErrorBody"] = ErrorBody.model_json_schema()
        return paths, components


def serve_off_the_loop(app: Quart) -> None:
    """quart-schema's `/api/openapi.json` view, with the document made on a worker thread."""
    provider = app.extensions["QUART_SCHEMA"].openapi_provider

    @hide
    async def openapi() -> Response:
        document = await trio.to_thread.run_sync(provider.schema)
        return Response(current_app.json.dumps(document), mimetype="application/json")

    app.view_functions["openapi"] = openapi
