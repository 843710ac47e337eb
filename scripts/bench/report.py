"""From the load generator's JSON to a point's figures, the tables and the summary object.

Server CPU per delivered update is the server process's CPU over the window divided by the
updates delivered in it (a `bulk_update` item counts as one update, the load generator's
`--batch-field data.updates`). It is the figure to compare across servers: absolute speed of
this shared 2-core host changes by up to 3.5x between sessions, ratios in one run do not.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

SATURATED_PCT = 90.0  # a load generator at or above this much of its one core is the limit


@dataclass
class Point:
    server: str  # "marketsrv" or "daphne"
    clients: int
    deflate: bool
    ok: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    connected: int | None = None
    connect_failures: int | None = None
    closed_early: int | None = None
    updates_per_s: float | None = None
    offered_per_s: float | None = None
    delivery_ratio: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_pct: float | None = None
    server_cpu_us_per_update: float | None = None
    server_rss_mb_max: float | None = None
    bytes_per_update: float | None = None
    redis_cpu_pct: float | None = None
    loadgen_cpu_pct: float | None = None
    loadgen_saturated: bool | None = None
    host_other_cores: float | None = None
    deflate_accepted: bool | None = None
    quiet: bool | None = None
    quiet_wait_s: float | None = None
    startup_s: float | None = None
    attempts: int = 0
    raw: dict[str, Any] | None = None

    def fill(self, raw: dict[str, Any], max_other: float) -> None:
        """Read the load generator's fields (same names in loadgen.py and loadgen.mjs)."""
        self.raw = raw
        dur = float(raw.get("duration_s") or 0) or 1.0
        lat = raw.get("lat_ms") or {}
        procs = raw.get("procs") or {}
        srv = procs.get("server") or {}
        self.connected = raw.get("connected")
        self.connect_failures = raw.get("connect_failures")
        self.closed_early = raw.get("closed_early")
        self.updates_per_s = raw.get("updates_per_s")
        self.offered_per_s = raw.get("expected_updates_per_s")
        self.delivery_ratio = raw.get("delivery_ratio")
        self.p50_ms, self.p95_ms, self.p99_ms = lat.get("p50"), lat.get("p95"), lat.get("p99")
        self.server_cpu_pct = srv.get("cpu_pct")
        updates = raw.get("updates") or 0
        if self.server_cpu_pct is not None and updates:
            self.server_cpu_us_per_update = round(
                self.server_cpu_pct / 100.0 * dur / updates * 1e6, 2
            )
        self.server_rss_mb_max = srv.get("rss_mb_max")
        if updates:
            self.bytes_per_update = round((raw.get("bytes") or 0) / updates, 1)
        self.redis_cpu_pct = (procs.get("redis") or {}).get("cpu_pct")
        self.loadgen_cpu_pct = raw.get("loadgen_cpu_pct")
        if self.loadgen_cpu_pct is not None:
            self.loadgen_saturated = self.loadgen_cpu_pct >= SATURATED_PCT
        self.host_other_cores = raw.get("host_other_cores")
        if not self.connected:
            errs = raw.get("errors") or {}
            self.error = "no client connected" + (f": {next(iter(errs))}" if errs else "")
        elif not updates:
            self.error = "connected, but no update arrived in the window"
        else:
            self.ok = True
        if self.connect_failures:
            self.notes.append(f"{self.connect_failures} connect failures")
        if self.closed_early:
            self.notes.append(f"{self.closed_early} closed early")
        if self.loadgen_saturated:
            self.notes.append("loadgen saturated")
        if self.host_other_cores is not None and self.host_other_cores > max_other:
            self.notes.append(f"noisy host ({self.host_other_cores} other cores)")
        if raw.get("no_ts"):
            self.notes.append(f"{raw['no_ts']} frames without ts")

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def _f(v: Any, fmt: str = "{:,.1f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt.format(v)


COLUMNS = (
    "server",
    "C",
    "deflate",
    "conn/fail",
    "updates/s",
    "B/update",
    "deliv.",
    "p50 / p99 ms",
    "CPU %",
    "µs/update",
    "RSS MB",
    "loadgen CPU %",
    "other cores",
    "notes",
)


def clip(text: str, n: int = 140) -> str:
    """Table cells stay readable; the whole text is in the JSON."""
    return text if len(text) <= n else text[: n - 1] + "…"


def row(p: Point) -> list[str]:
    deflate = "offered" if p.deflate else "-"
    if p.deflate and p.deflate_accepted is not None:
        deflate = "accepted" if p.deflate_accepted else "refused"
    if not p.ok and p.raw is None:
        return [
            p.server,
            str(p.clients),
            deflate,
            *["-"] * (len(COLUMNS) - 4),
            clip(f"FAILED: {p.error}"),
        ]
    lg = _f(p.loadgen_cpu_pct) + (" SAT" if p.loadgen_saturated else "")
    notes = clip("; ".join(([f"FAILED: {p.error}"] if not p.ok else []) + p.notes))
    return [
        p.server,
        str(p.clients),
        deflate,
        f"{_f(p.connected, '{}')}/{_f(p.connect_failures, '{}')}",
        _f(p.updates_per_s, "{:,.0f}"),
        _f(p.bytes_per_update, "{:,.0f}"),
        _f(p.delivery_ratio, "{:.3f}"),
        f"{_f(p.p50_ms, '{:.2f}')} / {_f(p.p99_ms, '{:.2f}')}",
        _f(p.server_cpu_pct),
        _f(p.server_cpu_us_per_update, "{:.1f}"),
        _f(p.server_rss_mb_max),
        lg,
        _f(p.host_other_cores, "{:.2f}"),
        notes,
    ]


def table(rows: list[list[str]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [list(header), *rows]) for i in range(len(header))]
    right = {i for i, h in enumerate(header) if h not in ("server", "deflate", "notes")}

    def fmt(r: list[str] | tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def point_table(points: list[Point]) -> str:
    return table([row(p) for p in points], COLUMNS)


def ratios(points: list[Point]) -> list[tuple[int, bool, float | None, float | None, float | None]]:
    """(C, deflate, marketsrv µs/update, daphne µs/update, ratio) for each pair of points."""
    out = []
    keys = sorted({(p.clients, p.deflate) for p in points}, key=lambda k: (k[1], k[0]))
    for c, d in keys:
        ms = next(
            (p for p in points if (p.server, p.clients, p.deflate) == ("marketsrv", c, d)), None
        )
        dj = next((p for p in points if (p.server, p.clients, p.deflate) == ("daphne", c, d)), None)
        a = ms.server_cpu_us_per_update if ms and ms.ok else None
        b = dj.server_cpu_us_per_update if dj and dj.ok else None
        out.append((c, d, a, b, round(a / b, 3) if a is not None and b else None))
    return out


def ratio_table(points: list[Point]) -> str:
    rows = [
        [str(c), "offered" if d else "-", _f(a, "{:.1f}"), _f(b, "{:.1f}"), _f(r, "{:.3f}")]
        for c, d, a, b, r in ratios(points)
    ]
    return table(
        rows, ("C", "deflate", "marketsrv µs/update", "daphne µs/update", "marketsrv/daphne")
    )


SERVED_DELIVERY, SERVED_P99_MS = 0.95, 100.0  # "serves" these clients: this much, this fast


def serves(p: Point) -> bool:
    return bool(
        p.ok
        and not p.deflate
        and (p.delivery_ratio or 0) >= SERVED_DELIVERY
        and p.p99_ms is not None
        and p.p99_ms < SERVED_P99_MS
    )


def most_served(points: list[Point], server: str) -> int:
    """The most clients `server` served (0: none of the counts tried)."""
    return max((p.clients for p in points if p.server == server and serves(p)), default=0)


def summary(points: list[Point], clients: list[int], meta: dict[str, Any]) -> dict[str, Any]:
    rs = ratios(points)
    plain = [r for c, d, _, _, r in rs if not d and r is not None]
    top = max(clients) if clients else None

    def at(server: str) -> Point | None:
        return next(
            (p for p in points if (p.server, p.clients, p.deflate) == (server, top, False)), None
        )

    ms, dj = at("marketsrv"), at("daphne")
    deflate = [(c, r) for c, d, _, _, r in rs if d]
    ms_deflate = [p for p in points if p.server == "marketsrv" and p.deflate]
    return {
        **meta,
        "cpu_per_update_ratio": round(statistics.median(plain), 3) if plain else None,
        "cpu_per_update_ratios": {str(c): r for c, d, _, _, r in rs if not d},
        "deflate_cpu_per_update_ratios": {str(c): r for c, r in deflate},
        "marketsrv_deflate_accepted": ms_deflate[0].deflate_accepted if ms_deflate else None,
        "clients_max": top,
        "updates_per_s": ms.updates_per_s if ms else None,
        "delivery_ratio": ms.delivery_ratio if ms else None,
        "p99_ms": ms.p99_ms if ms else None,
        "daphne_updates_per_s": dj.updates_per_s if dj else None,
        "daphne_delivery_ratio": dj.delivery_ratio if dj else None,
        "daphne_p99_ms": dj.p99_ms if dj else None,
        "most_clients_served": {
            s: most_served(points, s) for s in sorted({p.server for p in points})
        },
        "p50_ms": {f"{p.server} c={p.clients}": p.p50_ms for p in points if not p.deflate and p.ok},
        "failed_points": sum(not p.ok for p in points),
        "points": [p.summary() for p in points],
    }
