#!/usr/bin/env python3
"""Order-entry benchmark: marketsrv's `POST /api/trading/orders/` against the seed's order view
in the Django Channels peer, side by side, driven by `shared/peers/orders_loadgen.py`.

Each point starts a FRESH server on a FRESH SQLite database, waits for a quiet host, lets C
clients (one keep-alive HTTP/1.1 connection and one user each, `-k C`) place orders back to back
for a warm-up and a window (every 5th order sells what the 4 before it bought), then stops the
server. At each client count: marketsrv (`synchronous=FULL`, group commit on, market orders that
match the simulated book), then the Django peer (`run.sh` with FRESH_DB=1 BENCH_USERS=C, its
default limit-price body, as its `bench_orders.sh` does); and at the highest count marketsrv once
more with `--no-db-group-commit`. marketsrv's users bench0..bench{C-1} are created before it
starts with `marketsrv users create ... --deposit 10000000` (argon2: about 0.15 s a user).

    scripts/bench_orders.py                                  # 1,8,32 clients, 15 s windows
    scripts/bench_orders.py --clients 1,8 --skip-django -T 5 # quick look
    scripts/bench_orders.py --out /tmp/orders.jsonl --marketsrv-arg=--db-synchronous=NORMAL

Stdlib only; any python3 >= 3.11 runs it. The first run installs, in `<tmp>/marketsrv-bench/`, a
venv for the load generator (pip: trio, h11) and a copy of `shared/peers/django_channels`, whose
run.sh makes its own venv (pip) and installs redis-server with apt-get if there is none. Later runs
reuse them. Databases and logs of the points are in `<tmp>/marketsrv-bench/orders/`.

Output: progress on stderr; on stdout a table of the points, the marketsrv/Django ratios per
client count, group commit on/off, and as the LAST line one JSON object: at the highest client
count `orders_per_s`, `p99_ms`, `django_orders_per_s`, `django_p99_ms`, `ratio_vs_django`
(marketsrv orders/s over Django's), `ratio_vs_no_group_commit` (group commit on over off), and
every point under `points`. A point whose server does not start or whose load generator fails is
reported as failed; the run goes on. Compare servers only by figures of one run: the host's
speed changes between sessions (`cpu_probe_us`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import options, runner
from bench.env import SCRATCH, log, prepare_python_loadgen
from bench.orders import (
    OrderPoint,
    group_commit_table,
    point_table,
    ratio_table,
    row,
    summary,
)
from bench.report import clip
from bench.servers import HOST, Server, create_marketsrv_users, start_django, start_marketsrv

PASSWORD = "bench-pass"
DEPOSIT = "10000000"  # KES per user, as the Django peer's BENCH_BALANCE
MARKET_ORDER = '{"symbol":$SYMBOL,"side":$SIDE,"quantity":$QTY,"order_type":"market"}'
READY_TIMEOUT = 120.0  # run.sh creates C users with PBKDF2 before Daphne starts
LOGIN_TIMEOUT = 180.0  # orders_loadgen.py's default bound of its login phase
ORDERS_DIR = SCRATCH / "orders"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    clients = options.client_counts(256, unique=True)
    p = options.new_parser(
        __doc__, clients, [1, 8, 32], 15.0, "seconds of ordering not counted", short_duration=True
    )
    p.add_argument("--sell-every", type=int, default=5, help="every Nth order is a sell")
    p.add_argument(
        "--no-group-commit-clients",
        type=clients,
        default=None,
        help="client counts of the extra marketsrv points with --no-db-group-commit "
        "(%(default)s: the highest --clients; 0: none)",
    )
    p.add_argument("--skip-django", action="store_true", help="measure marketsrv only")
    p.add_argument("--django-port", type=int, default=8001, help="PORT given to run.sh")
    options.add_server_options(p, "longest wait for a quiet host, s")
    a = p.parse_args(argv)
    options.check_common(
        p,
        a,
        0 < a.duration <= 600 and 0 <= a.warmup <= 60 and 0 <= a.sell_every <= 1000,
        "need 0 < --duration <= 600, 0 <= --warmup <= 60, 0 <= --sell-every <= 1000",
    )
    if a.no_group_commit_clients is None:
        a.no_group_commit_clients = [max(a.clients)]
    if not 1024 <= a.django_port <= 65535:
        p.error("--django-port must be between 1024 and 65535")
    return a


def run_loadgen(
    prefix: list[str], srv: Server, p: OrderPoint, a: argparse.Namespace
) -> dict[str, Any]:
    c = p.clients
    cmd = [*prefix, "--base-url", f"http://{HOST}:{srv.port}", "-c", str(c), "-k", str(c)]
    cmd += ["-T", f"{a.duration:g}", "--warmup", f"{a.warmup:g}"]
    cmd += ["--sell-every", str(a.sell_every), "--label", f"bench_orders {p.name} c={c}"]
    cmd += ["--login-timeout", f"{LOGIN_TIMEOUT:g}"]
    if p.server == "marketsrv":
        cmd += ["--order-body", MARKET_ORDER, "--pid", f"server={srv.pids['server']}"]
    else:  # the peer's defaults: the seed body with a price; names as bench_orders.sh uses
        cmd += ["--pid", f"daphne={srv.pids['server']}"]
        if "redis" in srv.pids:
            cmd += ["--pid", f"redis={srv.pids['redis']}"]
    # logins + warm-up + window + the load generator's own stop bounds, and slack
    timeout = LOGIN_TIMEOUT + a.warmup + a.duration + 13.0 + 30.0
    # exit 1 with JSON: no login; fill() says so
    return runner.run_json(cmd, timeout, need_exit_0=False)


def fresh_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def start(p: OrderPoint, a: argparse.Namespace, peer: Path | None) -> Server:
    if p.server == "django":
        assert peer is not None
        env = {"PORT": str(a.django_port), "FRESH_DB": "1", "BENCH_USERS": str(p.clients)}
        return start_django(peer, READY_TIMEOUT, env)
    label = f"marketsrv{'' if p.group_commit else '-nogc'}-c{p.clients}"
    db = ORDERS_DIR / f"orders-{label}.db"
    fresh_db(db)
    names = [f"bench{i}" for i in range(p.clients)]
    users_log = ORDERS_DIR / f"users-{label}.log"
    p.users_create_s = create_marketsrv_users(
        a.marketsrv_bin, db, names, PASSWORD, DEPOSIT, users_log, timeout=60.0 + 2.0 * p.clients
    )
    args = ["--port", "0", "--database", str(db), "--seed", "1", "--log-level", "warning"]
    args += ["--demo-user", "off"]
    if not p.group_commit:
        args.append("--no-db-group-commit")
    args += a.marketsrv_arg
    return start_marketsrv(a.marketsrv_bin, args, ORDERS_DIR, READY_TIMEOUT, f"{label}.log")


def db_locked(peer: Path, p: OrderPoint, attempt: int) -> int | None:
    """Keep the point's daphne.log and count its `database is locked` errors (bench_orders.sh)."""
    src = peer / ".run" / "daphne.log"
    if not src.exists():
        return None
    dst = ORDERS_DIR / f"daphne-c{p.clients}-{attempt}.log"
    shutil.copyfile(src, dst)
    text = dst.read_text(errors="replace")
    return text.count("django.db.utils.OperationalError: database is locked")


def measure(
    server: str,
    clients: int,
    group_commit: bool | None,
    a: argparse.Namespace,
    s: runner.Setup,
    attempt: int,
) -> OrderPoint:
    """One attempt: fresh database and server, quiet host, load generator, stop."""
    p = OrderPoint(server, clients, group_commit)
    pid_name = "server" if server == "marketsrv" else "daphne"

    def run(srv: Server) -> None:
        p.fill(run_loadgen(s.prefix, srv, p, a), pid_name, clients, a.max_other)

    def after_stop() -> None:
        if server == "django" and s.peer is not None:
            p.db_locked_errors = db_locked(s.peer, p, attempt)

    return runner.measure(p, p.name, a, lambda: start(p, a, s.peer), run, None, after_stop)


def label(p: OrderPoint) -> str:
    return f"{p.name} c={p.clients}"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    runner.trap_sigterm()
    t0 = time.monotonic()
    ORDERS_DIR.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[str, int, bool | None]] = []
    for c in a.clients:
        plan.append(("marketsrv", c, True))
        if c in a.no_group_commit_clients:
            plan.append(("marketsrv", c, False))
        if not a.skip_django:
            plan.append(("django", c, None))
    plan += [("marketsrv", c, False) for c in a.no_group_commit_clients if c not in a.clients]

    loadgen = partial(prepare_python_loadgen, script="orders_loadgen.py")
    s = runner.setup(loadgen, a.skip_django, {"BENCH_USERS": "1"})
    if s is None:
        return 2
    log(f"{len(plan)} points of {a.duration:g} s; shared {s.shared}; scratch {ORDERS_DIR}")

    points = runner.run_plan(plan, a, s, OrderPoint, label, measure, row)

    elapsed = round(time.monotonic() - t0, 1)
    print(
        f"\nOrder-entry benchmark: C clients, one user and one keep-alive connection each, "
        f"orders back to back (every {a.sell_every}th a sell), {a.duration:g} s window after "
        f"{a.warmup:g} s warm-up, a fresh server and database per point; marketsrv market orders "
        f"(synchronous=FULL), Django the seed's view; {os.cpu_count()} cores, {elapsed:.0f} s in all"
    )
    print(point_table(points))
    print(
        "\nmarketsrv / Django (ratio: orders/s; CPU ratio: Django CPU ms/order over marketsrv's;"
        "\n`!`: the two points' cpu_probe_us differ by more than 1.3x, the host's speed changed):"
    )
    print(ratio_table(points))
    if any(p.name == "marketsrv no-gc" for p in points):
        print("\nmarketsrv group commit on / off:")
        print(group_commit_table(points))
    samples = {
        f"{p.name} c={p.clients} {k}": clip(" ".join(v.split()), 160)
        for p in points
        for k, v in p.samples.items()
    }
    if samples:
        print("\nFirst answer of each non-201 status:")
        for k, v in samples.items():
            print(f"  {k}: {v}")
    meta = {
        "bench": "orders",
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "sell_every": a.sell_every,
        "clients": a.clients,
        "no_group_commit_clients": a.no_group_commit_clients,
        "marketsrv_args": a.marketsrv_arg,
        "elapsed_s": elapsed,
        "started": runner.started(elapsed),
    }
    return runner.finish(summary(points, a.clients, meta), points)


if __name__ == "__main__":
    runner.entry(main)
