"""The command line: help, settings errors, --get, and a real process that serves and stops on signals."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import httpx
import pytest
import trio
import trio_websocket

from marketsrv.cli import main
from tests.builders import server_process


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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_process_serves_and_stops_gracefully(signum: int) -> None:
    with trio.fail_after(30):
        async with server_process("--seed", "4") as (proc, url):
            assert url.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient(base_url=url, timeout=5) as http:
                assert (await http.get("/api/health/")).json()["status"] == "ok"
            proc.send_signal(signum)
            with trio.fail_after(5):  # graceful shutdown takes well under this
                assert await proc.wait() == 0


async def test_shutdown_does_not_wait_for_stuck_or_idle_clients() -> None:
    """SIGTERM with an idle client and one that stopped reading: the process still exits soon."""
    flags = ("--seed", "4", "--graceful-timeout-s", "1", "--stream-interval-ms", "20",
             "--tick-interval-ms", "20")  # fmt: skip
    with trio.fail_after(60):
        async with server_process(*flags) as (proc, url), trio.open_nursery() as nursery:
            host, port = url.removeprefix("http://").split(":")
            streams = []
            for rcvbuf in (None, 4096):  # an idle client, then one that stops reading
                sock = trio.socket.socket()
                if rcvbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
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
                    assert await proc.wait() == 0
            nursery.cancel_scope.cancel()


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
