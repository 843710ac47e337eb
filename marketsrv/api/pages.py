"""The one paginator: DRF's `{"count", "next", "previous", "results"}` with absolute,
URL-encoded links that keep the request's other query parameters."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from quart import request

from marketsrv.errors import NotFound


def check_page(total: int, page: int, size: int) -> None:
    """A page past the last one is a 404 `invalid_page` that says how many there are."""
    pages = max(1, -(-total // size))
    if page > pages:
        raise NotFound("invalid_page", f"Invalid page: there are {pages} page(s).", pages=pages)


def page_of(results: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    """One page of `total` items, `results` being its items (the caller cut them)."""
    check_page(total, page, size)

    def link(n: int) -> str:
        args = request.args.to_dict()
        args["page"] = str(n)
        return f"{request.base_url}?{urlencode(args)}"

    return {
        "count": total,
        "next": link(page + 1) if page * size < total else None,
        "previous": link(page - 1) if page > 1 else None,
        "results": results,
    }
