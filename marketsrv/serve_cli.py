"""`marketsrv` serving: bind the port, build the runtime, serve until SIGINT or SIGTERM (a second
signal stops at once); or, with `--get PATH`, answer one in-process request and exit."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
from pathlib import Path

import trio

from marketsrv import __version__, logs, scenario_cli, users_cli
from marketsrv.api.hosts import is_loopback
from marketsrv.app import build_runtime, create_app
from marketsrv.market import UniverseError
from marketsrv.market.instruments import universe_version
from marketsrv.runtime import Runtime
from marketsrv.server import listen, serve
from marketsrv.settings import Settings, public_settings
from storage import StorageError

log = logging.getLogger("marketsrv")


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


def main(settings: Settings, get: str | None) -> int:
    logs.setup(settings.log_level, settings.log_format)  # before anything that logs
    if settings.proxy_hops and not is_loopback(settings.host):
        log.warning(
            "proxy_hops = %d on %s: clients that reach this port directly can claim any address;"
            " bind to loopback behind the proxy",
            settings.proxy_hops,
            settings.host,
        )
    if settings.role != "standalone":
        try:  # here, not at the first connection to the bus: a missing extra is a setup error
            import marketsrv.scale.bus
            import marketsrv.scale.forward  # noqa: F401
        except ImportError as exc:
            print(f"marketsrv: a {settings.role} needs the scale extra ({exc.name} is missing):"
                  " pip install 'marketsrv[scale]'", file=sys.stderr)  # fmt: skip
            return 2
    sock = None
    if get is None:
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
    if get is not None:
        return trio.run(_get, runtime, get)
    assert sock is not None
    if settings.role == "edge":
        log.info(
            "marketsrv %s; an edge of %s over the bus %s; universe version %s",
            __version__,
            settings.primary_url,
            public_settings(settings)["bus_url"],
            universe_version(settings.universe),
        )
        trio.run(_serve_until_signal, runtime, sock, False)
        return 0
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
