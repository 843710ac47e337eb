"""docs/deploy.md's files work: its settings file is read by marketsrv's own settings reader, its
systemd unit passes `systemd-analyze verify`, and its nginx site passes `nginx -t` and then runs,
in front of a real server: HTTPS, the redirect, WSS, and the paths it keeps to the machine."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest
import trio
import trio_websocket

from marketsrv.settings import SETTINGS, load
from tests.builders import REPO, ServerFactory

GUIDE = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
NAME = "market.example.com"


def block(language: str) -> str:
    """The guide's one fenced block in `language`."""
    found = re.findall(rf"^```{language}\n(.*?)^```", GUIDE, flags=re.S | re.M)
    assert len(found) == 1, (language, len(found))
    return str(found[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        pytest.skip("nginx is not on this machine (scripts/install --test adds nginx-light)")
    return found


def proxy_config(tmp: Path, upstream: int, https: int, http: int) -> Path:
    """The guide's site in a minimal nginx.conf of its own, moved to this test's ports and files."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={NAME}", "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = block("nginx")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
    site = re.sub(r"ssl_certificate +\S+;", f"ssl_certificate {tmp / 'cert.pem'};", site)
    site = re.sub(r"ssl_certificate_key +\S+;", f"ssl_certificate_key {tmp / 'key.pem'};", site)
    assert str(upstream) in site and str(https) in site and "cert.pem" in site
    (tmp / "site.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\ndaemon off;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} warn;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temps}\n    include {tmp / 'site.conf'};\n}}\n"
    )
    return main


async def test_the_nginx_site_proxies_https_and_wss(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    nginx = nginx_binary()
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
    conf = proxy_config(tmp_path, upstream, https, http)
    checked = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr

    proc = await trio.lowlevel.open_process(
        [nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
    )
    try:
        with trio.fail_after(20):
            while True:
                try:
                    (await trio.open_tcp_stream("127.0.0.1", https)).socket.close()
                    break
                except OSError:
                    await trio.sleep(0.05)
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # the test's own certificate
        headers = {"Host": NAME}
        async with httpx.AsyncClient(verify=tls, timeout=30) as client:
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
        # A stream through the proxy, upgraded to a WebSocket over TLS.
        tcp = await trio.open_tcp_stream("127.0.0.1", https)
        stream = trio.SSLStream(tcp, tls, server_hostname=NAME)
        async with stream, trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(nursery, stream, NAME, "/ws/market/")
            await ws.send_message(orjson.dumps({"type": "subscribe", "symbols": ["SCOM"]}).decode())
            with trio.fail_after(10):
                while True:
                    frame = orjson.loads(await ws.get_message())
                    if frame["type"] == "market_data":
                        break
            assert frame["data"]["symbol"] == "SCOM"
            await ws.aclose()
            nursery.cancel_scope.cancel()
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
