"""The one exception for "the client asked for something we refuse": a status, a stable code,
a human message. The REST layer renders it as the JSON error body of docs/protocol.md."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
