"""The one error family: what the client asked for that the server refuses.

Each class carries its HTTP status; each raise names a stable `code` and a human message, plus
optional extra fields for the body. REST renders them as the JSON error body of
docs/protocol.md (api/errors.py), the WebSocket streams as an `error` frame (the status is not
used there): the raise is the same, only the renderer differs. A leaf module: any layer may
raise these.

    raise NotFound("order_not_found", "no such order")
"""

from __future__ import annotations

from typing import Any, ClassVar


class MarketsrvError(Exception):
    status: ClassVar[int] = 400

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class BadRequest(MarketsrvError):
    """The request is malformed or breaks a rule (400)."""

    status = 400


class NotAuthenticated(MarketsrvError):
    """No credentials, or ones that are wrong, revoked or expired (401)."""

    status = 401


class Forbidden(MarketsrvError):
    """Authenticated, but not allowed to do this (403)."""

    status = 403


class NotFound(MarketsrvError):
    """No such thing, or not yours (404)."""

    status = 404


class Conflict(MarketsrvError):
    """The request contradicts an earlier one (409)."""

    status = 409


class TooManyRequests(MarketsrvError):
    """Over a limit; `retry_after` (seconds) goes to the `Retry-After` header (429)."""

    status = 429


class Unavailable(MarketsrvError):
    """The server cannot do this now (503)."""

    status = 503


__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "MarketsrvError",
    "NotAuthenticated",
    "NotFound",
    "TooManyRequests",
    "Unavailable",
]
