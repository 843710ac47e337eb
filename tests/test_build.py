"""The one-file build: `scripts/build` makes a zipapp that runs with a plain python3, from an empty
folder, in an empty environment, and serves what the installed command serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import trio

from tests.builders import REPO, demo_token, next_of, open_ws, send, server_process

pytestmark = pytest.mark.timeout(600)  # the build installs every dependency into the file

# The interpreter the virtualenv was made from: a python3 with nothing of ours installed.
PYTHON = getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "marketsrv.pyz"
    build = subprocess.run(
        # With the scale extra, so that the file's edge is tested too (the standalone server
        # never imports it: test_scale.py).
        [REPO / "scripts" / "build", "-o", str(out), "--scale"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return out


def run_pyz(pyz: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(pyz), *args], cwd=cwd, env={}, capture_output=True, text=True, timeout=120
    )


async def test_the_file_serves_the_market_page_streams_and_logins(
    pyz: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    async with (
        server_process(command=(PYTHON, str(pyz)), cwd=empty, env={}) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        health = await http.get("/api/health/")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        page = await http.get("/")
        assert page.status_code == 200 and "<title>" in page.text
        assert (await http.get("/static/js/marketsrv.js")).status_code == 200
        for docs in ("/docs", "/docs/protocol", "/docs/deploy"):  # the manual is inside too
            assert (await http.get(docs)).status_code == 200, docs
        token = await demo_token(http)
        me = await http.get("/api/accounts/me/", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "demo"
        async with open_ws(url, "/ws/market/") as ws:
            await send(ws, {"type": "subscribe", "symbols": ["SCOM"]})
            frame = await next_of(ws, "market_data", limit_s=10)
            assert frame["data"]["symbol"] == "SCOM"
        async with open_ws(url, f"/ws/user/?token={token}") as ws:
            with trio.fail_after(10):
                first = orjson.loads(await ws.get_message())
            assert first["type"] != "error", first
    # Its database is where it ran, as with the installed command.
    assert (empty / "data" / "marketsrv.db").is_file()


def test_the_file_has_the_commands_subcommands(pyz: Path, tmp_path: Path) -> None:
    version = run_pyz(pyz, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("marketsrv "), version.stderr
    created = run_pyz(pyz, "users", "create", "alice", "--deposit", "100", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "alice" in created.stdout
    assert (tmp_path / "data" / "marketsrv.db").is_file()
    settings = run_pyz(pyz, "--help-settings", cwd=tmp_path)
    assert settings.returncode == 0 and "tick_interval_ms" in settings.stdout


async def test_the_file_runs_an_edge(pyz: Path, tmp_path: Path) -> None:
    """Built with --scale, the file is an edge too (here with no bus and no primary to reach)."""
    flags = ("--role", "edge", "--bus-url", "unix:///nonexistent/r.sock",
             "--primary-url", "http://127.0.0.1:9")  # fmt: skip
    process = server_process(*flags, command=(PYTHON, str(pyz)), cwd=tmp_path, env={})
    with trio.fail_after(60):
        async with process as (_, url), httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("/")).status_code == 200
            answer = await http.get("/api/stocks/")
            assert answer.json()["code"] == "primary_unavailable"
