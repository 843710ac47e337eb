#!/usr/bin/env python3
"""What a burst of parallel wrong logins costs marketsrv in memory, for docs/performance.md.

Each Argon2 password check takes 64 MiB. For each configuration, a FRESH server on a fresh
temporary database (`--no-simulate --demo-user on`): read its idle VmRSS, fire N wrong logins at
once (`POST /api/accounts/login/`, half as `demo`, half as unknown users `nobody<i>`), count the
answers (400: wrong password, 429: throttled), read VmHWM (peak RSS; reset before each burst
through /proc/PID/clear_refs, as start-up already hashes the demo password), then stop it. The
baseline, run side by side, is the old behaviour: no hash limiter, no login throttle.

    .venv/bin/python scripts/bench_login.py [--parallel 40] [--rounds 1] [--keep]

Stdlib only. Output: a table on stdout and, as the LAST line, one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
CONFIGS = [
    ("marketsrv defaults", []),
    (
        "baseline: no limiter, no throttle",
        [
            "--auth-hash-concurrency",
            "64",
            "--login-failures-per-address",
            "0",
            "--login-failures-per-account",
            "0",
        ],
    ),
]


def log(msg: str) -> None:
    print(f"[bench_login {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mem_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of pid, in MB (10^6 bytes)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return out


def reset_peak(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0), so each round has its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def start(flags: list[str], tmp: Path) -> tuple[subprocess.Popen[str], int, threading.Thread]:
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "marketsrv", "--port", "0"]
    cmd += ["--database", str(tmp / "bench.db"), "--no-simulate", "--demo-user", "on", *flags]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )
    ready: queue.Queue[int] = queue.Queue()

    def drain() -> None:  # the whole output goes to server.log; the ready line's port to `ready`
        assert proc.stdout is not None
        with open(tmp / "server.log", "w") as f:
            for line in proc.stdout:
                f.write(line)
                f.flush()
                if m := READY.search(line):
                    ready.put(int(m.group(2)))

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        return proc, ready.get(timeout=60), drainer
    except queue.Empty:
        stop(proc)
        raise SystemExit(f"no ready line within 60 s; see {tmp / 'server.log'}") from None


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def login(port: int, i: int, gate: threading.Barrier, out: list[str]) -> None:
    name = "demo" if i % 2 == 0 else f"nobody{i}"
    body = json.dumps({"username": name, "password": f"wrong-{i}"})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.connect()
        gate.wait()
        conn.request("POST", "/api/accounts/login/", body, {"Content-Type": "application/json"})
        out[i] = str(conn.getresponse().status)
    except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
        out[i] = type(exc).__name__
    finally:
        conn.close()


def burst(port: int, n: int) -> tuple[list[str], float]:
    """n wrong logins, each on its own connection, sent together; their statuses and wall time."""
    gate = threading.Barrier(n + 1)
    out = ["none"] * n
    threads = [threading.Thread(target=login, args=(port, i, gate, out)) for i in range(n)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return out, time.monotonic() - t0


def measure(name: str, flags: list[str], a: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-login-"))
    proc, port, drainer = start(flags, tmp)
    try:
        time.sleep(a.settle)  # idle: start-up done, nothing running
        idle = mem_mb(proc.pid)
        statuses: Counter[str] = Counter()
        peak, wall = 0.0, 0.0
        reset = True
        for _ in range(a.rounds):
            reset = reset_peak(proc.pid) and reset  # else VmHWM keeps the start-up peak
            codes, seconds = burst(port, a.parallel)
            statuses.update(codes)
            peak, wall = max(peak, mem_mb(proc.pid)["VmHWM"]), max(wall, seconds)
        time.sleep(a.settle)
        after = mem_mb(proc.pid)["VmRSS"]
    finally:
        stop(proc)
        drainer.join(5)
    text = (tmp / "server.log").read_text(errors="replace")
    problems = sum(1 for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln)
    if a.keep:
        log(f"{name}: kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {
        "config": name,
        "flags": flags,
        "idle_rss_mb": idle["VmRSS"],
        "idle_hwm_mb": idle["VmHWM"],
        "peak_rss_mb": peak,
        "peak_growth_mb": round(peak - idle["VmRSS"], 1),
        "rss_after_mb": after,
        "statuses": dict(sorted(statuses.items())),
        "burst_s": round(wall, 2),
        "peak_reset": reset,
        "server_log_errors": problems,
        "exit_code": proc.returncode,
    }
    log(f"{name}: {res}")
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parallel", type=int, default=40, help="wrong logins at once")
    p.add_argument("--rounds", type=int, default=1, help="bursts per server; the max is reported")
    p.add_argument("--settle", type=float, default=2.0, help="seconds idle before and after")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs (database, log)")
    a = p.parse_args()
    if not (1 <= a.parallel <= 500 and 1 <= a.rounds <= 20 and 0 <= a.settle <= 60):
        p.error("need 1 <= --parallel <= 500, 1 <= --rounds <= 20, 0 <= --settle <= 60")
    results = [measure(name, flags, a) for name, flags in CONFIGS]
    d, b = results
    ratio = round(d["peak_growth_mb"] / b["peak_growth_mb"], 3) if b["peak_growth_mb"] else None

    print(f"\n{a.parallel} parallel wrong logins x {a.rounds} round(s), a fresh server each (MB):")
    head = ["config", "idle", "start-up peak", "peak", "growth", "after", "statuses", "burst s"]
    keys = ["config", "idle_rss_mb", "idle_hwm_mb", "peak_rss_mb", "peak_growth_mb"]
    keys += ["rss_after_mb", "statuses", "burst_s"]
    rows = [[r[k] for k in keys] for r in results]
    for row in rows:
        row[6] = " ".join(f"{k}:{v}" for k, v in row[6].items())
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for row in [head, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    print(f"peak growth, defaults over baseline: {ratio}")
    for r in results:
        if r["server_log_errors"]:
            print(f"{r['config']}: {r['server_log_errors']} ERROR/Traceback lines in the log")
    summary = {"bench": "login", "parallel": a.parallel, "rounds": a.rounds}
    summary |= {"growth_ratio": ratio, "date": time.strftime("%Y-%m-%d"), "results": results}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
