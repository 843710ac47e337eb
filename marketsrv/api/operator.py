"""What an operator reads: `/metrics` (Prometheus), `/-/settings.json` and `/-/versions.json`.

Who may read them is the setting `operator_endpoints`: `loopback` (the default) answers only
requests from this machine that did not come through a proxy (without `proxy_hops`, a request
carrying a forwarding header did, whatever its socket says) nor from a web page of another site
(an `Origin` header, or `Sec-Fetch-Site` other than `none` or `same-origin`), `on` anyone, `off`
no one (404). A proxy that adds none of the forwarding headers makes its clients look local:
refuse these paths at such a proxy (docs/deploy.md does), or turn them off.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sqlite3
import sys
from functools import cache
from typing import Any

import trio
from pydantic import BaseModel, Field
from quart import Blueprint, Response, request
from quart_schema import hide, validate_response

from marketsrv import __version__
from marketsrv.api import metrics
from marketsrv.api.hosts import is_loopback
from marketsrv.api.openapi import errors
from marketsrv.errors import Forbidden, NotFound
from marketsrv.runtime import current_runtime
from marketsrv.settings import public_settings
from storage import SCHEMA_VERSION

blueprint = Blueprint("operator", __name__)

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "via")
# The distributions whose versions /-/versions.json reports: ours and what we run on.
DISTRIBUTIONS = (
    "trio", "quart", "quart-trio", "hypercorn", "quart-schema", "pydantic", "sortedcontainers",
    "orjson", "argon2-cffi", "quart-cors", "prometheus-client", "markdown-it-py", "tzdata",
)  # fmt: skip


def check_access() -> None:
    settings = current_runtime().settings
    mode = settings.operator_endpoints
    if mode == "on":
        return
    if mode == "off":
        raise NotFound("not_found", "no such path; the API is described at /docs")
    client = request.scope.get("client") or ("", 0)
    # Without trusted proxies (proxy_hops), a forwarding header means a proxy on this machine
    # passed on a remote client's request; with them, the client address is already that client.
    proxied = not settings.proxy_hops and any(h in request.headers for h in FORWARDING_HEADERS)
    # A page in a browser on this machine is local too: a cross-site fetch says so (Origin,
    # Sec-Fetch-Site), and may not read what only the operator should.
    cross_site = "origin" in request.headers or request.headers.get(
        "sec-fetch-site", "none"
    ) not in ("none", "same-origin")
    if not is_loopback(client[0]) or proxied or cross_site:
        raise Forbidden(
            "operator_only",
            "this is readable from the server's own machine only (operator_endpoints = loopback)",
        )


@blueprint.get("/metrics")
@hide
async def prometheus() -> Response:
    check_access()
    body = await metrics.exposition(current_runtime())
    return Response(body, content_type=metrics.CONTENT_TYPE)


class SettingsView(BaseModel):
    """Every setting as this server runs with it; secrets read `[redacted]`."""

    settings: dict[str, Any] = Field(description="setting name to value (docs/settings.md)")


class Versions(BaseModel):
    marketsrv: str
    python: str = Field(description="the interpreter's version")
    implementation: str
    platform: str
    sqlite: str = Field(description="the SQLite library's version")
    schema_version: int = Field(description="the database schema this marketsrv writes")
    packages: dict[str, str] = Field(description="the installed versions of what it runs on")


@blueprint.get("/-/settings.json")
@errors(s403=["operator_only"], s404=["not_found"])
@validate_response(SettingsView)
async def settings_json() -> SettingsView:
    """Every setting this server runs with, credentials in URLs masked (setting
    `operator_endpoints`).
    """
    check_access()
    return SettingsView(settings=public_settings(current_runtime().settings))


@cache
def _packages() -> dict[str, str]:
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@blueprint.get("/-/versions.json")
@errors(s403=["operator_only"], s404=["not_found"])
@validate_response(Versions)
async def versions_json() -> Versions:
    """What this server runs on: its version, Python's, SQLite's and every library's (setting
    `operator_endpoints`).
    """
    check_access()
    packages = await trio.to_thread.run_sync(_packages)  # reads files: off the event loop
    return Versions(
        marketsrv=__version__,
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=platform.platform(terse=True),
        sqlite=sqlite3.sqlite_version,
        schema_version=SCHEMA_VERSION,
        packages=packages,
    )
