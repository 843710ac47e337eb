"""nginx in front of real servers, for the guides' tests (test_deploy.py, test_scaling_guide.py):
a guide's fenced blocks, a site run by the system's nginx with a certificate of the test's own,
and a client that reads a stream through it over TLS."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio_websocket

NAME = "market.example.com"


def blocks(guide: str, language: str) -> list[str]:
    """The guide's fenced blocks in `language`."""
    return [str(b) for b in re.findall(rf"^```{language}\n(.*?)^```", guide, flags=re.S | re.M)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        pytest.skip("nginx is not on this machine (scripts/install --test adds nginx-light)")
    return found


def nginx_config(tmp: Path, site: str, https: int, http: int | None = None) -> Path:
    """A guide's `site` in a minimal nginx.conf of its own, listening on this test's ports, with a
    certificate made for the test. The site's upstream servers are the caller's to move."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={NAME}", "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    if http is not None:
        site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
    site = re.sub(r"ssl_certificate +\S+;", f"ssl_certificate {tmp / 'cert.pem'};", site)
    site = re.sub(r"ssl_certificate_key +\S+;", f"ssl_certificate_key {tmp / 'key.pem'};", site)
    assert str(https) in site and "cert.pem" in site
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


@asynccontextmanager
async def running_nginx(conf: Path, https: int) -> AsyncIterator[None]:
    """`nginx -t` passes on `conf`, then nginx runs it until the block ends."""
    nginx, folder = nginx_binary(), conf.parent
    flags = ["-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")]
    checked = subprocess.run(
        [nginx, "-t", *flags], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr
    proc = await trio.lowlevel.open_process([nginx, *flags])
    try:
        with trio.fail_after(20):
            while True:
                try:
                    (await trio.open_tcp_stream("127.0.0.1", https)).socket.close()
                    break
                except OSError:
                    await trio.sleep(0.05)
        yield
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def insecure_tls() -> ssl.SSLContext:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE  # the test's own certificate
    return tls


@asynccontextmanager
async def wss(https: int, path: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A WebSocket through the proxy, over TLS, on a stream this closes."""
    tcp = await trio.open_tcp_stream("127.0.0.1", https)
    stream = trio.SSLStream(tcp, insecure_tls(), server_hostname=NAME)
    async with stream, trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, NAME, path)
        yield ws
        await ws.aclose()
        nursery.cancel_scope.cancel()


async def market_data_over_wss(https: int, symbol: str) -> dict[str, Any]:
    """A stream through the proxy, upgraded to a WebSocket over TLS: its first market_data."""
    async with wss(https, "/ws/market/") as ws:
        await ws.send_message(orjson.dumps({"type": "subscribe", "symbols": [symbol]}).decode())
        with trio.fail_after(10):
            while True:
                frame: dict[str, Any] = orjson.loads(await ws.get_message())
                if frame["type"] == "market_data":
                    return frame
