"""The command line: help, settings errors, --get, and a real process that serves and stops on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from marketsrv.cli import main
from tests.builders import REPO


def test_help_settings_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help-settings"]) == 0
    out = capsys.readouterr().out
    assert "`tick_interval_ms`" in out and "MARKETSRV_PORT" in out and "--universe" in out


@pytest.mark.parametrize(
    "argv",
    [["--port", "http"], ["--tick-interval-ms", "0"], ["--universe", "/nonexistent.json"]],
)
def test_bad_settings_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("marketsrv: ")


def test_unknown_environment_setting_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARKETSRV_PORTT", "1")
    assert main(["--help-settings"]) == 0  # reading the table needs no valid settings
    assert main(["--get", "/api/health/"]) == 2
    assert "unknown setting 'portt'" in capsys.readouterr().err


def test_get_makes_one_in_process_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--get", "/api/stocks/SCOM/", "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["symbol"] == "SCOM"
    assert main(["--get", "/api/stocks/NOPE/"]) == 1


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_process_serves_and_stops_gracefully(signum: int, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "marketsrv", "--port", "0", "--seed", "4"]
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=_env()
        )
        assert proc.stdout is not None
        output = b""
        try:
            while b"listening on http://" not in output:
                chunk = await proc.stdout.receive_some()
                assert chunk, f"server exited early: {output.decode()}"
                output += chunk
            line = output.decode().split("listening on ", 1)[1].split()[0]
            assert line.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient(base_url=line, timeout=5) as http:
                assert (await http.get("/api/health/")).json()["status"] == "ok"
            proc.send_signal(signum)
            with trio.fail_after(5):  # graceful shutdown takes well under this
                code = await proc.wait()
            assert code == 0, output.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
