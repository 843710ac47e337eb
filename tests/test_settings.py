"""The settings table: precedence, unknown keys, types, ranges, and that the docs list every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marketsrv.settings import SETTINGS, Settings, SettingsError, describe, load
from tests.builders import REPO


def test_defaults_serve_loopback_8000() -> None:
    settings = load(environ={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.tick_interval_ms) == ("127.0.0.1", 8000, 100)


def test_precedence_file_then_env_then_cli(tmp_path: Path) -> None:
    config = tmp_path / "marketsrv.toml"
    config.write_text("port = 9001\nseed = 5\ntick_interval_ms = 250\nsimulate = false\n")
    env = {"MARKETSRV_PORT": "9002", "MARKETSRV_SEED": "6", "PATH": "/bin"}
    settings = load({"port": "9003"}, config, env)
    assert settings.port == 9003  # command line wins
    assert settings.seed == 6  # environment beats the file
    assert settings.tick_interval_ms == 250 and settings.simulate is False  # file beats defaults


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MARKETSRV_PROT": "1"}, "unknown setting 'prot'"),
        ({"MARKETSRV_PORT": "eighty"}, "port must be a int"),
        ({"MARKETSRV_SIMULATE": "maybe"}, "simulate must be a bool"),
        ({"MARKETSRV_PORT": "70000"}, "port must be 0 to 65535"),
        ({"MARKETSRV_TICK_INTERVAL_MS": "0"}, "tick_interval_ms must be 1 to 10000"),
        ({"MARKETSRV_ACTIVE_FRACTION": "1.5"}, "active_fraction must be 0 to 1"),
    ],
)
def test_bad_values_are_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(environ=env)


def test_unknown_or_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        load(config_file=config, environ={})
    config.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load(config_file=config, environ={})
    config.write_text("port = true\n")
    with pytest.raises(SettingsError, match="port must be a int"):
        load(config_file=config, environ={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load(config_file=tmp_path / "missing.toml", environ={})


def test_every_setting_is_documented() -> None:
    table = "\n".join(describe())
    docs = (REPO / "docs" / "settings.md").read_text()
    for name, info in SETTINGS.items():
        assert f"`{name}`" in table and info.help
        assert f"`{name}`" in docs, f"{name} is missing from docs/settings.md"
    assert table in docs, "docs/settings.md is stale: paste `marketsrv --help-settings` into it"


EDGE = {"MARKETSRV_ROLE": "edge", "MARKETSRV_BUS_URL": "redis://10.0.0.5:6379/0"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MARKETSRV_ROLE": "hub"}, "role must be standalone, primary or edge"),
        ({"MARKETSRV_BUS_URL": "redis://h"}, "bus_url is for a primary or an edge"),
        ({"MARKETSRV_ROLE": "primary"}, "a primary needs bus_url"),
        ({"MARKETSRV_ROLE": "primary", "MARKETSRV_BUS_URL": "redis://"}, "needs bus_url"),
        ({"MARKETSRV_ROLE": "primary", "MARKETSRV_BUS_URL": "redis://[::1"}, "needs bus_url"),
        (EDGE, "an edge needs primary_url"),
        (EDGE | {"MARKETSRV_PRIMARY_URL": "http://h:8000/api"}, "no path"),
        (EDGE | {"MARKETSRV_PRIMARY_URL": "http://h:8000?x=1"}, "no path"),
        (EDGE | {"MARKETSRV_PRIMARY_URL": "http://h:99999"}, "an edge needs primary_url"),
        (EDGE | {"MARKETSRV_PRIMARY_URL": "http://[::1"}, "an edge needs primary_url"),
        (EDGE | {"MARKETSRV_PRIMARY_URL": "http://"}, "an edge needs primary_url"),
        ({"MARKETSRV_PRIMARY_URL": "http://h"}, "primary_url is for an edge"),
    ],
)
def test_the_roles_need_usable_addresses(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load(environ=env)


def test_a_primary_and_an_edge_with_their_addresses() -> None:
    assert load(environ={"MARKETSRV_ROLE": "primary", "MARKETSRV_BUS_URL": "unix:///r.sock"})
    edge = load(environ=EDGE | {"MARKETSRV_PRIMARY_URL": "https://[::1]:8443/"})
    assert edge.role == "edge" and edge.primary_url == "https://[::1]:8443/"
