#!/usr/bin/env python3
"""How fast marketsrv starts: the one file (dist/marketsrv.pyz) against the installed command.

Each round starts both, alternately, on a database of their own made in a first, unmeasured run
(so the figures are of a warm start: unpacked file, existing database), and times from exec to
the line `listening on ...`; then `--version`. Medians of the rounds, and the ratio one file /
installed measured in the same run.

    scripts/bench_start.py                     # builds dist/marketsrv.pyz first
    scripts/bench_start.py --pyz dist/marketsrv.pyz --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = [str(ROOT / ".venv" / "bin" / "marketsrv")]


def to_listening(command: list[str], database: Path) -> float:
    """Seconds from exec to `listening on`; the server is then stopped."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "--port", "0", "--database", str(database)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={},  # as from an empty environment: nothing of a virtualenv leaks in
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("listening on"):
                return time.perf_counter() - started
        raise SystemExit(f"{command} exited before listening")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def version(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([*command, "--version"], check=True, capture_output=True, env={})
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pyz", type=Path, help="a built file (default: build dist/marketsrv.pyz)")
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args()
    pyz = a.pyz
    if pyz is None:
        subprocess.run([str(ROOT / "scripts" / "build")], check=True)
        pyz = ROOT / "dist" / "marketsrv.pyz"
    python = getattr(sys, "_base_executable", sys.executable)
    commands = {"one file": [python, str(pyz.resolve())], "installed": INSTALLED}
    with tempfile.TemporaryDirectory() as tmp:
        databases = {name: Path(tmp) / f"{i}.db" for i, name in enumerate(commands)}
        for name, command in commands.items():  # unpack the file, make the databases
            to_listening(command, databases[name])
        starts: dict[str, list[float]] = {name: [] for name in commands}
        versions: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(a.rounds):
            for name, command in commands.items():
                starts[name].append(to_listening(command, databases[name]))
                versions[name].append(version(command))
    print(f"{a.rounds} rounds, medians (min-max), seconds")
    for name in commands:
        s, v = starts[name], versions[name]
        print(
            f"  {name:9}  to listening {statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f})"
            f"   --version {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
        )
    ratio = statistics.median(starts["one file"]) / statistics.median(starts["installed"])
    print(f"  one file / installed, to listening: {ratio:.2f}")


if __name__ == "__main__":
    main()
