"""Demo scenarios on a real server: `marketsrv scenario` from the shell, the admin REST endpoint
and who may use it, and what clients see (orders refused, the streams saying halted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from marketsrv.users_cli import create_user, set_admin
from storage import Database
from tests.builders import REPO, ServerFactory, next_of, open_ws, register, send, server_process


async def scenario(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")}
    env["MARKETSRV_DATABASE"] = os.environ["MARKETSRV_DATABASE"]
    return await trio.run_process(
        [sys.executable, "-m", "marketsrv", "scenario", *args],
        capture_stdout=True, capture_stderr=True, check=False, cwd=REPO, env=env,
    )  # fmt: skip


async def test_scenario_halt_from_the_shell_halts_the_symbol_and_resume_undoes_it(
    isolated_database: Path,
) -> None:
    async with server_process("--seed", "4", "--history-days", "3") as (proc, url):
        assert Path(f"{isolated_database}.operator-token").stat().st_mode & 0o777 == 0o600
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            headers = await register(http, "watcher", cash=100_000)
            async with open_ws(url, "/ws/market/") as ws:
                await send(ws, {"type": "subscribe", "symbols": ["SCOM"]})
                await next_of(ws, "market_data", symbol="SCOM", state="open")

                halted = await scenario("halt", "scom")  # the token file names the server
                assert halted.returncode == 0, halted.stderr
                assert b"halted SCOM" in halted.stdout
                state = await next_of(ws, "market_state")
                assert state["data"]["halted"] == {"SCOM": "trading halted by the operator"}
                await next_of(ws, "market_data", symbol="SCOM", state="halted")

                body = {"symbol": "SCOM", "side": "buy", "quantity": 10, "price": 28.0}
                refused = await http.post("/api/trading/orders/", json=body, headers=headers)
                assert refused.status_code == 409 and refused.json()["code"] == "symbol_halted"
                book = (await http.get("/api/stocks/SCOM/orderbook/")).json()
                assert book["bids"] and book["asks"]  # the book stays visible
                other = {"symbol": "KCB", "side": "buy", "quantity": 10, "price": 50.0}
                placed = await http.post("/api/trading/orders/", json=other, headers=headers)
                assert placed.status_code == 201  # only SCOM is halted

                resumed = await scenario("resume", "SCOM", "--url", url)
                assert resumed.returncode == 0 and b"halted: none" in resumed.stdout
                await next_of(ws, "market_data", symbol="SCOM", state="open")
                placed = await http.post("/api/trading/orders/", json=body, headers=headers)
                assert placed.status_code == 201, placed.text

            unknown = await scenario("halt", "NOPE", "--url", url)
            assert unknown.returncode == 1 and b"Unknown symbol" in unknown.stderr
            status = await scenario("status", "--url", url)
            assert b"market open" in status.stdout
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    assert not Path(f"{isolated_database}.operator-token").exists()
    refused = await scenario("status", "--url", url)
    assert refused.returncode == 2 and b"operator token" in refused.stderr


async def test_only_admins_and_the_operator_may_run_scenarios(
    start_server: ServerFactory,
) -> None:
    url, runtime = await start_server(seed=6)
    assert runtime.simulator is not None
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        user = await register(http, "plain")
        path = "/api/admin/scenarios/"
        jump = {"scenario": "jump", "symbols": ["KCB"], "percent": 3}
        assert (await http.post(path, json=jump)).status_code == 401
        forbidden = await http.post(path, json=jump, headers=user)
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "not_admin"

        await trio.to_thread.run_sync(set_admin, runtime.trading().store.db, "plain", True)
        fair = runtime.simulator.agents["KCB"].log_fair
        answer = await http.post(path, json=jump, headers=user)
        assert answer.status_code == 200, answer.text
        assert answer.json()["detail"] == "jump on KCB"
        assert runtime.simulator.agents["KCB"].log_fair > fair
        me = (await http.get("/api/accounts/me/", headers=user)).json()
        assert me["is_admin"] is True

        operator = {"Authorization": f"Bearer {runtime.operator_token}"}
        for bad, code in (
            ({"scenario": "explode"}, "unknown_scenario"),
            ({"scenario": "jump", "percent": 0}, "invalid_percent"),
            ({"scenario": "volatile", "factor": -1}, "invalid_factor"),
            ({"scenario": "drought", "duration_s": 0}, "invalid_duration_s"),
            ({"scenario": "halt", "symbols": ["ZZZ"]}, "unknown_symbol"),
            ({"scenario": 5}, "invalid_scenario"),
            ({"scenario": "jump", "percent": True}, "invalid_percent"),
            ({"scenario": "drought", "duration_s": True}, "invalid_duration_s"),
            ({"scenario": "flash_crash", "percent": 90}, "invalid_percent"),
        ):
            refused = await http.post(path, json=bad, headers=operator)
            assert refused.status_code == 400 and refused.json()["code"] == code, refused.text
        drought = {"scenario": "drought", "symbols": ["EQTY"], "duration_s": 30}
        assert (await http.post(path, json=drought, headers=operator)).status_code == 200
        assert runtime.simulator.agents["EQTY"].regime.levels == 2
        state = (await http.get(path, headers=operator)).json()["market"]
        assert state["regimes"]["EQTY"]["regime"] == "drought"
        assert 0 < state["regimes"]["EQTY"]["seconds_left"] <= 30
        assert "KCB" not in state["regimes"]  # a jump leaves nothing running


def test_a_demo_user_is_an_admin_only_when_the_setting_says_so(tmp_path: Path) -> None:
    from marketsrv.users_cli import ensure_demo_user

    db = Database(tmp_path / "d.db")
    db.open()
    try:
        ensure_demo_user(db)
        role = "SELECT is_admin FROM users WHERE username = 'demo'"
        assert db.read(lambda c: c.execute(role).fetchone()[0]) == 0
        ensure_demo_user(db, admin=True)  # an existing account's role is not the setting's
        assert db.read(lambda c: c.execute(role).fetchone()[0]) == 0
        set_admin(db, "demo", True)
        ensure_demo_user(db)  # nor is a role given by hand taken back
        assert db.read(lambda c: c.execute(role).fetchone()[0]) == 1
    finally:
        db.close()
    db = Database(tmp_path / "e.db")
    db.open()
    try:
        ensure_demo_user(db, admin=True)
        assert db.read(lambda c: c.execute(role).fetchone()[0]) == 1
        assert create_user(db, "x-admin", "pw-secret", 0)
    finally:
        db.close()
