"""The one settings table: every setting a field of `Settings`, with its help text in the field's
metadata. The same table feeds the command-line flags (`--tick-interval-ms`), the TOML config file
(`tick_interval_ms = 100`), the environment (`MARKETSRV_TICK_INTERVAL_MS=100`), `--help-settings`
and `docs/settings.md` (`describe`), and `/-/settings.json` (`public_settings`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "MARKETSRV_"


class SettingsError(ValueError):
    """A setting was unknown or its value could not be read."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    host: str = _setting(
        "127.0.0.1", "Interface to bind. Keep loopback unless you mean to expose it."
    )
    port: int = _setting(
        8000, "TCP port to listen on; 0 picks a free port (the bound URL is printed)."
    )
    universe: str = _setting(
        "", "JSON file of instruments to list; empty means the bundled NSE universe."
    )
    seed: int = _setting(
        -1,
        "Seed of the market simulator; the same seed replays the same market. -1 picks one at start.",
    )
    tick_interval_ms: int = _setting(100, "Milliseconds between simulator ticks (1 to 10000).")
    simulate: bool = _setting(True, "Run the market simulator (liquidity providers and takers).")
    volatility_scale: float = _setting(
        1.0, "Multiplies every instrument's volatility; 0 keeps fair values still."
    )
    active_fraction: float = _setting(
        1.0,
        "Share of symbols that trade on a tick, 0 to 1. 1 makes every book change every tick.",
    )
    takers_per_tick: float = _setting(
        0.5, "Mean marketable orders the simulated takers send per symbol per tick."
    )
    calendar: str = _setting(
        "always",
        "Trading days: always (24 hours, the day rolls at midnight in `timezone`) or nse"
        " (Mon-Fri, Africa/Nairobi: pre-open 09:00, auction 09:30, close 15:00).",
    )
    timezone: str = _setting(
        "Africa/Nairobi", "IANA time zone whose midnight rolls the day of the always calendar."
    )
    off_tick_prices: str = _setting(
        "round",
        "A limit price between two ticks: round (a buy down, a sell up, with a note) or reject.",
    )
    history_days: int = _setting(
        365, "Days of synthetic daily bars a new database starts with (0: none)."
    )
    history_minute_days: int = _setting(
        2, "Of those, the last days that also get one-minute candles."
    )
    candle_retention_days: int = _setting(
        7, "Days of one-minute candles kept in the database (daily bars are kept for good)."
    )
    demo_user_admin: bool = _setting(
        False, "Make the demo user an admin (may run scenarios over REST)."
    )
    equity_interval_minutes: float = _setting(
        5.0, "Minutes between intraday equity records of accounts that hold shares."
    )
    outbox_retention_days: float = _setting(
        7.0, "Days a user's events stay in the outbox for /ws/user/ resume."
    )
    user_stream_max_resume: int = _setting(
        5000, "Most events a /ws/user/ resume replays; more: resync_required."
    )
    chat_messages_per_minute: int = _setting(
        30, "Direct messages a user may send a minute on /ws/chat/ (0: no limit)."
    )
    trade_history: int = _setting(1000, "Recent trades kept in memory per symbol.")
    candle_history: int = _setting(1440, "One-minute candles kept in memory per symbol.")
    stream_interval_ms: int = _setting(
        100, "Milliseconds between stream updates of a symbol (10 to 10000); only changes are sent."
    )
    stream_spread: int = _setting(
        2,
        "Spread each stream interval's publish over this many steps (1 to 10), a share of the"
        " symbols each: less waiting behind one burst, more writes per client"
        " (docs/performance.md).",
    )
    ws_max_connections: int = _setting(1000, "WebSocket connections served at once; more get 1013.")
    ws_max_symbols: int = _setting(100, "Symbols one WebSocket connection may subscribe to.")
    ws_max_messages_per_s: float = _setting(
        20.0,
        "Messages a second a client may send (bursts of twice that); a flood is closed (1008).",
    )
    ws_max_message_bytes: int = _setting(
        16384, "Largest inbound WebSocket message; a larger one closes the connection (1009)."
    )
    ws_slow_client_timeout_s: float = _setting(
        5.0, "A client whose socket has not drained for this long is closed (4008, slow consumer)."
    )
    ws_close_timeout_s: float = _setting(
        3.0, "Seconds a closed WebSocket waits for the client's close reply before it is dropped."
    )
    ws_ping_interval_s: float = _setting(
        20.0, "Seconds between server pings; a client silent for 3 intervals is dropped. 0: off."
    )
    ws_compression: bool = _setting(
        False, "Accept permessage-deflate when a client offers it (5x fewer bytes, more CPU)."
    )
    ws_fast_path: bool = _setting(
        True, "Write each client's frames of an interval in one batch into hypercorn's stream."
    )
    database: str = _setting(
        "data/marketsrv.db", "SQLite file of accounts and orders, created on first start."
    )
    db_synchronous: str = _setting(
        "FULL", "SQLite synchronous mode: FULL survives power loss; NORMAL only a crash."
    )
    db_group_commit: bool = _setting(
        True, "Commit queued writes together in one transaction (one fsync for many orders)."
    )
    demo_user: str = _setting(
        "auto", "Create a funded demo user and print its login: on, off, or auto (on for loopback)."
    )
    cors_origins: str = _setting(
        "http://localhost:3000,http://localhost:5173,http://127.0.0.1:3000,http://127.0.0.1:5173",
        "Comma-separated origins whose browser pages may call the API; * allows any.",
    )
    allowed_hosts: str = _setting(
        "auto",
        "Comma-separated Host names the server answers (any port); a leading dot allows"
        " subdomains, * any. auto: loopback names when bound to loopback (against DNS"
        " rebinding), else any.",
    )
    token_ttl_hours: float = _setting(
        168.0, "Hours an API token stays valid after login or registration."
    )
    auth_hash_concurrency: int = _setting(
        2, "Password hashes computed at once (each Argon2 run takes 64 MiB); more wait."
    )
    login_failures_per_address: int = _setting(
        20, "Failed logins a client address may make in a minute before 429; 0: no limit."
    )
    login_failures_per_account: int = _setting(
        10, "Failed logins on one username in five minutes before 429; 0: no limit."
    )
    registrations_per_address: int = _setting(
        60, "Accounts a client address may register in ten minutes before 429; 0: no limit."
    )
    proxy_hops: int = _setting(
        0,
        "Reverse proxies in front that set X-Forwarded-For and -Proto (nginx, Caddy): client"
        " addresses come from there. 0 trusts none; set it only if the proxies alone reach the port.",
    )
    operator_endpoints: str = _setting(
        "loopback",
        "Who may read /metrics, /-/settings.json and /-/versions.json: loopback (this machine,"
        " not through a proxy), on (anyone) or off.",
    )
    role: str = _setting(
        "standalone",
        "standalone (everything in one process), primary (also publishes the market to the bus)"
        " or edge (serves the streams from the bus, forwards the rest to primary_url); see"
        " docs/scaling.md.",
    )
    bus_url: str = _setting(
        "",
        "The Redis (or Valkey) of a primary and its edges: redis://HOST:PORT/DB or"
        " unix:///PATH. Empty for standalone; needs the scale extra (pip install marketsrv[scale]).",
    )
    bus_prefix: str = _setting(
        "marketsrv", "Prefix of the bus's keys, so that several markets can share one Redis."
    )
    bus_max_entries: int = _setting(
        10000,
        "Stream entries the bus keeps (stream_spread per stream interval, 1-30 KB each): how far a"
        " slow edge may fall behind before it re-joins from a snapshot.",
    )
    primary_url: str = _setting(
        "",
        "An edge's primary, http://HOST:PORT: where it forwards the REST API, /ws/user/ and"
        " /ws/chat/, with the caller's token.",
    )
    log_level: str = _setting("info", "Logging level: debug, info, warning or error.")
    log_format: str = _setting(
        "text", "Log lines as text (time level logger: message) or json (one object per line)."
    )
    access_log: bool = _setting(
        False, "Log every HTTP request and WebSocket (client, path, status, bytes, ms)."
    )
    graceful_timeout_s: float = _setting(
        3.0, "Seconds open connections get to finish when the server shuts down."
    )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SettingInfo:
    name: str
    type: type
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def settings_table() -> list[SettingInfo]:
    return [
        SettingInfo(f.name, _TYPES[str(f.type)], f.default, f.metadata["help"])
        for f in dataclasses.fields(Settings)
    ]


SETTINGS: dict[str, SettingInfo] = {s.name: s for s in settings_table()}


_CREDENTIALS = re.compile(r"(://[^/@:\s]*:)[^/@\s]*@")


def public_settings(settings: Settings) -> dict[str, Any]:
    """Every setting's value, fit to show: the password of any URL with credentials is masked
    (`redis://user:[redacted]@host`), the only secrets a setting holds."""
    return {
        f.name: _CREDENTIALS.sub(r"\1[redacted]@", v) if isinstance(v, str) else v
        for f in dataclasses.fields(settings)
        for v in [getattr(settings, f.name)]
    }


def describe() -> Iterator[str]:
    """Lines of the settings table as Markdown, for --help-settings and docs/settings.md."""
    yield "| setting | flag | environment | type | default | meaning |"
    yield "| --- | --- | --- | --- | --- | --- |"
    for s in settings_table():
        default = repr(s.default) if s.type is str else str(s.default).lower()
        yield f"| `{s.name}` | `{s.flag}` | `{s.env}` | {s.type.__name__} | `{default}` | {s.help} |"
