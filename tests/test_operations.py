"""What operators use: /metrics, /-/settings.json, /-/versions.json and who may read them, the
docs pages, structured logs, `marketsrv backup` under load, and the database's migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from storage import MIGRATIONS, SCHEMA_VERSION
from tests.builders import (
    ServerFactory,
    check_invariants,
    next_of,
    open_ws,
    register,
    run_cli,
    send,
    server_process,
)


def samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus exposition: `name{label="v",...}` -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


async def test_metrics_parse_and_move_under_load(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        auth = await register(http, "scraped", cash=1_000_000)
        before = await scrape(http)
        assert before['marketsrv_ws_connections{stream="market"}'] == 0
        async with open_ws(url, "/ws/market/") as ws:
            await send(ws, {"type": "subscribe", "symbols": ["SCOM"]})
            await next_of(ws, "market_data")
            buy = {"symbol": "SCOM", "side": "buy", "quantity": 10, "order_type": "market"}
            for _ in range(5):
                placed = await http.post("/api/trading/orders/", json=buy, headers=auth)
                assert placed.status_code == 201, placed.text
            bad = await http.post("/api/trading/orders/", json={**buy, "quantity": 0}, headers=auth)
            assert bad.json()["code"] == "invalid_quantity"
            await next_of(ws, "market_data")
            during = await scrape(http)
        after = await scrape(http)

    assert during['marketsrv_ws_connections{stream="market"}'] == 1
    assert after['marketsrv_ws_connections{stream="market"}'] == 0
    moved = {name: during[name] - before.get(name, 0) for name in during}
    assert moved["marketsrv_orders_accepted_total"] == 5
    assert moved['marketsrv_orders_rejected_total{reason="invalid_quantity"}'] == 1
    assert moved["marketsrv_fills_total"] >= 5  # each market buy filled at least once
    assert moved["marketsrv_ws_frames_sent_total"] >= 2
    assert moved["marketsrv_ws_bytes_sent_total"] > 100
    assert moved["marketsrv_storage_commit_seconds_count"] >= 5
    assert moved["marketsrv_storage_commit_batch_size_sum"] >= 5
    assert moved["marketsrv_simulator_ticks_total"] > 0
    assert during["marketsrv_simulator_tick_lag_seconds_count"] > 0
    assert during["process_resident_memory_bytes"] > 0
    assert during['marketsrv_info{version="0.1.0"}'] == 1


async def test_who_may_read_the_operator_endpoints(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    paths = ("/metrics", "/-/settings.json", "/-/versions.json")
    proxied = {"X-Forwarded-For": "203.0.113.7"}
    url, _ = await start_server()  # loopback, the default
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for path in paths:
            assert (await http.get(path)).status_code == 200, path
            for headers in (proxied, {"Forwarded": "for=203.0.113.7"}, {"X-Real-IP": "1.2.3.4"}):
                refused = await http.get(path, headers=headers)
                assert refused.status_code == 403, (path, headers)
                assert refused.json()["code"] == "operator_only"
    url, _ = await start_server(operator_endpoints="off", database=str(tmp_path / "off.db"))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for path in paths:
            assert (await http.get(path)).json()["code"] == "not_found", path
    url, _ = await start_server(operator_endpoints="on", database=str(tmp_path / "on.db"))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for path in paths:
            assert (await http.get(path, headers=proxied)).status_code == 200, path
    # Behind one trusted proxy the client is the header's: remote is refused, this machine not.
    url, _ = await start_server(proxy_hops=1, database=str(tmp_path / "1.db"))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert (await http.get("/metrics", headers=proxied)).status_code == 403
        local = await http.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert local.status_code == 200


async def test_settings_and_versions(start_server: ServerFactory) -> None:
    url, runtime = await start_server(cors_origins="https://ops:hunter2@example.com,https://a.b")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        settings = (await http.get("/-/settings.json")).json()["settings"]
        versions = (await http.get("/-/versions.json")).json()
    assert settings["cors_origins"] == "https://ops:[redacted]@example.com,https://a.b"
    assert "hunter2" not in orjson.dumps(settings).decode()
    assert settings["tick_interval_ms"] == runtime.settings.tick_interval_ms
    assert set(settings) == set(vars(runtime.settings))
    assert versions["marketsrv"] == "0.1.0" and versions["schema_version"] == SCHEMA_VERSION
    assert versions["sqlite"] == sqlite3.sqlite_version
    assert versions["packages"]["trio"][0].isdigit()


async def test_the_docs_pages(start_server: ServerFactory) -> None:
    url, _ = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        document = (await http.get("/api/openapi.json")).json()
        docs = await http.get("/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in docs.headers["content-security-policy"]
        for path, operations in document["paths"].items():
            assert f"<code>{path}</code>" in docs.text, path
            for operation in operations.values():
                assert f'id="{operation["operationId"]}"' in docs.text
        assert "insufficient_funds" in docs.text and 'id="schema-OrderOut"' in docs.text
        protocol = await http.get("/docs/protocol")
        assert protocol.status_code == 200
        for word in ("order_book_update", "4008", "resync_required", "chat.message"):
            assert word in protocol.text, word
        assert "operator_endpoints" in (await http.get("/docs/settings")).text
        assert "proxy_read_timeout" in (await http.get("/docs/deploy")).text
        assert "primary_url" in (await http.get("/docs/scaling")).text
        assert (await http.get("/docs/nothing")).json()["code"] == "not_found"
        assert (await http.get("/static/css/docs.css")).status_code == 200

        index = (await http.get("/api/")).json()
        assert index["docs"] == "/docs" and index["openapi"] == "/api/openapi.json"
        # A person who types a wrong address gets a page that points at the docs; a program,
        # and anything under /api/, gets the JSON error, which names them too.
        browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        for nowhere in ("/nowhere", "/docs/nothing"):
            lost = await http.get(nowhere, headers=browser)
            assert lost.status_code == 404 and 'href="/docs"' in lost.text
            assert lost.headers["content-type"].startswith("text/html")
        for path, headers in (("/nowhere", {}), ("/api/nowhere", browser)):
            answer = await http.get(path, headers=headers)
            assert answer.status_code == 404 and "/docs" in answer.json()["message"]


async def read_until(proc: trio.Process, needle: bytes, output: bytearray) -> None:
    assert proc.stdout is not None
    with trio.fail_after(20):
        while needle not in output:
            chunk = await proc.stdout.receive_some()
            assert chunk, output.decode()
            output += chunk


async def stop(proc: trio.Process, output: bytearray) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    with trio.fail_after(20):
        while chunk := await proc.stdout.receive_some():
            output += chunk
        await proc.wait()
    return output.decode()


async def test_json_logs_with_and_without_the_access_log(tmp_path: Path) -> None:
    for access in ("--access-log", "--no-access-log"):
        db = str(tmp_path / f"{access}.db")
        output = bytearray()
        async with server_process(
            "--log-format", "json", access, "--database", db, "--no-simulate"
        ) as (proc, url):
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                assert (await http.get("/api/stocks/SCOM/?probe=1")).status_code == 200
                assert (await http.get("/api/nothing/")).status_code == 404
            if access == "--access-log":
                await read_until(proc, b"/api/nothing/", output)
            text = await stop(proc, output)
        lines = text.splitlines()
        if lines and not lines[0].startswith("{"):
            lines = lines[1:]  # the end of the line server_process stopped reading in
        records = []
        for line in lines:
            if line.startswith(("listening on", "demo user")):
                continue  # what the command prints for people, on stdout
            records.append(orjson.loads(line))  # every log line is one JSON object
        assert any("SIGTERM received" in r["message"] for r in records)
        access_lines = [r for r in records if r["logger"] == "marketsrv.access"]
        if access == "--no-access-log":
            assert access_lines == []
            continue
        by_path = {r["path"]: r for r in access_lines}
        probe = by_path["/api/stocks/SCOM/?probe=1"]
        assert probe["status"] == 200 and probe["method"] == "GET" and probe["bytes"] > 0
        assert probe["client"] == "127.0.0.1" and probe["level"] == "info"
        assert by_path["/api/nothing/"]["status"] == 404


async def test_backup_of_a_live_server_under_order_load(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    copies = [tmp_path / "first.db", tmp_path / "second.db"]
    answers: list[int] = []
    async with (
        server_process("--database", str(db)) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        traders = [await register(http, f"trader{i}", cash=500_000) for i in range(4)]
        stop_load = trio.Event()

        async def trade(auth: dict[str, str]) -> None:
            for n in range(10**6):  # buy, buy, sell: holdings, holds and cash all move
                if stop_load.is_set():
                    return
                side = "sell" if n % 3 == 2 else "buy"
                body = {"symbol": "SCOM", "side": side, "quantity": 1, "order_type": "market"}
                answer = await http.post("/api/trading/orders/", json=body, headers=auth)
                answers.append(answer.status_code)

        async with trio.open_nursery() as nursery:
            for auth in traders:
                nursery.start_soon(trade, auth)
            with trio.fail_after(30):
                while len(answers) < 20:
                    await trio.sleep(0.01)
            for copy in copies:
                code, out = await run_cli("backup", str(copy), "--database", str(db))
                assert code == 0, out
                assert "integrity ok" in out and str(copy) in out
            stop_load.set()
        during = len(answers)
        # The server still takes orders after the copies.
        again = await http.post(
            "/api/trading/orders/",
            json={"symbol": "KCB", "side": "buy", "quantity": 1, "order_type": "market"},
            headers=traders[0],
        )
        assert again.status_code == 201
    assert during >= 20 and set(answers) <= {201, 400}, set(answers)
    for copy in copies:
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] > 0
        conn.close()
        check_invariants(copy)  # the ledger, holds and holdings agree in the copy
    # It never overwrites by surprise, and says why it cannot copy.
    code, out = await run_cli("backup", str(copies[0]), "--database", str(db))
    assert code == 2 and "exists" in out and "--force" in out
    code, out = await run_cli(
        "backup", str(tmp_path / "x.db"), "--database", str(tmp_path / "no.db")
    )
    assert code == 2 and "no database" in out and "Traceback" not in out
    code, _ = await run_cli("backup", str(copies[0]), "--database", str(db), "--force")
    assert code == 0


def old_database(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    for n, script in enumerate(MIGRATIONS[:version], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {n};\nCOMMIT;")
    conn.close()


@pytest.mark.parametrize(
    ("version", "said"),
    [
        (None, f"created (schema version {SCHEMA_VERSION})"),
        (4, f"schema version 4, migrated to {SCHEMA_VERSION}"),
        (SCHEMA_VERSION, f"schema version {SCHEMA_VERSION} (current)"),
    ],
)
async def test_the_start_says_what_it_did_to_the_database(
    tmp_path: Path, version: int | None, said: str
) -> None:
    db = tmp_path / "m.db"
    if version is not None:
        old_database(db, version)
    code, out = await run_cli("--get", "/api/health/", "--database", str(db))
    assert code == 0, out
    assert said in out


async def test_a_newer_database_is_refused_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    conn.close()
    for argv in (("--get", "/api/health/"), ("users", "create", "zed")):
        code, out = await run_cli(*argv, "--database", str(db))
        assert code == 2 and "Traceback" not in out, out
        assert "newer marketsrv" in out and "restore a backup" in out, out
    negative = tmp_path / "negative.db"
    conn = sqlite3.connect(negative)
    conn.execute("PRAGMA user_version = -1")
    conn.close()
    code, out = await run_cli("--get", "/api/health/", "--database", str(negative))
    assert code == 2 and "not a marketsrv database" in out and "Traceback" not in out
    code, out = await run_cli("--get", "/api/health/", "--database", "")
    assert code == 2 and "database must name a file" in out, out
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 100)
    code, out = await run_cli("--get", "/api/health/", "--database", str(junk))
    assert code == 2 and "not a SQLite file" in out and "Traceback" not in out


def test_a_backup_never_lands_on_the_database_or_its_files(tmp_path: Path) -> None:
    from storage import Database, StorageError
    from storage.backup import backup

    db = Database(tmp_path / "live.db")
    db.open()
    db.write(
        lambda c: c.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES ('aaa', 'x', 0)"
        )
    )
    before = db.read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0])
    try:
        link = tmp_path / "link.db"
        link.symlink_to(tmp_path / "live.db")
        hard = tmp_path / "hard.db"
        os.link(tmp_path / "live.db", hard)
        for target in (
            "live.db",
            "live.db-wal",
            "live.db-shm",
            "live.db.lock",
            "link.db",
            "hard.db",
        ):
            with pytest.raises(StorageError, match="database or one of its own files"):
                backup(tmp_path / "live.db", tmp_path / target, overwrite=True)
        with pytest.raises(StorageError, match="is a folder"):
            backup(tmp_path / "live.db", tmp_path, overwrite=True)
        with pytest.raises(StorageError, match="no folder"):
            backup(tmp_path / "live.db", tmp_path / "nowhere" / "x.db")
        done = backup(tmp_path / "live.db", tmp_path / "copy.db")
        assert (
            done.bytes > 0
            and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
        )
        count = db.read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0])
        assert count == before  # the live database is whole
    finally:
        db.close()


async def test_lag_slow_clients_and_private_events_show_in_the_metrics(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(ws_slow_client_timeout_s=1.0)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        before = await scrape(http)
        # The event loop blocked for 0.6 s: the lag probe (every 0.25 s) wakes at least 0.35 s late.
        time.sleep(0.6)
        lagged = await scrape(http)
        over = 'marketsrv_event_loop_lag_seconds_bucket{le="0.25"}'
        total = "marketsrv_event_loop_lag_seconds_count"
        assert (lagged[total] - lagged[over]) - (before[total] - before[over]) >= 1

        # A client that never reads: its updates are conflated, then it is closed as slow.
        async with open_ws(url, "/ws/market/", rcvbuf=4096) as ws:
            symbols = ["SCOM", "KCB", "EQTY", "EABL", "ABSA", "COOP", "NCBA", "SCBK"]
            await send(
                ws, {"type": "subscribe", "symbols": symbols, "order_book": True, "depth": 50}
            )
            with trio.fail_after(30):
                while True:
                    now = await scrape(http)
                    conflated = now["marketsrv_ws_updates_conflated_total"]
                    slow = now["marketsrv_ws_slow_closed_total"]
                    if conflated > before["marketsrv_ws_updates_conflated_total"] and slow > 0:
                        break
                    await trio.sleep(0.1)

        # A private event delivered to a /ws/user/ socket.
        auth = await register(http, "private", cash=100_000)
        token = auth["Authorization"].split()[1]
        async with open_ws(url, f"/ws/user/?token={token}") as ws:
            await http.post("/api/trading/wallet/", json={"amount": 5}, headers=auth)
            await next_of(ws, "wallet")
            delivered = await scrape(http)
        assert delivered["marketsrv_user_events_delivered_total"] >= 1
        assert delivered['marketsrv_ws_connections{stream="user"}'] == 1


async def test_forwarded_addresses_and_cross_site_pages(start_server: ServerFactory) -> None:
    url, _ = await start_server(proxy_hops=2)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        # Two trusted proxies: the client is the second address from the right.
        ok = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1, 10.0.0.1"}
        assert (await http.get("/metrics", headers=ok)).status_code == 200
        for unusable in ("203.0.113.7", ",", ", 127.0.0.1"):
            answer = await http.get("/metrics", headers={"X-Forwarded-For": unusable})
            assert answer.status_code == 403, unusable  # unknown, never the proxy's own address
        for page in ({"Origin": "http://localhost:3000"}, {"Sec-Fetch-Site": "cross-site"}):
            answer = await http.get("/-/settings.json", headers=page)
            assert answer.json()["code"] == "operator_only", page
        assert (await http.get("/metrics", headers={"Sec-Fetch-Site": "none"})).status_code == 200


def test_loopback_addresses() -> None:
    from marketsrv.api.hosts import is_loopback

    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost"):
        assert is_loopback(address), address
    for address in ("", "10.0.0.1", "::ffff:10.0.0.1", "0.0.0.0", "localhost.evil.com", "::"):
        assert not is_loopback(address), address


def test_the_access_log_redacts_tokens_however_named_and_keeps_lines_whole() -> None:
    from marketsrv.api.access_log import MAX_AGENT, _clean, _redact

    for query in ("token=abc", "TOKEN=abc", "%74oken=abc", "to%6Ben=abc&x=1", "x=1&token=abc"):
        assert "abc" not in _redact(query), query
    assert _redact("symbol=SCOM&tokens=2") == "symbol=SCOM&tokens=2"
    assert _clean("a\x1b[31mb\nc", 100) == "a\\x1b[31mb\\x0ac"
    assert len(_clean("x" * 100_000, MAX_AGENT)) == MAX_AGENT + 1


def test_forwarded_addresses_must_be_addresses() -> None:
    from marketsrv.api.proxy import _address

    assert _address("203.0.113.9") == "203.0.113.9" and _address("2001:db8::1") == "2001:db8::1"
    for bad in ("localhost", "garbage", "1.2.3.4:5678", "[2001:db8::1]:443", ""):
        assert _address(bad) == "", bad


async def test_the_subcommands_read_the_config_file_the_server_reads(tmp_path: Path) -> None:
    """MARKETSRV_CONFIG (as the systemd unit and the cron line of docs/deploy.md set it) names
    the database for `users` and `backup` as for the server: not a new one in the folder."""
    db = tmp_path / "live" / "marketsrv.db"
    config = tmp_path / "marketsrv.toml"
    config.write_text(f'database = "{db}"\n')
    env = {"MARKETSRV_CONFIG": str(config)}
    code, out = await run_cli("--get", "/api/health/", env=env, cwd=tmp_path)
    assert code == 0 and db.exists(), out
    code, out = await run_cli("users", "create", "configured", env=env, cwd=tmp_path)
    assert code == 0 and str(db) in out, out
    code, out = await run_cli("backup", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)
    assert code == 0 and "integrity ok" in out, out
    conn = sqlite3.connect(tmp_path / "copy.db")
    assert conn.execute("SELECT 1 FROM users WHERE username = 'configured'").fetchone()
    conn.close()
    assert not (tmp_path / "data").exists()  # nothing went to the default database
