"""The application: the runtime it serves, the Quart app, and the ASGI app in front of it.

`build_runtime` makes what a server owns (market, simulator, stream hub, trading services over
SQLite). `create_app` wires it into a Quart app (REST, errors, OpenAPI, CORS); the market loop
starts in quart-trio's lifespan nursery when serving starts, so it lives and dies with the app,
and the in-process test client runs the same lifespan. `create_asgi` puts the WebSocket endpoints
in front of it.
"""

from __future__ import annotations

import logging
import random

import trio
from quart_cors import cors
from quart_schema import Info, QuartSchema, security_scheme_blueprint
from quart_trio import QuartTrio

from marketsrv import __version__
from marketsrv.api import docs, operator, register_error_handlers, screen, stocks_blueprint
from marketsrv.api.access_log import AccessLog
from marketsrv.api.accounts import blueprint as accounts_blueprint
from marketsrv.api.admin import blueprint as admin_blueprint
from marketsrv.api.chat import blueprint as chat_blueprint
from marketsrv.api.errors import json_request_class
from marketsrv.api.hosts import HostGuard, allowed_hosts
from marketsrv.api.jsonio import OrjsonProvider
from marketsrv.api.openapi import MarketsrvOpenAPI, serve_off_the_loop
from marketsrv.api.portfolio import blueprint as portfolio_blueprint
from marketsrv.api.proxy import ForwardedFor
from marketsrv.api.trading import blueprint as trading_blueprint
from marketsrv.market import Market, Simulator, load_universe
from marketsrv.market.calendar import Calendar
from marketsrv.market.instruments import universe_currency, universe_version
from marketsrv.memory import MarketMemory, MemorySettings
from marketsrv.private import Relay, UserStreamRouter
from marketsrv.private.chat import ChatRouter
from marketsrv.runtime import EXTENSION_KEY, Runtime, run_market, watch_loop_lag
from marketsrv.settings import Settings
from marketsrv.streams import Hub, HubSettings, Limits
from marketsrv.streams.endpoint import ASGIApp, StreamRouter
from marketsrv.trading import AuthLimits, Trading
from marketsrv.trading.equity import EquityRecorder
from marketsrv.units import DAY_MS

log = logging.getLogger("marketsrv")

MAX_BODY_BYTES = 64 * 1024
MAX_PRIVATE_MESSAGE_BYTES = 16 * 1024 * 1024  # from the primary, through an edge (a resume)


def build_runtime(settings: Settings) -> Runtime:
    """The market, simulator and trading services for these settings (an edge has a market of
    its universe only: its books are mirrors, scale/edge.py).

    Blocking (reads the universe file, opens the database, restores the market's memory and
    reloads open orders): call it before serving, and close the runtime's trading services when
    done.
    """
    if settings.seed < 0:
        settings = settings.replace(seed=random.SystemRandom().randrange(2**31))
    hub_settings = HubSettings(
        max_connections=settings.ws_max_connections,
        slow_client_timeout_s=settings.ws_slow_client_timeout_s,
        dead_client_timeout_s=3 * settings.ws_ping_interval_s or float("inf"),
    )
    market = Market(
        load_universe(settings.universe),
        trade_history=settings.trade_history,
        candle_history=settings.candle_history,
        currency=universe_currency(settings.universe),
        calendar=Calendar(settings.calendar, settings.timezone),
    )
    if settings.role == "edge":
        from marketsrv.scale.edge import EdgeHub  # the bus's client: only when asked for

        edge = EdgeHub(market, hub_settings)
        return Runtime(settings=settings, market=market, simulator=None, hub=edge, bus=edge)
    simulator = None
    if settings.simulate:
        simulator = Simulator(
            market,
            seed=settings.seed,
            tick_interval_ms=settings.tick_interval_ms,
            volatility_scale=settings.volatility_scale,
            active_fraction=settings.active_fraction,
            takers_per_tick=settings.takers_per_tick,
        )
    memory = MarketMemory(
        market,
        simulator,
        MemorySettings(
            history_days=settings.history_days,
            history_minute_days=settings.history_minute_days,
            candle_retention_days=settings.candle_retention_days,
            seed=settings.seed,
        ),
    )
    trading = Trading.open(
        settings.database,
        market,
        synchronous=settings.db_synchronous,
        group_commit=settings.db_group_commit,
        exclusive=True,
        auth=AuthLimits(
            token_ttl_s=settings.token_ttl_hours * 3600,
            hash_concurrency=settings.auth_hash_concurrency,
            login_failures_per_address=settings.login_failures_per_address,
            login_failures_per_account=settings.login_failures_per_account,
            registrations_per_address=settings.registrations_per_address,
        ),
        off_tick_prices=settings.off_tick_prices,
        before_reload=memory.restore,  # the market as it was, before users' orders meet it
    )
    # After the restore: the hub starts from the restored trades, not before them.
    hub = Hub(market, hub_settings)
    relay = Relay(
        trading.store.db,
        retention_ms=int(settings.outbox_retention_days * DAY_MS),
        max_resume=settings.user_stream_max_resume,
        clock=market.clock,
    )
    equity = EquityRecorder(trading.store, market, settings.equity_interval_minutes * 60)
    return Runtime(
        settings=settings, market=market, simulator=simulator, hub=hub, trading_services=trading,
        memory=memory, relay=relay, equity=equity,
    )  # fmt: skip


def cors_origins(settings: Settings) -> tuple[str, ...]:
    return tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip())


def create_app(runtime: Runtime) -> QuartTrio:
    app = QuartTrio("marketsrv", static_folder=None)  # the page's files: api/screen.py
    app.request_class = json_request_class(app.request_class)  # type: ignore[assignment]
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["QUART_SCHEMA_CONVERSION_PREFERENCE"] = "pydantic"
    app.url_map.strict_slashes = False  # Django-style paths answer with and without the slash
    app.extensions[EXTENSION_KEY] = runtime
    QuartSchema(
        app,
        info=Info(title="marketsrv", version=__version__),
        openapi_path="/api/openapi.json",
        swagger_ui_path=None,  # its page loads scripts from a CDN; we serve only the document
        redoc_ui_path=None,
        scalar_ui_path=None,
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        openapi_provider_class=MarketsrvOpenAPI,
    )
    serve_off_the_loop(app)
    security_scheme_blueprint(trading_blueprint, [{"bearer": []}])
    security_scheme_blueprint(admin_blueprint, [{"bearer": []}])
    security_scheme_blueprint(portfolio_blueprint, [{"bearer": []}])
    security_scheme_blueprint(chat_blueprint, [{"bearer": []}])
    app.json = OrjsonProvider(app)  # after QuartSchema, which installs a provider of its own
    register_error_handlers(app)
    app.register_blueprint(stocks_blueprint)
    app.register_blueprint(accounts_blueprint)
    app.register_blueprint(trading_blueprint)
    app.register_blueprint(portfolio_blueprint)
    app.register_blueprint(chat_blueprint)
    app.register_blueprint(admin_blueprint)
    app.register_blueprint(operator.blueprint)
    app.register_blueprint(docs.blueprint)
    app.register_blueprint(screen.blueprint_for(screen.load()))
    origins = list(cors_origins(runtime.settings))
    cors(
        app,
        allow_origin="*" if "*" in origins else origins,
        allow_headers=["Authorization", "Content-Type"],
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        max_age=600,
    )

    # The market's loop runs in quart-trio's lifespan nursery under a scope of its own:
    # quart-trio waits up to 5 s for background tasks at shutdown, and ours never ends by
    # itself, so after_serving cancels it at once.
    market_scope = trio.CancelScope()

    async def market_task(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with market_scope:
            async with trio.open_nursery() as nursery:
                if runtime.relay is not None:
                    await nursery.start(runtime.relay.run)
                if runtime.equity is not None:
                    await nursery.start(runtime.equity.run)
                settings, version = runtime.settings, ""
                if settings.role != "standalone":  # which universe it is (a file read: a thread)
                    version = await trio.to_thread.run_sync(universe_version, settings.universe)
                if settings.role == "edge":
                    from marketsrv.scale.edge import EdgeHub, run_edge

                    assert isinstance(runtime.hub, EdgeHub)
                    await nursery.start(run_edge, runtime.hub, settings, version)
                else:
                    if settings.role == "primary":
                        from marketsrv.scale.primary import Publisher

                        publisher = Publisher(runtime.market, settings, version)
                        runtime.hub.tap, runtime.bus = publisher.tap, publisher
                        await nursery.start(publisher.run)
                    await nursery.start(run_market, runtime)
                await nursery.start(watch_loop_lag, runtime)
                task_status.started()

    @app.before_serving
    async def start_market() -> None:
        await app.nursery.start(market_task)
        if runtime.simulator is not None:
            log.info("simulator running, seed %d", runtime.settings.seed)

    @app.after_serving
    async def stop_market() -> None:
        market_scope.cancel()
        try:
            await runtime.save_market(final=True)  # the last second of the market's history
        except Exception:
            log.exception("the market's last state could not be saved")
        if runtime.trading_services is not None:
            # Drains the writer: every acknowledged write is already durable, this ends the rest.
            await trio.to_thread.run_sync(runtime.trading_services.close)

    return app


def create_asgi(runtime: Runtime) -> ASGIApp:
    """The whole server as one ASGI app: the client's address from trusted proxies (if any), the
    access log (if on), the Host check, then the stream endpoints in front of the Quart app."""
    settings = runtime.settings
    limits = Limits(
        max_symbols=settings.ws_max_symbols,
        max_messages_per_s=settings.ws_max_messages_per_s,
        close_timeout_s=settings.ws_close_timeout_s,
    )
    app: ASGIApp = create_app(runtime)
    if settings.role == "edge":
        from marketsrv.scale.edge import EdgeHub
        from marketsrv.scale.forward import Forwarder
        from marketsrv.scale.sockets import PrivateSockets

        assert isinstance(runtime.hub, EdgeHub)
        ws_base = "ws" + settings.primary_url.rstrip("/")[len("http") :]  # http(s) -> ws(s)
        sockets = PrivateSockets(
            ws_base, MAX_PRIVATE_MESSAGE_BYTES, settings.ws_max_message_bytes,
            settings.ws_max_connections, settings.ws_slow_client_timeout_s,
        )  # fmt: skip
        runtime.hub.also_close.append(sockets.close_all)
        app = Forwarder(app, settings.primary_url, MAX_BODY_BYTES, sockets, cors_origins(settings))
    router: ASGIApp = StreamRouter(app, runtime.hub, limits, settings.ws_fast_path)
    if runtime.relay is not None and runtime.trading_services is not None:
        router = UserStreamRouter(
            router, runtime.relay, runtime.trading_services, runtime.hub, limits,
            settings.ws_fast_path,
        )  # fmt: skip
        router = ChatRouter(
            router, runtime.trading_services, runtime.hub, limits, settings.ws_fast_path,
            runtime.presence, settings.chat_messages_per_minute,
        )  # fmt: skip
    app = HostGuard(router, allowed_hosts(settings.allowed_hosts, settings.host))
    if settings.access_log:
        app = AccessLog(app)
    return ForwardedFor(app, settings.proxy_hops) if settings.proxy_hops else app
