"""Paths, logging and the one-time installs of the streaming benchmark.

`shared/` is read-only, so everything that needs writing (npm's node_modules, venvs, the Django
peer's `.venv/` and `.run/`) lives in a scratch folder, `<tmp>/marketsrv-bench/`, and is reused
between runs. Copies are refreshed file by file when the source changes; the installs are redone
only when their lock file changes.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repo holding scripts/bench_stream.py
SCRATCH = Path(tempfile.gettempdir()) / "marketsrv-bench"
SKIP = {".venv", ".run", "node_modules", "__pycache__"}


class SetupError(Exception):
    """An install step failed; the message says which and where its output is."""


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout keeps the tables and the final JSON line."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def shared_dir() -> Path:
    """`<repo>/../shared`, falling back to /work/shared."""
    for cand in (ROOT.parent / "shared", Path("/work/shared")):
        if (cand / "peers").is_dir():
            return cand
    raise SetupError(f"no shared/peers folder next to {ROOT} nor in /work/shared")


def sync_tree(src: Path, dst: Path) -> None:
    """Copy src into dst (writable), only the files that differ; dst's own state is kept."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d not in SKIP]
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(dst / rel, 0o755)
        for name in filenames:
            s, d = Path(dirpath) / name, dst / rel / name
            if d.exists() and filecmp.cmp(s, d, shallow=False):
                continue
            if d.exists():
                os.chmod(d, 0o644)
            shutil.copyfile(s, d)
            mode = os.stat(s).st_mode
            os.chmod(d, 0o755 if mode & stat.S_IXUSR else 0o644)


def run_logged(cmd: list[str], out: Path, timeout: float, cwd: Path | None = None) -> int | None:
    """Run cmd, stdout and stderr to the file `out`; its exit status, None if it overran."""
    with open(out, "wb") as f:
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
    return proc.returncode


def run_step(cmd: list[str], cwd: Path, timeout: float, what: str) -> None:
    log(f"{what}: {' '.join(cmd)} (in {cwd}, at most {timeout:.0f} s)")
    out = SCRATCH / f"{what.replace(' ', '-')}.log"
    rc = run_logged(cmd, out, timeout, cwd)
    if rc is None:
        raise SetupError(f"{what} took more than {timeout:.0f} s, see {out}")
    if rc != 0:
        raise SetupError(f"{what} failed (exit {rc}), see {out}")


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def prepare_node_loadgen(shared: Path) -> list[str]:
    """A scratch copy of peers/loadgen-node with `npm ci` done; returns the command prefix."""
    dst = SCRATCH / "loadgen-node"
    sync_tree(shared / "peers" / "loadgen-node", dst)
    lock = (dst / "package-lock.json").read_bytes()
    marker = dst / "node_modules" / ".bench-npm-ci.lock"
    if not (marker.exists() and marker.read_bytes() == lock):
        run_step(["npm", "ci", "--no-audit", "--no-fund"], dst, 300, "npm ci")
        marker.write_bytes(lock)
    return ["node", str(dst / "loadgen.mjs")]


def prepare_python_loadgen(shared: Path, script: str = "loadgen.py") -> list[str]:
    """A scratch venv from peers/loadgen-requirements.txt; returns the command prefix that runs
    `peers/<script>` with it (`loadgen.py`, or `orders_loadgen.py`, which imports loadgen.py)."""
    venv = SCRATCH / "loadgen-py-venv"
    req = shared / "peers" / "loadgen-requirements.txt"
    marker = venv / ".bench-requirements.txt"
    if not (venv / "bin" / "python").exists():
        run_step([sys.executable, "-m", "venv", str(venv)], SCRATCH, 120, "loadgen venv")
    if not (marker.exists() and marker.read_bytes() == req.read_bytes()):
        run_step(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(req)],
            SCRATCH,
            600,
            "loadgen pip install",
        )
        marker.write_bytes(req.read_bytes())
    return [str(venv / "bin" / "python"), str(shared / "peers" / script)]


def prepare_django(shared: Path) -> Path:
    """The scratch copy of peers/django_channels (its .venv/ and .run/ are kept)."""
    dst = SCRATCH / "django_channels"
    sync_tree(shared / "peers" / "django_channels", dst)
    return dst


def django_needs_install(peer: Path) -> bool:
    """run.sh installs its venv and redis-server on first use: too slow for a point's 60 s."""
    installed = peer / ".venv" / ".requirements.installed"
    fresh = (
        installed.exists() and installed.read_bytes() == (peer / "requirements.txt").read_bytes()
    )
    return not fresh or shutil.which("redis-server") is None
