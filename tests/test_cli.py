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
    env["MARKETSRV_DATABASE"] = os.environ["MARKETSRV_DATABASE"]  # the test's own (conftest)
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


async def test_shutdown_does_not_wait_for_stuck_or_idle_clients() -> None:
    """SIGTERM with an idle client and one that stopped reading: the process still exits soon."""
    import socket as stdlib_socket

    import trio_websocket

    cmd = [sys.executable, "-m", "marketsrv", "--port", "0", "--seed", "4",
           "--graceful-timeout-s", "1", "--stream-interval-ms", "20", "--tick-interval-ms", "20"]  # fmt: skip
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=_env()
        )
        assert proc.stdout is not None
        output = b""
        try:
            while b"listening on http://" not in output:
                chunk = await proc.stdout.receive_some()
                assert chunk, output.decode()
                output += chunk
            url = output.decode().split("listening on ", 1)[1].split()[0]
            host, port = url.removeprefix("http://").split(":")
            async with trio.open_nursery() as nursery:
                streams = []
                for rcvbuf in (None, 4096):  # an idle client, then one that stops reading
                    sock = trio.socket.socket()
                    if rcvbuf:
                        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, rcvbuf)
                    await sock.connect((host, int(port)))
                    streams.append(trio.SocketStream(sock))
                async with streams[0], streams[1]:
                    idle, stuck = [
                        await trio_websocket.wrap_client_stream(
                            nursery, stream, host, "/ws/market/", message_queue_size=1
                        )
                        for stream in streams
                    ]
                    await stuck.send_message(
                        '{"type":"subscribe","symbols":["SCOM","KCB","EQTY","EABL","BAT"],'
                        '"order_book":true,"depth":50,"trades":true}'
                    )
                    await idle.send_message('{"type":"ping"}')
                    await idle.get_message()  # both connected and served
                    # Not a timing assumption: the process must exit soon whether or not the
                    # stuck client's buffers have filled by now; this only makes it likely.
                    await trio.sleep(1)
                    proc.send_signal(signal.SIGTERM)
                    with trio.fail_after(8):
                        code = await proc.wait()
                    assert code == 0, output.decode()
                nursery.cancel_scope.cancel()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_users_create(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "u.db")
    assert (
        main(
            [
                "users",
                "create",
                "ann",
                "bob",
                "--password",
                "pw-123456",
                "--deposit",
                "2500.50",
                "--database",
                db,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == ["created ann", "created bob"]
    assert main(["users", "create", "ann", "--database", db]) == 1  # taken
    assert "taken" in capsys.readouterr().err
    assert main(["users", "create", "x", "--database", db]) == 1  # too short a name
    assert main(["users", "create", "cy", "--deposit", "1.001", "--database", db]) == 2
    import sqlite3

    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT u.username, w.balance_cents FROM users u JOIN wallets w ON w.user_id = u.id ORDER BY u.id"
    ).fetchall()
    conn.close()
    assert rows == [("ann", 250050), ("bob", 250050)]
