"""`marketsrv scenario NAME [SYMBOL...]`: make a running server's market do something, for demos.

    marketsrv scenario halt SCOM          SCOM refuses orders (symbol_halted) until resumed
    marketsrv scenario resume SCOM
    marketsrv scenario jump KCB --percent -7
    marketsrv scenario volatile --factor 5 --duration 120      (every symbol)
    marketsrv scenario drought EQTY       a thin book with a wide spread for a minute
    marketsrv scenario flash_crash SCOM --percent 9 --duration 30
    marketsrv scenario calm               every regime back to normal
    marketsrv scenario status             the market's state and halts

It calls the server's admin REST endpoint. The server's address and database come from the same
settings as the server's (flags, MARKETSRV_* variables, --config); the token is the operator
token the server wrote beside its database, or --token (an admin user's), or MARKETSRV_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marketsrv.market.scenarios import NAMES
from marketsrv.settings import SettingsError, load_for_command

TIMEOUT_S = 10.0


def operator_token_path(database: str | Path) -> Path:
    path = Path(database)
    return path.with_name(path.name + ".operator-token")


def write_operator_token(database: str | Path, token: str, url: str) -> Path:
    """Write the token and the server's bound URL (port 0 included), readable by this user only
    (created with mode 0600, never widened)."""
    path = operator_token_path(database)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{token}\n{url}\n")
    return path


def server_url(host: str, port: int) -> str:
    """http://host:port, with an IPv6 host in brackets and a wildcard bind as loopback."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The token goes to the server named, never to wherever a redirect points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _request(url: str, token: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"message": exc.reason}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="marketsrv scenario",
        description="Make a running server's market do something a frontend must survive.",
    )
    parser.add_argument("name", choices=[*NAMES, "status"], help="what to do")
    parser.add_argument("symbols", nargs="*", metavar="SYMBOL", help="which (default: all)")
    parser.add_argument("--percent", type=float, help="jump / flash_crash: the move in %%")
    parser.add_argument("--factor", type=float, help="volatile: times the volatility")
    parser.add_argument("--duration", type=float, help="seconds a regime lasts (default 60)")
    parser.add_argument("--url", help="the server (default: http://HOST:PORT from the settings)")
    parser.add_argument("--token", help="an admin's token (default: the operator token file)")
    parser.add_argument("--database", help="the server's database (to find the operator token)")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings")
    args = parser.parse_args(argv)
    try:
        settings = load_for_command(args.config, database=args.database)
    except SettingsError as exc:
        print(f"marketsrv scenario: {exc}", file=sys.stderr)
        return 2
    base = args.url
    token = args.token or os.environ.get("MARKETSRV_TOKEN")
    if not token:
        path = operator_token_path(settings.database)
        try:
            token, _, written_url = path.read_text(encoding="utf-8").strip().partition("\n")
            base = base or written_url.strip()
        except OSError as exc:
            print(
                f"marketsrv scenario: cannot read the operator token {path} ({exc.strerror});"
                " is the server running with this database? Or pass --token",
                file=sys.stderr,
            )
            return 2
    url = (base or server_url(settings.host, settings.port)).rstrip("/") + "/api/admin/scenarios/"
    body = None
    if args.name != "status":
        body = {"scenario": args.name, "symbols": args.symbols, "percent": args.percent,
                "factor": args.factor, "duration_s": args.duration}  # fmt: skip
    try:
        status, answer = _request(url, token, body)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"marketsrv scenario: cannot reach {url}: {reason}", file=sys.stderr)
        return 2
    if status >= 400:
        print(f"marketsrv scenario: {answer.get('message', status)}", file=sys.stderr)
        return 1
    print(answer.get("detail", ""))
    market = answer.get("market", {})
    halted = ", ".join(market.get("halted", {})) or "none"
    print(
        f"market {market.get('state')} (trading day {market.get('trading_day')}); halted: {halted}"
    )
    return 0
