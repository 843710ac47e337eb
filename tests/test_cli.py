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
from tests.builders import demo_token, register, run_cli, server_process


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


async def test_a_busy_port_is_one_clear_line_and_status_2(tmp_path: Path) -> None:
    db = str(tmp_path / "first.db")
    async with server_process("--database", db) as (_, url):
        port = url.rsplit(":", 1)[1]
        code, out = await run_cli("--port", port, "--database", str(tmp_path / "second.db"))
    assert code == 2
    assert out.strip().splitlines() == [out.strip()], out  # one line: no traceback, no banner
    assert f"port {port}" in out and "--port 0" in out


async def test_a_database_in_use_is_one_clear_line_and_status_2(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    async with server_process("--database", db):
        code, out = await run_cli("--port", "0", "--database", db)
    assert code == 2
    assert out.strip().splitlines() == [out.strip()], out
    assert "in use by another marketsrv" in out and "demo user" not in out


async def test_a_database_too_new_or_unreadable_is_one_clear_line(tmp_path: Path) -> None:
    import sqlite3

    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    not_sqlite = tmp_path / "junk.db"
    not_sqlite.write_bytes(b"this is not a database file at all" * 100)
    for path in (newer, not_sqlite, tmp_path / "missing-dir-is-a-file" / "x.db"):
        if path.parent.name == "missing-dir-is-a-file":
            path.parent.write_text("a file where the folder should be")
        code, out = await run_cli("--get", "/api/health/", "--database", str(path))
        assert code == 2, out
        assert out.strip().splitlines() == [out.strip()], out
        assert out.startswith("marketsrv: ") and "Traceback" not in out


async def test_logging_is_set_up_before_the_books_are_reloaded(tmp_path: Path) -> None:
    db = str(tmp_path / "reload.db")
    async with server_process("--database", db, "--demo-user", "on") as (proc, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            headers = {"Authorization": f"Bearer {await demo_token(http)}"}
            book = (await http.get("/api/stocks/SCOM/orderbook/?depth=1")).json()
            body = {
                "symbol": "SCOM",
                "side": "buy",
                "quantity": 1,
                "price": round(book["bids"][0]["price"] - 1, 2),  # a shilling under: it rests
            }
            placed = await http.post("/api/trading/orders/", json=body, headers=headers)
            assert placed.json()["status"] in ("pending", "partially_filled", "executed")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await proc.wait()
    if placed.json()["status"] == "executed":
        pytest.skip("the simulated flow filled the order before the restart")
    code, out = await run_cli("--get", "/api/health/", "--database", db)
    assert code == 0 and "1 open orders back in the books" in out, out


async def test_the_access_log_has_one_line_a_request() -> None:
    async with server_process("--access-log", "--no-simulate") as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        for _ in range(10):  # as curl does: read the answer, hang up at once
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(
                    b"POST /api/trading/orders/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                )
                with trio.fail_after(10):
                    while b"}" not in await stream.receive_some():
                        pass
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        output = b""
        with trio.fail_after(10):
            while chunk := await proc.stdout.receive_some():
                output += chunk
    lines = [line for line in output.decode().splitlines() if "POST /api/trading/orders/" in line]
    assert len(lines) == 10 and all('" 401 ' in line for line in lines), lines


async def test_scripts_serve_runs_where_the_user_is(tmp_path: Path) -> None:
    """Relative paths are the user's: scripts/serve must not move to the repository first."""
    import subprocess

    from tests.builders import REPO

    universe = tmp_path / "mine.json"
    universe.write_text(
        json.dumps({"instruments": [{"symbol": "ABC", "reference_price": 10, "tick_size": 0.05}]})
    )
    with trio.fail_after(120):  # may install the runtime the first time
        done = await trio.run_process(
            [str(REPO / "scripts" / "serve"), "--get", "/api/stocks/ABC/", "--universe",
             "mine.json", "--database", "here/x.db", "--no-simulate"],
            cwd=tmp_path, capture_stdout=True, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout.decode()
    assert json.loads(done.stdout.decode().strip().splitlines()[-1])["symbol"] == "ABC"
    assert (tmp_path / "here" / "x.db").exists()


async def test_the_universe_files_currency_is_the_servers(tmp_path: Path) -> None:
    universe = tmp_path / "ug.json"
    universe.write_text(
        json.dumps(
            {
                "currency": "UGX",
                "instruments": [{"symbol": "MTNU", "reference_price": 200, "tick_size": 1}],
            }
        )
    )
    db = str(tmp_path / "ug.db")
    async with (
        server_process("--universe", str(universe), "--database", db) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        assert (await http.get("/api/stocks/MTNU/")).json()["currency"] == "UGX"
        wallet = await http.get("/api/trading/wallet/", headers=await register(http, "kampala"))
        assert wallet.json()["currency"] == "UGX"
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "currency": "shillings",
                "instruments": [{"symbol": "A", "reference_price": 1, "tick_size": 0.01}],
            }
        )
    )
    code, out = await run_cli("--get", "/api/health/", "--universe", str(bad), "--database", db)
    assert code == 2 and "currency" in out
