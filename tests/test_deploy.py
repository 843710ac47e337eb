"""docs/deploy.md's files work: its settings file is read by marketsrv's own settings reader, its
systemd unit passes `systemd-analyze verify`, and its nginx site passes `nginx -t` and then runs,
in front of a real server: HTTPS, the redirect, WSS, and the paths it keeps to the machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from marketsrv.settings import SETTINGS, load
from tests.builders import REPO, ServerFactory
from tests.proxies import (
    NAME,
    blocks,
    free_port,
    insecure_tls,
    market_data_over_wss,
    nginx_binary,
    nginx_config,
    running_nginx,
)

GUIDE = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")


def block(language: str) -> str:
    """The guide's one fenced block in `language`."""
    found = blocks(GUIDE, language)
    assert len(found) == 1, (language, len(found))
    return found[0]


def test_the_settings_file_is_read_by_marketsrv(tmp_path: Path) -> None:
    text = block("toml")
    config = tmp_path / "marketsrv.toml"
    config.write_text(text)
    settings = load(config_file=config, environ={})  # unknown keys and bad values would raise
    keys = re.findall(r"^(\w+) *=", text, flags=re.M)
    assert keys and all(k in SETTINGS for k in keys)
    assert settings.proxy_hops == 1 and settings.demo_user == "off"
    assert settings.host == "127.0.0.1" and NAME in settings.allowed_hosts.split(",")


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine (scripts/install --test adds it)")
    unit = tmp_path / "marketsrv.service"
    unit.write_text(block("ini"))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if "marketsrv" in line]
    assert done.returncode == 0 and said == [], done.stdout + done.stderr
    assert "ExecStart=/usr/bin/python3 /opt/marketsrv/marketsrv.pyz" in unit.read_text()


async def test_the_nginx_site_proxies_https_and_wss(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    nginx_binary()  # skips at once when missing
    config = tmp_path / "marketsrv.toml"
    config.write_text(block("toml"))
    guide = load(config_file=config, environ={})
    url, _ = await start_server(
        allowed_hosts=guide.allowed_hosts,
        proxy_hops=guide.proxy_hops,
        operator_endpoints=guide.operator_endpoints,
    )
    upstream = int(url.rsplit(":", 1)[1])
    # On the machine itself, health checks and the Prometheus scrape reach the server directly.
    async with httpx.AsyncClient(base_url=url, timeout=30) as local:
        assert (await local.get("/api/health/")).status_code == 200
        assert (await local.get("/metrics")).status_code == 200
    https, http = free_port(), free_port()
    site = block("nginx").replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    conf = nginx_config(tmp_path, site, https, http)
    async with running_nginx(conf, https):
        headers = {"Host": NAME}
        async with httpx.AsyncClient(verify=insecure_tls(), timeout=30) as client:
            health = await client.get(f"https://127.0.0.1:{https}/api/health/", headers=headers)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            plain = await client.get(f"http://127.0.0.1:{http}/api/health/", headers=headers)
            assert plain.status_code == 301
            assert plain.headers["location"] == f"https://{NAME}/api/health/"
            for kept in ("/metrics", "/metrics/", "/-/settings.json", "/-/versions.json"):
                answer = await client.get(f"https://127.0.0.1:{https}{kept}", headers=headers)
                assert answer.status_code == 404, kept
            big = await client.post(
                f"https://127.0.0.1:{https}/api/stocks/batch/",
                headers=headers,
                content=b"x" * (65 * 1024),
            )
            assert big.status_code == 413
        frame = await market_data_over_wss(https, "SCOM")
        assert frame["data"]["symbol"] == "SCOM"
