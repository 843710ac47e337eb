"""docs/scaling.md's files work: its settings files are read by marketsrv's own reader, its edge
unit passes `systemd-analyze verify`, and its nginx site runs in front of a primary and two edges
(a real redis-server between them): the REST API, a sign-in, a stream and the private stream
through it."""

from __future__ import annotations

import re
import shutil
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from marketsrv.settings import SETTINGS, load
from tests.builders import REPO, demo_token, next_of
from tests.cluster import Cluster, redis_server
from tests.proxies import (
    NAME,
    blocks,
    free_port,
    insecure_tls,
    market_data_over_wss,
    nginx_binary,
    nginx_config,
    running_nginx,
    wss,
)

GUIDE = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
pytestmark = pytest.mark.timeout(120)


def settings_file(tmp_path: Path, role: str) -> Path:
    """The guide's settings file of `role`."""
    (text,) = [b for b in blocks(GUIDE, "toml") if re.search(rf'^role = "{role}"', b, re.M)]
    path = tmp_path / f"{role}.toml"
    path.write_text(text)
    keys = re.findall(r"^(\w+) *=", text, flags=re.M)
    assert keys and all(k in SETTINGS for k in keys)
    return path


def test_the_settings_files_are_read_by_marketsrv(tmp_path: Path) -> None:
    primary = load(config_file=settings_file(tmp_path, "primary"), environ={})
    assert primary.bus_url.startswith("redis://") and primary.proxy_hops == 1
    edge = load(config_file=settings_file(tmp_path, "edge"), environ={})
    assert edge.bus_url == primary.bus_url and edge.primary_url.startswith("http://")
    assert NAME in edge.allowed_hosts.split(",") and edge.proxy_hops == 1


def test_the_edge_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine (scripts/install --test adds it)")
    (unit,) = blocks(GUIDE, "ini")
    (tmp_path / "marketsrv-edge@.service").write_text(unit)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "marketsrv-edge@8001.service")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    said = [line for line in (done.stdout + done.stderr).splitlines() if "marketsrv" in line]
    assert done.returncode == 0 and said == [], done.stdout + done.stderr


async def test_the_nginx_site_serves_a_primary_through_two_edges(
    tmp_path: Path, bus_folder: Path
) -> None:
    nginx_binary()  # skips at once when missing
    edge = load(config_file=settings_file(tmp_path, "edge"), environ={})
    primary = load(config_file=settings_file(tmp_path, "primary"), environ={})
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(redis_server(bus_folder))
        edge_flags = ("--proxy-hops", str(edge.proxy_hops), "--allowed-hosts", edge.allowed_hosts)
        primary_flags = ("--proxy-hops", str(primary.proxy_hops),
                         "--allowed-hosts", f"{primary.allowed_hosts},127.0.0.1")  # fmt: skip
        cluster = Cluster(bus_folder, stack, primary_flags, edge_flags)
        await cluster.start_primary()
        ports = [(await cluster.start_edge())[1].rsplit(":", 1)[1] for _ in range(2)]
        (site,) = blocks(GUIDE, "nginx")
        for guide_port, port in zip(("8001", "8002"), ports, strict=True):
            site = site.replace(f"server 127.0.0.1:{guide_port};", f"server 127.0.0.1:{port};")
        https = free_port()
        await stack.enter_async_context(running_nginx(nginx_config(tmp_path, site, https), https))
        base, headers = f"https://127.0.0.1:{https}", {"Host": NAME}
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, verify=insecure_tls(), timeout=30, headers=headers)
        )
        stock = await client.get("/api/stocks/SCOM/")
        assert stock.status_code == 200 and stock.json()["symbol"] == "SCOM"
        # The primary's links name the address the client used, not the primary's own.
        page = (await client.get("/api/stocks/?page_size=5")).json()
        assert page["next"].startswith(f"https://{NAME}/api/stocks/"), page["next"]
        token = await demo_token(client)
        me = await client.get("/api/accounts/me/", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "demo"
        for kept in ("/metrics", "/-/settings.json"):
            assert (await client.get(kept)).status_code == 404, kept
        frame = await market_data_over_wss(https, "KCB")
        assert frame["data"]["symbol"] == "KCB"
        async with wss(https, f"/ws/user/?token={token}") as ws:
            ready = await next_of(ws, "ready")
            assert ready["data"]["user"]["username"] == "demo"
