"""The command line: `marketsrv` serves; every setting is also a flag.

marketsrv [--config FILE] [--port 0] [--universe FILE] ...   serve until SIGINT/SIGTERM
marketsrv --help-settings                                    the settings table
marketsrv --get /api/stocks/SCOM/                            one in-process request, no socket
marketsrv users | scenario | backup ...                      the subcommands (each has --help)

This module reads the command line and the settings only; the server (serve_cli.py) and each
subcommand are imported when they are asked for, so `--version`, `backup` (often from cron) and
the others start without loading the web stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from marketsrv import __version__
from marketsrv.settings import SettingsError, describe, load_for_command, settings_table

SUBCOMMANDS = {
    "users": "marketsrv.users_cli",
    "scenario": "marketsrv.scenario_cli",
    "backup": "marketsrv.backup_cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketsrv",
        description="A realtime market-data and paper-trading server on one port.",
        epilog="Settings also come from a TOML file (--config, or MARKETSRV_CONFIG) and from "
        "MARKETSRV_* environment variables; flags win. See --help-settings. Accounts from the "
        "shell: marketsrv users create NAME... (marketsrv users --help). Demo scenarios on a "
        "running server: marketsrv scenario halt SCOM (marketsrv scenario --help). A copy of "
        "the live database: marketsrv backup FILE (marketsrv backup --help).",
    )
    parser.add_argument("--version", action="version", version=f"marketsrv {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings")
    parser.add_argument("--help-settings", action="store_true", help="print every setting and exit")
    parser.add_argument(
        "--get", metavar="PATH", help="make one in-process GET request, print the body and exit"
    )
    group = parser.add_argument_group("settings")
    for s in settings_table():
        if s.type is bool:
            group.add_argument(
                s.flag,
                dest=s.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{s.help} (default: {str(s.default).lower()})",
            )
        else:
            group.add_argument(
                s.flag,
                dest=s.name,
                metavar=s.type.__name__.upper(),
                default=None,
                help=f"{s.help} (default: {s.default!r})",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in SUBCOMMANDS:
        command: int = importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
        return command
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.help_settings:
        print("\n".join(describe()))
        return 0
    flags = {s.name: getattr(args, s.name) for s in settings_table()}
    try:
        settings = load_for_command(args.config, **flags)
    except SettingsError as exc:
        print(f"marketsrv: {exc}", file=sys.stderr)
        return 2
    from marketsrv import serve_cli  # the web stack: only when serving

    return serve_cli.main(settings, args.get)


def run() -> None:
    sys.exit(main())
