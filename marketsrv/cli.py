"""The command line: `marketsrv` serves; every setting is also a flag.

marketsrv [--config FILE] [--port 0] [--universe FILE] ...   serve until SIGINT/SIGTERM
marketsrv --help-settings                                    the settings table
marketsrv --get /api/stocks/SCOM/                            one in-process request, no socket
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from marketsrv import __version__, backup_cli, logs, scenario_cli, users_cli
from marketsrv.api.hosts import is_loopback
from marketsrv.app import build_runtime, create_app
from marketsrv.market import UniverseError
from marketsrv.market.instruments import universe_version
from marketsrv.runtime import Runtime
from marketsrv.server import listen, serve
from marketsrv.settings import SettingsError, describe, load, settings_table
from storage import StorageError

log = logging.getLogger("marketsrv")


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


async def _serve_until_signal(runtime: Runtime, sock: socket.socket, demo: bool) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def shutdown_trigger() -> None:
                async for signum in signals:
                    log.info("%s received, shutting down", signal.Signals(signum).name)
                    nursery.start_soon(force_on_second_signal)
                    return

            async def force_on_second_signal() -> None:
                async for _ in signals:
                    log.warning("second signal: stopping now")
                    nursery.cancel_scope.cancel()
                    return

            async def server(*, task_status: trio.TaskStatus[str]) -> None:
                await serve(
                    runtime.settings,
                    runtime=runtime,
                    sock=sock,
                    shutdown_trigger=shutdown_trigger,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()  # drained: stop watching for a second signal

            url = await nursery.start(server)
            if demo:
                print(
                    f"demo user: {users_cli.DEMO_USERNAME} / {users_cli.DEMO_PASSWORD} "
                    "(POST /api/accounts/login/; turn off with --demo-user off)",
                    flush=True,
                )
            print(f"listening on {url}", flush=True)


async def _get(runtime: Runtime, path: str) -> int:
    app = create_app(runtime)
    async with app.test_app() as test_app:
        response = await test_app.test_client().get(path)
        body = await response.get_data(as_text=True)
    print(body)
    return 0 if response.status_code < 400 else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["users"]:
        return users_cli.main(argv[1:])
    if argv[:1] == ["scenario"]:
        return scenario_cli.main(argv[1:])
    if argv[:1] == ["backup"]:
        return backup_cli.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.help_settings:
        print("\n".join(describe()))
        return 0
    cli = {
        s.name: getattr(args, s.name) for s in settings_table() if getattr(args, s.name) is not None
    }
    config = args.config or os.environ.get("MARKETSRV_CONFIG")
    try:
        settings = load(cli, Path(config) if config else None)
    except SettingsError as exc:
        print(f"marketsrv: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_format)  # before anything that logs
    sock = None
    if args.get is None:
        try:  # first: nothing is opened or announced unless the port is ours
            sock = listen(settings)
        except OSError as exc:
            print(f"marketsrv: {_listen_error(settings.host, settings.port, exc)}", file=sys.stderr)
            return 2
    try:
        runtime = build_runtime(settings)
    except (UniverseError, StorageError) as exc:
        if sock is not None:
            sock.close()
        print(f"marketsrv: {exc}", file=sys.stderr)
        return 2
    loopback = is_loopback(settings.host)
    trading = runtime.trading_services
    demo = trading is not None and (
        settings.demo_user == "on" or (settings.demo_user == "auto" and loopback)
    )
    if demo and trading is not None:
        users_cli.ensure_demo_user(trading.store.db, admin=settings.demo_user_admin)
    if args.get is not None:
        return trio.run(_get, runtime, args.get)
    assert sock is not None
    try:
        port = sock.getsockname()[1]
        url = scenario_cli.server_url(settings.host, port)
        scenario_cli.write_operator_token(settings.database, runtime.operator_token, url)
    except OSError as exc:  # scenarios then need an admin's token; the server runs anyway
        log.warning("cannot write the operator token beside the database: %s", exc)
    log.info(
        "marketsrv %s; database %s; universe %s (%d instruments, version %s)",
        __version__,
        Path(settings.database).resolve(),
        Path(settings.universe).resolve() if settings.universe else "bundled NSE",
        len(runtime.market.instruments),
        universe_version(settings.universe),
    )
    try:
        trio.run(_serve_until_signal, runtime, sock, demo)
    finally:
        scenario_cli.operator_token_path(settings.database).unlink(missing_ok=True)
    return 0


def _listen_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another marketsrv?); "
            "stop that server or pick another port, e.g. --port 0 for any free one"
        )
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def run() -> None:
    sys.exit(main())
