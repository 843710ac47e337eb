"""A fresh server per point: marketsrv, or the Django Channels peer through its run.sh.

Each server runs in its own session (so a Ctrl-C on the benchmark reaches only the benchmark,
which then stops the server), logs to files in scratch, and must print its ready line within
`ready_timeout` seconds, or the start fails with `ServerError` (the point fails, not the run).
`Server.stop()` is bounded: SIGTERM, a wait, then SIGKILL.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .env import run_logged

HOST = "127.0.0.1"
WS_PATH = "/ws/market/"


class ServerError(Exception):
    """The server did not start; the message carries the tail of its log."""


@dataclass
class Server:
    name: str  # "marketsrv" or "daphne"
    port: int
    proc: subprocess.Popen[bytes]
    pids: dict[str, int]  # what the load generator samples: server=..., redis=...
    log: Path
    startup_s: float
    extra_pids: list[int] = field(default_factory=list)  # killed by PID if still alive at stop

    def stop(self, timeout: float = 15.0) -> str | None:
        """Stop it; returns a note when it did not stop cleanly on the first SIGTERM."""
        note = terminate(self.proc, timeout)
        for pid in self.extra_pids:  # run.sh stops these itself; this is the fallback
            if alive(pid):
                kill_pid(pid, timeout=5.0)
                note = (note + "; " if note else "") + f"pid {pid} outlived run.sh"
        return note


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """SIGTERM and wait; then a second SIGTERM (marketsrv: stop now) and 5 s; then SIGKILL."""
    if proc.poll() is not None:
        return None
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return None
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5.0)
        how = "a second SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5.0)
        how = "SIGKILL"
    return (
        f"did not stop within {timeout:.0f} s of SIGTERM; stopped by {how} after "
        f"{time.monotonic() - t0:.0f} s"
    )


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_pid(pid: int, timeout: float) -> None:
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(path: Path, n: int = 3) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(" ".join(ln.split()) for ln in lines[-n:]) + f" (log: {path})"


def wait_for_line(
    proc: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], timeout: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = pattern.search(log.read_text(errors="replace"))
        except OSError:
            m = None
        if m:
            return m
        if proc.poll() is not None:
            raise ServerError(f"exited with {proc.returncode} before it was ready: {tail(log)}")
        time.sleep(0.1)
    raise ServerError(f"no ready line within {timeout:.0f} s: {tail(log)}")


def spawn(
    cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start cmd in its own session (a Ctrl-C reaches only the benchmark), output to `log`."""
    with open(log, "wb") as f:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def start_marketsrv(
    binary: Path,
    args: list[str],
    logdir: Path,
    ready_timeout: float,
    log_name: str = "marketsrv.log",
) -> Server:
    log = logdir / log_name
    t0 = time.monotonic()
    proc = spawn([str(binary), *args], log)
    try:
        m = wait_for_line(
            proc, log, re.compile(r"listening on http://127\.0\.0\.1:(\d+)"), ready_timeout
        )
    except BaseException:
        terminate(proc, 10.0)
        raise
    return Server(
        "marketsrv",
        int(m.group(1)),
        proc,
        {"server": proc.pid},
        log,
        round(time.monotonic() - t0, 2),
    )


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def create_marketsrv_users(
    binary: Path,
    database: Path,
    names: list[str],
    password: str,
    deposit: str,
    log: Path,
    timeout: float,
) -> float:
    """`marketsrv users create NAME... --password P --deposit D --database DB`; returns its
    seconds. Raises ServerError (with the tail of `log`) when it fails or overruns `timeout`."""
    t0 = time.monotonic()
    cmd = [str(binary), "users", "create", *names, "--password", password]
    cmd += ["--deposit", deposit, "--database", str(database)]
    rc = run_logged(cmd, log, timeout)
    if rc is None:
        raise ServerError(f"users create took more than {timeout:.0f} s: {tail(log)}")
    if rc != 0:
        raise ServerError(f"users create exited with {rc}: {tail(log)}")
    return round(time.monotonic() - t0, 2)


def start_django(peer: Path, ready_timeout: float, env: dict[str, str] | None = None) -> Server:
    """`run.sh` in the scratch copy; ready when it prints `run.sh: ready` and daphne.pid exists.
    `env` adds to the environment of run.sh (PORT, FRESH_DB, BENCH_USERS, ...)."""
    run = peer / ".run"
    run.mkdir(exist_ok=True)
    for name in ("daphne.pid", "redis.pid"):
        (run / name).unlink(missing_ok=True)
    log = run / "run.out"
    t0 = time.monotonic()
    proc = spawn(["./run.sh"], log, peer, {**os.environ, **env} if env else None)
    try:
        m = wait_for_line(
            proc, log, re.compile(r"run\.sh: ready: ws://127\.0\.0\.1:(\d+)/"), ready_timeout
        )
        daphne = read_pid(run / "daphne.pid")
        if daphne is None:
            raise ServerError(f"ready, but no .run/daphne.pid: {tail(log)}")
    except BaseException:
        terminate(proc, 20.0)
        raise
    pids = {"server": daphne}
    redis = read_pid(run / "redis.pid")  # absent when a redis already answered
    if redis is not None:
        pids["redis"] = redis
    return Server(
        "daphne",
        int(m.group(1)),
        proc,
        pids,
        log,
        round(time.monotonic() - t0, 2),
        extra_pids=list(pids.values()),
    )


@dataclass
class Handshake:
    status: int | None  # 101 when the WebSocket was accepted
    extensions: str | None  # the server's Sec-WebSocket-Extensions, if any
    error: str | None = None

    @property
    def deflate_accepted(self) -> bool | None:
        if self.status != 101:
            return None
        return bool(self.extensions and "permessage-deflate" in self.extensions)


def handshake(port: int, deflate: bool, timeout: float = 5.0) -> Handshake:
    """One raw WebSocket upgrade of WS_PATH (offering deflate as browsers do), then a close."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if deflate:
        req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall((req + "\r\n").encode())
            buf = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in buf and len(buf) < 65536 and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            parts = head[0].split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            ext = None
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-extensions":
                    ext = value.strip()
            if status == 101:  # a masked close frame, code 1000
                mask = os.urandom(4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8"))
                s.sendall(b"\x88\x82" + mask + payload)
            return Handshake(status, ext)
    except (OSError, ValueError) as exc:
        return Handshake(None, None, f"{type(exc).__name__}: {exc}")
