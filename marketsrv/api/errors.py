"""One shape for every REST error, and the handlers that turn exceptions into it.

The seed's clients read `message` or `detail`, the older server sent `error`; every error body carries
all three with the same human text, plus `code`, a stable machine-readable string to branch on.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from quart import Quart, Request, Response, jsonify, request
from quart_schema.validation import QuerystringValidationError, RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from marketsrv.api.screen import PAGE_HEADERS
from marketsrv.errors import BadRequest, MarketsrvError

log = logging.getLogger("marketsrv.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def json_request_class(base: type[Request]) -> type[Request]:
    """The app's request class, with JSON bodies read whatever their Content-Type says.

    `curl -d` sends form encoding by default; answering that with "the body must be an object"
    would be true but unhelpful, so any body is parsed as JSON and a parse failure says so.
    """

    class JsonRequest(base):  # type: ignore[valid-type,misc]
        async def get_json(
            self, force: bool = True, silent: bool = False, cache: bool = True
        ) -> Any:
            try:
                return await super().get_json(force=True, silent=silent, cache=cache)
            except UnicodeDecodeError:
                raise BadRequest("invalid_json", "The request body is not UTF-8 text.") from None

        def on_json_loading_failed(self, error: Exception) -> Any:
            raise BadRequest("invalid_json", f"The request body is not valid JSON: {error}")

    return JsonRequest


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """Every REST error's body: the code, and the human text under the three names clients read."""
    return {"code": code, "error": message, "detail": message, "message": message, **extra}


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify(error_body(code, message, **extra))
    response.status_code = status
    return response


def _describe(error: Exception) -> tuple[str | None, str]:
    """The first offending field and a one-line account of every problem."""
    if isinstance(error, ValidationError):
        parts, first = [], None
        for item in error.errors():
            field = ".".join(str(p) for p in item["loc"]) or None
            first = first or field
            parts.append(f"{field}: {item['msg']}" if field else item["msg"])
        return first, "; ".join(parts)
    return None, str(error)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(MarketsrvError)
    async def client_error(error: MarketsrvError) -> Response:
        response = error_response(error.status, error.code, error.message, **error.extra)
        if "retry_after" in error.extra:
            response.headers["Retry-After"] = str(error.extra["retry_after"])
        return response

    @app.errorhandler(QuerystringValidationError)
    async def bad_query(error: QuerystringValidationError) -> Response:
        field, text = _describe(error.validation_error)
        code = f"invalid_{field.split('.')[0]}" if field else "invalid_query"
        return error_response(400, code, f"Invalid query parameter: {text}")

    @app.errorhandler(RequestSchemaValidationError)
    async def bad_body(error: RequestSchemaValidationError) -> Response:
        field, text = _describe(error.validation_error)
        if "Input should be a valid dictionary" in text and field is None:
            text = "the body must be a JSON object"
        return error_response(400, "invalid_body", f"Invalid request body: {text}", field=field)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        text = error.description or error.name
        if status == 404:
            if wants_page():
                return not_found_page()
            text = "No such endpoint; the API is described at /docs."
        elif status == 405:
            text = "This method is not allowed on this endpoint."
        elif status == 413:
            text = "The request body is larger than the server accepts."
        response = error_response(status, code, text)
        for name, value in error.get_headers():
            if name.lower() == "allow":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error in a request", exc_info=error)
        return error_response(500, "internal_error", "The server hit an unexpected error.")


def wants_page() -> bool:
    """A person's browser, who is better served by a page than by a JSON error."""
    accepts = request.accept_mimetypes
    return (
        request.method == "GET"
        and not request.path.startswith("/api/")
        and accepts.best_match(["application/json", "text/html"]) == "text/html"
        and accepts["text/html"] > accepts["application/json"]
    )


NOT_FOUND_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Not found</title>
<link rel="stylesheet" href="/static/css/docs.css"></head><body><main><h1>Not found</h1>
<p>There is nothing at this address. The trading screen is at <a href="/">/</a>; the API, its
streams and settings are described at <a href="/docs">/docs</a>.</p></main></body></html>"""


def not_found_page() -> Response:
    return Response(
        NOT_FOUND_PAGE,
        status=404,
        content_type="text/html; charset=utf-8",
        headers=PAGE_HEADERS,  # the page's: this origin only, no frames
    )
