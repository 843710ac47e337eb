"""Waiting for a quiet host before a point, as `shared/peers/django_channels/wait_quiet.py` does.

The test is the same (fewer than 0.15 cores busy in each of `need` seconds in a row, no other
benchmark process running, then 1-3 s more and a second look), with one difference: the CPU of
the server we just started is not counted, so a server whose simulator ticks while idle does
not keep the host "busy" forever. The wait is bounded; when it runs out we measure anyway and
say so.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field

# wait_quiet.py's pattern: another session's load generator or benchmark script.
OTHER_BENCH = re.compile(r"loadgen|serve\.py|null_server|bench\w*\.sh")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Quiet:
    quiet: bool
    waited_s: float
    others: list[str] = field(default_factory=list)


def busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait


def proc_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def other_benchmarks(mine: set[int]) -> list[str]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in mine:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if cmd and OTHER_BENCH.search(cmd):
            found.append(f"{name} {cmd[:100]}")
    return found


def wait_quiet(max_s: float, need: int, own: list[int]) -> Quiet:
    """Wait until quiet, at most max_s seconds; `own` are our servers' PIDs (not counted)."""
    mine = ancestors() | set(own)
    t0 = time.monotonic()
    deadline = t0 + max_s

    def sample() -> int:
        return busy_ticks() - sum(proc_ticks(p) for p in own)

    quiet, b0, others = 0, sample(), []
    for _ in range(int(max_s) + 10):  # one round a second; the deadline ends it sooner
        time.sleep(1)
        b1 = sample()
        others = other_benchmarks(mine)
        quiet = quiet + 1 if (b1 - b0) / CLK_TCK < 0.15 and not others else 0
        b0 = b1
        if quiet >= need:
            time.sleep(random.uniform(1.0, 3.0))
            b1 = sample()
            others = other_benchmarks(mine)
            if not others and (b1 - b0) / CLK_TCK < 0.5:
                return Quiet(True, round(time.monotonic() - t0, 1))
            quiet, b0 = 0, b1
        if time.monotonic() > deadline:
            break
    return Quiet(False, round(time.monotonic() - t0, 1), others)
