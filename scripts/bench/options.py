"""The options both benchmarks share, with the same names, defaults and checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .env import ROOT


def client_counts(limit: int, unique: bool) -> Callable[[str], list[int]]:
    """The argparse type of a comma-separated list of client counts, 0..limit (0s dropped);
    `unique`: sorted, without repeats."""

    def client_list(text: str) -> list[int]:
        out = [int(x) for x in text.replace(" ", "").split(",") if x]
        if any(not 0 <= c <= limit for c in out):
            raise argparse.ArgumentTypeError(
                f"client counts must be between 0 and {limit} (0: none)"
            )
        return sorted(set(c for c in out if c > 0)) if unique else [c for c in out if c > 0]

    return client_list


def new_parser(
    doc: str,
    clients: Callable[[str], list[int]],
    default_clients: list[int],
    duration: float,
    warmup_help: str,
    short_duration: bool = False,
) -> argparse.ArgumentParser:
    """The parser with --clients, --duration (-T too when `short_duration`) and --warmup."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--clients", type=clients, default=default_clients, help="comma-separated client counts"
    )
    flags = ("-T", "--duration") if short_duration else ("--duration",)
    p.add_argument(*flags, type=float, default=duration, help="measurement window, s")
    p.add_argument("--warmup", type=float, default=2.0, help=warmup_help)
    return p


def add_server_options(p: argparse.ArgumentParser, quiet_max_help: str) -> None:
    """--marketsrv-arg, --marketsrv-bin, --out and the quiet-host / noisy-point options."""
    p.add_argument(
        "--marketsrv-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra marketsrv flag (repeatable; use --marketsrv-arg=--flag)",
    )
    p.add_argument("--marketsrv-bin", type=Path, default=ROOT / ".venv" / "bin" / "marketsrv")
    p.add_argument("--out", type=Path, default=None, help="append each point's JSON to FILE")
    p.add_argument("--quiet-max", type=float, default=180.0, help=quiet_max_help)
    p.add_argument("--quiet-secs", type=int, default=10, help="quiet seconds needed in a row")
    p.add_argument(
        "--max-other", type=float, default=0.1, help="other busy cores above which a point is noisy"
    )
    p.add_argument(
        "--redo-noisy", type=int, default=1, help="times a noisy point is redone on a fresh server"
    )


def check_common(
    p: argparse.ArgumentParser, a: argparse.Namespace, run_ok: bool, run_msg: str
) -> None:
    """--clients not empty; `run_ok` (the window's bounds, else `run_msg`); the quiet options."""
    if not a.clients:
        p.error("--clients needs at least one count")
    if not run_ok:
        p.error(run_msg)
    if not (0 <= a.quiet_max <= 3600 and 1 <= a.quiet_secs <= 60 and 0 <= a.redo_noisy <= 5):
        p.error("need 0 <= --quiet-max <= 3600, 1 <= --quiet-secs <= 60, 0 <= --redo-noisy <= 5")
