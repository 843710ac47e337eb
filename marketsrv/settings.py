"""The one settings table, and how it is read.

Every setting is a field of `Settings` with its help text in the field's metadata. The same table
feeds the command-line flags (`--tick-interval-ms`), the TOML config file (`tick_interval_ms = 100`),
the environment (`MARKETSRV_TICK_INTERVAL_MS=100`), `--help-settings` and `docs/settings.md`.
Precedence, lowest first: defaults, config file, environment, command line. Unknown keys in the
config file or unknown `MARKETSRV_*` variables are errors, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "MARKETSRV_"
# Environment variables that configure the launcher rather than the server.
_ENV_NOT_SETTINGS = frozenset({"MARKETSRV_CONFIG"})


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


def parse_value(info: SettingInfo, raw: Any, origin: str) -> Any:
    """Turn a raw value (a string from env/CLI, or a TOML value) into the setting's type."""
    kind = info.type
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(raw, str) and raw.strip().lower() in {"0", "false", "no", "off"}:
            return False
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
    elif kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw.strip())
            except ValueError:
                pass
    elif isinstance(raw, str):
        return raw
    raise SettingsError(f"{origin}: {info.name} must be a {kind.__name__}, got {raw!r}")


def _from_mapping(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    out = {}
    for key, raw in values.items():
        info = SETTINGS.get(key)
        if info is None:
            raise SettingsError(f"{origin}: unknown setting {key!r} (see --help-settings)")
        out[key] = parse_value(info, raw, origin)
    return out


def from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    return _from_mapping(data, str(path))


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX) and key not in _ENV_NOT_SETTINGS:
            values[key[len(ENV_PREFIX) :].lower()] = raw
    return _from_mapping(values, "environment")


def validate(settings: Settings) -> Settings:
    """Range checks that the types alone cannot express."""
    problems = []
    if not 0 <= settings.port <= 65535:
        problems.append("port must be 0 to 65535")
    if not 1 <= settings.tick_interval_ms <= 10_000:
        problems.append("tick_interval_ms must be 1 to 10000")
    if not 0.0 <= settings.active_fraction <= 1.0:
        problems.append("active_fraction must be 0 to 1")
    if not 10 <= settings.stream_interval_ms <= 10_000:
        problems.append("stream_interval_ms must be 10 to 10000")
    if settings.ws_max_connections < 1 or settings.ws_max_symbols < 1:
        problems.append("ws_max_connections and ws_max_symbols must be at least 1")
    if settings.ws_max_messages_per_s <= 0:
        problems.append("ws_max_messages_per_s must be positive")
    if not 256 <= settings.ws_max_message_bytes <= 16 * 1024 * 1024:
        problems.append("ws_max_message_bytes must be 256 to 16777216")
    if not 0 < settings.ws_close_timeout_s <= 60:
        problems.append("ws_close_timeout_s must be more than 0 and at most 60")
    if settings.ws_slow_client_timeout_s <= 0 or settings.ws_ping_interval_s < 0:
        problems.append(
            "ws_slow_client_timeout_s must be positive, ws_ping_interval_s not negative"
        )
    if not 0 <= settings.takers_per_tick <= 20:
        problems.append("takers_per_tick must be 0 to 20")
    if settings.volatility_scale < 0:
        problems.append("volatility_scale must not be negative")
    if settings.trade_history < 1 or settings.candle_history < 1:
        problems.append("trade_history and candle_history must be at least 1")
    if settings.log_level.lower() not in {"debug", "info", "warning", "error"}:
        problems.append("log_level must be debug, info, warning or error")
    if settings.log_format not in {"text", "json"}:
        problems.append("log_format must be text or json")
    if settings.operator_endpoints not in {"loopback", "on", "off"}:
        problems.append("operator_endpoints must be loopback, on or off")
    if not 0 <= settings.proxy_hops <= 10:
        problems.append("proxy_hops must be 0 to 10")
    if settings.db_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        problems.append("db_synchronous must be OFF, NORMAL, FULL or EXTRA")
    if settings.demo_user not in {"auto", "on", "off"}:
        problems.append("demo_user must be auto, on or off")
    if settings.token_ttl_hours <= 0 or not 1 <= settings.auth_hash_concurrency <= 64:
        problems.append("token_ttl_hours must be positive, auth_hash_concurrency 1 to 64")
    if (
        min(
            settings.login_failures_per_address,
            settings.login_failures_per_account,
            settings.registrations_per_address,
        )
        < 0
    ):
        problems.append("the login and registration limits must not be negative")
    if settings.calendar not in {"always", "nse"}:
        problems.append("calendar must be always or nse")
    try:
        ZoneInfo(settings.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        problems.append(f"timezone {settings.timezone!r} is not a known IANA time zone")
    if settings.off_tick_prices not in {"round", "reject"}:
        problems.append("off_tick_prices must be round or reject")
    if not 0 <= settings.history_days <= 20_000 or not 0 <= settings.history_minute_days <= 30:
        problems.append("history_days must be 0 to 20000, history_minute_days 0 to 30")
    if settings.history_minute_days > settings.history_days:
        problems.append("history_minute_days must not exceed history_days")
    if not 1 <= settings.candle_retention_days <= 366:
        problems.append("candle_retention_days must be 1 to 366")
    if settings.history_minute_days > settings.candle_retention_days:
        problems.append("history_minute_days must not exceed candle_retention_days")
    if not 0.1 <= settings.equity_interval_minutes <= 1440:
        problems.append("equity_interval_minutes must be 0.1 to 1440")
    if not 0 < settings.outbox_retention_days <= 3650:
        problems.append("outbox_retention_days must be above 0 and at most 3650")
    if not 0 <= settings.chat_messages_per_minute <= 100_000:
        problems.append("chat_messages_per_minute must be 0 to 100000")
    if not 1 <= settings.user_stream_max_resume <= 100_000:
        problems.append("user_stream_max_resume must be 1 to 100000")
    if not settings.database.strip():
        problems.append("database must name a file")
    if settings.seed < -1:
        problems.append("seed must be -1 (random) or a non-negative integer")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def load(
    cli: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < config file < environment < command line into one validated Settings."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(from_toml(config_file))
    merged.update(from_env(os.environ if environ is None else environ))
    merged.update(_from_mapping(cli or {}, "command line"))
    return validate(Settings(**merged))


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
