"""Reading the settings: defaults < config file < environment < command line, then the range checks
the types alone cannot express. Unknown keys in the config file or unknown `MARKETSRV_*` variables
are errors, so a typo never passes silently.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marketsrv.settings.table import ENV_PREFIX, SETTINGS, SettingInfo, Settings, SettingsError

# Environment variables that configure the launcher rather than the server.
CONFIG_ENV = "MARKETSRV_CONFIG"  # the config file, when no --config flag names one
_ENV_NOT_SETTINGS = frozenset({CONFIG_ENV})


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
    if not 1 <= settings.stream_spread <= 10:
        problems.append("stream_spread must be 1 to 10")
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
    problems.extend(_scale_problems(settings))
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def _url_ok(url: str, schemes: tuple[str, ...], root_only: bool = False) -> bool:
    """A URL of one of `schemes` with a host (a path for unix://) and a valid port; with
    `root_only`, nothing after the host (the edge adds the paths)."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError when out of range  # noqa: B018
    except ValueError:
        return False
    if parts.scheme not in schemes:
        return False
    if parts.scheme == "unix":
        return bool(parts.path)
    if not parts.hostname:
        return False
    return not root_only or (parts.path in ("", "/") and not parts.query and not parts.fragment)


def _scale_problems(settings: Settings) -> list[str]:
    role, bus, primary = settings.role, settings.bus_url, settings.primary_url
    if role not in {"standalone", "primary", "edge"}:
        return ["role must be standalone, primary or edge"]
    problems = []
    if role == "standalone" and bus:
        problems.append("bus_url is for a primary or an edge: set role too")
    if role != "standalone" and not _url_ok(bus, ("redis", "rediss", "unix")):
        problems.append(f"a {role} needs bus_url = redis://HOST:PORT/DB or unix:///PATH")
    if role == "edge" and not _url_ok(primary, ("http", "https"), root_only=True):
        problems.append("an edge needs primary_url = http://HOST:PORT (its primary, no path)")
    if role != "edge" and primary:
        problems.append("primary_url is for an edge")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", settings.bus_prefix):
        problems.append("bus_prefix must be 1-64 letters, digits or _.:-")
    if not 100 <= settings.bus_max_entries <= 10_000_000:
        problems.append("bus_max_entries must be 100 to 10000000")
    return problems


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


def load_for_command(config: str | None, **flags: Any) -> Settings:
    """`load` as every command line reads it: the file of `--config`, else of MARKETSRV_CONFIG,
    and the flags given (a None is a flag not given)."""
    path = config or os.environ.get(CONFIG_ENV)
    given = {name: value for name, value in flags.items() if value is not None}
    return load(given, Path(path) if path else None)
