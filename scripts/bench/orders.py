"""The order-entry benchmark's figures: one point from `orders_loadgen.py`'s JSON, the tables and
the summary object of `scripts/bench_orders.py`.

Server CPU per acknowledged order is the server process's CPU over the window (utime + stime, all
threads, so marketsrv's SQLite writer thread and Daphne's worker threads are in it) divided by the
orders acknowledged in that window. Like every figure here, compare it across servers only within
one run: this shared 2-core host's speed changes between sessions (see `cpu_probe_us`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .report import SATURATED_PCT, _f, clip, table

TARGET_RATIO_VS_DJANGO = 8.0  # issue 5, "What it must show": at the highest client count
TARGET_P99_MS = 100.0
PROBE_DRIFT = 1.3  # cpu_probe_us before/after differing by more than this: the host changed


@dataclass
class OrderPoint:
    server: str  # "marketsrv" or "django"
    clients: int
    group_commit: bool | None = None  # marketsrv's --db-group-commit; None for Django
    ok: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    logins_ok: int | None = None
    login_s: float | None = None
    connects: int | None = None
    acknowledged: int | None = None
    orders_per_s: float | None = None
    rejected: int | None = None  # 4xx answers in the window
    rejected_by_status: dict[str, int] = field(default_factory=dict)
    errors: int | None = None  # other statuses and transport errors in the window
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)  # first body of each non-201 status
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    server_cpu_pct: float | None = None
    server_cpu_ms_per_order: float | None = None
    server_rss_mb_max: float | None = None
    redis_cpu_pct: float | None = None
    loadgen_cpu_pct: float | None = None
    loadgen_cpu_ms_per_order: float | None = None
    loadgen_saturated: bool | None = None
    cpu_probe_us: list[float] | None = None  # before logging in, after the clients stopped
    host_other_cores: float | None = None
    db_locked_errors: int | None = None  # Django: "database is locked" in daphne.log
    users_create_s: float | None = None
    startup_s: float | None = None
    quiet: bool | None = None
    quiet_wait_s: float | None = None
    attempts: int = 0
    raw: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        if self.server == "marketsrv" and self.group_commit is False:
            return "marketsrv no-gc"
        return self.server

    def fill(self, raw: dict[str, Any], server_proc: str, users: int, max_other: float) -> None:
        """Read orders_loadgen.py's output; `server_proc` is the --pid name of the server."""
        self.raw = raw
        lat = raw.get("lat_ms") or {}
        procs = raw.get("procs") or {}
        srv = procs.get(server_proc) or {}
        self.logins_ok, self.login_s = raw.get("logins_ok"), raw.get("login_s")
        self.connects = raw.get("connects")
        self.acknowledged, self.orders_per_s = raw.get("acknowledged"), raw.get("orders_per_s")
        self.rejected_by_status = dict(raw.get("rejected") or {})
        self.rejected = sum(self.rejected_by_status.values())
        self.errors_by_kind = dict(raw.get("errors") or {})
        self.errors = sum(self.errors_by_kind.values())
        self.samples = dict(raw.get("samples") or {})
        self.p50_ms, self.p95_ms = lat.get("p50"), lat.get("p95")
        self.p99_ms, self.max_ms = lat.get("p99"), lat.get("max")
        self.server_cpu_pct = srv.get("cpu_pct")
        self.server_cpu_ms_per_order = srv.get("cpu_ms_per_order")
        self.server_rss_mb_max = srv.get("rss_mb_max")
        self.redis_cpu_pct = (procs.get("redis") or {}).get("cpu_pct")
        self.loadgen_cpu_pct = raw.get("loadgen_cpu_pct")
        self.loadgen_cpu_ms_per_order = raw.get("loadgen_cpu_ms_per_order")
        if self.loadgen_cpu_pct is not None:
            self.loadgen_saturated = self.loadgen_cpu_pct >= SATURATED_PCT
        self.cpu_probe_us = raw.get("cpu_probe_us")
        self.host_other_cores = raw.get("host_other_cores")

        if not self.logins_ok:
            errs = raw.get("login_errors") or {}
            self.error = "no login succeeded" + (f": {next(iter(errs))}" if errs else "")
        elif not self.acknowledged:
            self.error = "logged in, but no order was acknowledged in the window"
        else:
            self.ok = True
        if self.logins_ok is not None and 0 < self.logins_ok < users:
            self.notes.append(f"only {self.logins_ok}/{users} logins")
        if self.rejected:
            self.notes.append(f"{self.rejected} rejected {self.rejected_by_status}")
        if self.errors:
            self.notes.append(f"{self.errors} errors {self.errors_by_kind}")
        if self.connects is not None and self.connects > self.clients:
            self.notes.append(f"{self.connects - self.clients} reconnects")
        if self.loadgen_saturated:
            self.notes.append("loadgen saturated")
        if self.host_other_cores is not None and self.host_other_cores > max_other:
            self.notes.append(f"noisy host ({self.host_other_cores} other cores)")
        probe = self.cpu_probe_us or []
        if len(probe) == 2 and min(probe) > 0 and max(probe) / min(probe) > PROBE_DRIFT:
            self.notes.append(f"host speed changed (probe {probe[0]}/{probe[1]} µs)")

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


COLUMNS = (
    "server",
    "C",
    "orders/s",
    "4xx",
    "errors",
    "p50 / p99 ms",
    "max ms",
    "CPU %",
    "CPU ms/order",
    "RSS MB",
    "loadgen CPU %",
    "probe µs",
    "other cores",
    "notes",
)


def row(p: OrderPoint) -> list[str]:
    if not p.ok and p.raw is None:
        return [p.name, str(p.clients), *["-"] * (len(COLUMNS) - 3), clip(f"FAILED: {p.error}")]
    lg = _f(p.loadgen_cpu_pct) + (" SAT" if p.loadgen_saturated else "")
    probe = "/".join(_f(x, "{:g}") for x in p.cpu_probe_us) if p.cpu_probe_us else "-"
    extra = [f"{p.db_locked_errors} 'database is locked' logged"] if p.db_locked_errors else []
    notes = clip("; ".join(([f"FAILED: {p.error}"] if not p.ok else []) + p.notes + extra))
    return [
        p.name,
        str(p.clients),
        _f(p.orders_per_s),
        _f(p.rejected, "{}"),
        _f(p.errors, "{}"),
        f"{_f(p.p50_ms, '{:.2f}')} / {_f(p.p99_ms, '{:.2f}')}",
        _f(p.max_ms, "{:.1f}"),
        _f(p.server_cpu_pct),
        _f(p.server_cpu_ms_per_order, "{:.2f}"),
        _f(p.server_rss_mb_max),
        lg,
        probe,
        _f(p.host_other_cores, "{:.2f}"),
        notes,
    ]


def point_table(points: list[OrderPoint]) -> str:
    """report.table right-aligns every column but "server" and "notes", our text ones."""
    return table([row(p) for p in points], COLUMNS)


def find(points: list[OrderPoint], name: str, clients: int) -> OrderPoint | None:
    return next((p for p in points if p.name == name and p.clients == clients and p.ok), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def probe(p: OrderPoint | None) -> float | None:
    """Mean of the point's two cpu_probe_us readings (lower: a faster host at that moment)."""
    if p is None or not p.cpu_probe_us:
        return None
    return round(sum(p.cpu_probe_us) / len(p.cpu_probe_us), 1)


def _probes(a: OrderPoint | None, b: OrderPoint | None) -> str:
    """Both points' probes; a `!` when they differ by more than PROBE_DRIFT (the ratio then
    mixes host speeds)."""
    pa, pb = probe(a), probe(b)
    flag = pa is not None and pb is not None and max(pa, pb) / min(pa, pb) > PROBE_DRIFT
    return f"{_f(pa, '{:g}')}/{_f(pb, '{:g}')}" + (" !" if flag else "")


def ratios(points: list[OrderPoint]) -> list[dict[str, Any]]:
    """Per client count: marketsrv against Django (orders/s, CPU per order, p99)."""
    out = []
    for c in sorted({p.clients for p in points}):
        ms, dj = find(points, "marketsrv", c), find(points, "django", c)
        out.append(
            {
                "clients": c,
                "orders_per_s": ms.orders_per_s if ms else None,
                "django_orders_per_s": dj.orders_per_s if dj else None,
                "ratio_vs_django": _ratio(
                    ms.orders_per_s if ms else None, dj.orders_per_s if dj else None
                ),
                "cpu_ms_per_order": ms.server_cpu_ms_per_order if ms else None,
                "django_cpu_ms_per_order": dj.server_cpu_ms_per_order if dj else None,
                "cpu_ratio_django_over_marketsrv": _ratio(
                    dj.server_cpu_ms_per_order if dj else None,
                    ms.server_cpu_ms_per_order if ms else None,
                ),
                "p99_ms": ms.p99_ms if ms else None,
                "django_p99_ms": dj.p99_ms if dj else None,
                "probes_us": _probes(ms, dj),
            }
        )
    return out


def ratio_table(points: list[OrderPoint]) -> str:
    rows = [
        [
            str(r["clients"]),
            _f(r["orders_per_s"]),
            _f(r["django_orders_per_s"]),
            _f(r["ratio_vs_django"], "{:.2f}"),
            _f(r["cpu_ms_per_order"], "{:.2f}"),
            _f(r["django_cpu_ms_per_order"], "{:.2f}"),
            _f(r["cpu_ratio_django_over_marketsrv"], "{:.2f}"),
            _f(r["p99_ms"], "{:.2f}"),
            _f(r["django_p99_ms"], "{:.2f}"),
            r["probes_us"],
        ]
        for r in ratios(points)
    ]
    header = (
        "C",
        "marketsrv orders/s",
        "django orders/s",
        "ratio",
        "marketsrv CPU ms/order",
        "django CPU ms/order",
        "CPU ratio",
        "marketsrv p99 ms",
        "django p99 ms",
        "probe µs ms/dj",
    )
    return table(rows, header)


def group_commit_table(points: list[OrderPoint]) -> str:
    rows = []
    for c in sorted({p.clients for p in points if p.name == "marketsrv no-gc"}):
        on, off = find(points, "marketsrv", c), find(points, "marketsrv no-gc", c)
        rows.append(
            [
                str(c),
                _f(on.orders_per_s if on else None),
                _f(off.orders_per_s if off else None),
                _f(
                    _ratio(on.orders_per_s if on else None, off.orders_per_s if off else None),
                    "{:.2f}",
                ),
                _f(on.p99_ms if on else None, "{:.2f}"),
                _f(off.p99_ms if off else None, "{:.2f}"),
                _f(on.server_cpu_ms_per_order if on else None, "{:.2f}"),
                _f(off.server_cpu_ms_per_order if off else None, "{:.2f}"),
                _probes(on, off),
            ]
        )
    header = (
        "C",
        "on orders/s",
        "off orders/s",
        "on/off",
        "on p99 ms",
        "off p99 ms",
        "on CPU ms/order",
        "off CPU ms/order",
        "probe µs on/off",
    )
    return table(rows, header)


def summary(points: list[OrderPoint], clients: list[int], meta: dict[str, Any]) -> dict[str, Any]:
    top = max(clients) if clients else 0
    ms, dj = find(points, "marketsrv", top), find(points, "django", top)
    off = find(points, "marketsrv no-gc", top)
    ratio_dj = _ratio(ms.orders_per_s if ms else None, dj.orders_per_s if dj else None)
    ratio_gc = _ratio(ms.orders_per_s if ms else None, off.orders_per_s if off else None)
    return {
        **meta,
        "clients_max": top,
        "orders_per_s": ms.orders_per_s if ms else None,
        "p50_ms": ms.p50_ms if ms else None,
        "p99_ms": ms.p99_ms if ms else None,
        "cpu_ms_per_order": ms.server_cpu_ms_per_order if ms else None,
        "rejected": ms.rejected if ms else None,
        "errors": ms.errors if ms else None,
        "django_orders_per_s": dj.orders_per_s if dj else None,
        "django_p50_ms": dj.p50_ms if dj else None,
        "django_p99_ms": dj.p99_ms if dj else None,
        "django_cpu_ms_per_order": dj.server_cpu_ms_per_order if dj else None,
        "django_errors": dj.errors if dj else None,
        "ratio_vs_django": ratio_dj,
        "no_group_commit_orders_per_s": off.orders_per_s if off else None,
        "no_group_commit_p99_ms": off.p99_ms if off else None,
        "ratio_vs_no_group_commit": ratio_gc,
        "meets_ratio_vs_django": (
            ratio_dj >= TARGET_RATIO_VS_DJANGO if ratio_dj is not None else None
        ),
        "meets_p99": (ms.p99_ms < TARGET_P99_MS if ms and ms.p99_ms is not None else None),
        "ratios": ratios(points),
        "rejected_total": sum(p.rejected or 0 for p in points),
        "errors_total": sum(p.errors or 0 for p in points),
        "failed_points": sum(not p.ok for p in points),
        "points": [p.summary() for p in points],
    }
