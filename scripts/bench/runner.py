"""What both benchmarks do around their own load generator and figures.

The one-time setup (load generator, Django peer), one attempt at a point (fresh server, quiet
host, load generator, stop), redoing a noisy point on a fresh server, recording each point, the
last JSON line, and the entry point that stops the current point's server on Ctrl-C or SIGTERM
before it exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

from .env import SetupError, django_needs_install, log, prepare_django, shared_dir
from .host import wait_quiet
from .servers import Server, ServerError, start_django

INSTALL_TIMEOUT = 900.0  # the Django peer's first run.sh (venv, apt-get redis-server)


class LoadgenError(Exception):
    """The load generator overran its bound or printed no JSON: the point fails, not the run."""


class PointLike(Protocol):
    """What the loop needs of a point (`report.Point`, `orders.OrderPoint`)."""

    ok: bool
    error: str | None
    notes: list[str]
    startup_s: float | None
    quiet: bool | None
    quiet_wait_s: float | None
    host_other_cores: float | None
    attempts: int

    def summary(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=PointLike)
V = TypeVar("V")  # what tells apart two points of one server and client count


@dataclass
class Setup:
    shared: Path
    prefix: list[str]  # the load generator's command
    peer: Path | None  # the Django peer's scratch copy (None with --skip-django)
    peer_error: str | None  # its first install failed: its points fail with this


def install_django(peer: Path, env: dict[str, str] | None) -> str | None:
    """First use: run.sh installs its venv (and redis-server) with a long bound, then stops."""
    log(f"installing the Django peer in {peer} (run.sh, at most {INSTALL_TIMEOUT:.0f} s)")
    try:
        start_django(peer, INSTALL_TIMEOUT, env).stop()
    except ServerError as exc:
        return f"install: {exc}"
    return None


def setup(
    loadgen: Callable[[Path], list[str]], skip_django: bool, install_env: dict[str, str] | None
) -> Setup | None:
    """The load generator and the Django peer, installed if needed; on failure, says so (stderr,
    and a JSON line on stdout) and returns None."""
    peer: Path | None = None
    peer_error: str | None = None
    try:
        shared = shared_dir()
        prefix = loadgen(shared)
        if not skip_django:
            peer = prepare_django(shared)
            if django_needs_install(peer):
                peer_error = install_django(peer, install_env)
    except SetupError as exc:
        log(f"setup failed: {exc}")
        print(json.dumps({"error": f"setup: {exc}"}))
        return None
    return Setup(shared, prefix, peer, peer_error)


def run_json(cmd: list[str], timeout: float, need_exit_0: bool) -> dict[str, Any]:
    """Run the load generator; its last stdout line starting with `{` is its result."""
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadgenError(f"load generator still running after {timeout:.0f} s") from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if (need_exit_0 and proc.returncode != 0) or not lines:
        err = " | ".join(proc.stderr.strip().splitlines()[-4:])
        raise LoadgenError(f"load generator exit {proc.returncode}, no JSON: {err}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(
    p: P,
    name: str,
    a: argparse.Namespace,
    start: Callable[[], Server],
    run: Callable[[Server], None],
    check: Callable[[Server], bool] | None = None,
    after_stop: Callable[[], None] | None = None,
) -> P:
    """One attempt: start a fresh server, `check` it (False: the point failed), wait for a quiet
    host, `run` the load generator and fill `p` (LoadgenError: the point failed), stop the
    server, then `after_stop`."""
    srv: Server | None = None
    try:
        try:
            srv = start()
        except ServerError as exc:
            p.error = f"start: {exc}"
            return p
        p.startup_s = srv.startup_s
        if check is not None and not check(srv):
            return p
        q = wait_quiet(a.quiet_max, a.quiet_secs, list(srv.pids.values()))
        p.quiet, p.quiet_wait_s = q.quiet, q.waited_s
        if not q.quiet:
            p.notes.append(
                f"host not quiet after {q.waited_s:.0f} s"
                + (f" ({len(q.others)} other benchmark processes)" if q.others else "")
            )
            log(f"host still busy after {q.waited_s:.0f} s, measuring anyway {q.others[:3]}")
        try:
            run(srv)
        except LoadgenError as exc:
            p.error = str(exc)
            return p
        if srv.proc.poll() is not None:
            p.notes.append(f"server exited during the run ({srv.proc.returncode})")
        return p
    finally:
        if srv is not None:
            note = srv.stop()
            if note:
                p.notes.append(f"stop: {note}")
                log(f"{name} stop: {note}")
            if after_stop is not None:
                after_stop()


def run_point(label: str, a: argparse.Namespace, attempt_once: Callable[[int], P]) -> P:
    """`attempt_once(attempt)`; redo a noisy point on a fresh server, keeping the quietest try."""

    def other(x: PointLike) -> float:
        return x.host_other_cores if x.host_other_cores is not None else float("inf")

    best: P | None = None
    attempt = 0
    for attempt in range(1, a.redo_noisy + 2):
        log(f"point {label}: attempt {attempt}")
        p = attempt_once(attempt)
        p.attempts = attempt
        if best is None or (p.ok and (not best.ok or other(p) < other(best))):
            best = p
        if not (p.ok and other(p) > a.max_other) or attempt > a.redo_noisy:
            break
        log(f"noisy ({p.host_other_cores} other cores busy): redoing on a fresh server")
    assert best is not None
    best.attempts = attempt
    return best


def run_plan(
    plan: Sequence[tuple[str, int, V]],
    a: argparse.Namespace,
    s: Setup,
    make: Callable[[str, int, V], P],
    label: Callable[[P], str],
    measure: Callable[[str, int, V, argparse.Namespace, Setup, int], P],
    row: Callable[[P], list[str]],
) -> list[P]:
    """Each (server, clients, variant) of the plan in turn: `measure(..., a, s, attempt)` through
    run_point, or, when the Django peer's install failed, a failed point; each one recorded."""
    points: list[P] = []
    for server, clients, variant in plan:
        p = make(server, clients, variant)
        if server != "marketsrv" and s.peer_error:
            p.error = s.peer_error
        else:
            p = run_point(label(p), a, partial(measure, server, clients, variant, a, s))
        points.append(record(p, row, a.out))
    return points


def record(p: P, row: Callable[[P], list[str]], out: Path | None) -> P:
    """Log the point's table row; append its JSON to `out`, if given."""
    log("  ".join(x for x in row(p) if x))
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(p.summary()) + "\n")
    return p


def started(elapsed: float) -> str:
    """When the run started, `elapsed` seconds ago, as local ISO 8601."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - elapsed))


def finish(result: dict[str, Any], points: Sequence[PointLike]) -> int:
    """The last line, one JSON object; exit status 1 when a point failed."""
    print(json.dumps(result), flush=True)
    return 0 if all(p.ok for p in points) else 1


def on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def trap_sigterm() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)


def entry(main: Callable[[], int]) -> NoReturn:
    """sys.exit(main()), saying on stderr why when interrupted or terminated."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; the server of the current point was stopped")
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            log("SIGTERM; the server of the current point was stopped")
        raise
