"""The quart-trio application: routes, error handling, OpenAPI, and the market's long-lived tasks.

`create_app` wires a `Runtime` (settings, market, simulator) into a fresh app. The simulator is
started in quart-trio's lifespan nursery when the server starts serving, so it lives and dies with
the app; the in-process test client runs the same lifespan.
"""

from __future__ import annotations

import logging
import random

import trio
from quart_schema import Info, QuartSchema
from quart_trio import QuartTrio

from marketsrv import __version__
from marketsrv.api import register_error_handlers, stocks_blueprint
from marketsrv.api.errors import json_request_class
from marketsrv.api.jsonio import OrjsonProvider
from marketsrv.market import Market, Simulator, load_universe
from marketsrv.runtime import EXTENSION_KEY, Runtime
from marketsrv.settings import Settings

log = logging.getLogger("marketsrv")

MAX_BODY_BYTES = 64 * 1024


def build_runtime(settings: Settings) -> Runtime:
    """The market and simulator for these settings (reads the universe file; call before serving)."""
    market = Market(
        load_universe(settings.universe),
        trade_history=settings.trade_history,
        candle_history=settings.candle_history,
    )
    simulator = None
    if settings.simulate:
        seed = settings.seed if settings.seed >= 0 else random.SystemRandom().randrange(2**31)
        settings = settings.replace(seed=seed)
        simulator = Simulator(
            market,
            seed=seed,
            tick_interval_ms=settings.tick_interval_ms,
            volatility_scale=settings.volatility_scale,
            active_fraction=settings.active_fraction,
            takers_per_tick=settings.takers_per_tick,
        )
    return Runtime(settings=settings, market=market, simulator=simulator)


def create_app(runtime: Runtime) -> QuartTrio:
    app = QuartTrio("marketsrv")
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
    )
    app.json = OrjsonProvider(app)  # after QuartSchema, which installs a provider of its own
    register_error_handlers(app)
    app.register_blueprint(stocks_blueprint)

    # The market's long-lived tasks run in quart-trio's lifespan nursery under a scope of their
    # own: quart-trio waits up to 5 s for background tasks at shutdown, and ours never end by
    # themselves, so after_serving cancels them at once.
    market_scope = trio.CancelScope()

    async def market_tasks(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with market_scope:
            async with trio.open_nursery() as nursery:
                if runtime.simulator is not None:
                    await nursery.start(runtime.simulator.run)
                    runtime.simulator_running = True
                    log.info("simulator running, seed %d", runtime.settings.seed)
                task_status.started()
        runtime.simulator_running = False

    @app.before_serving
    async def start_market() -> None:
        await app.nursery.start(market_tasks)

    @app.after_serving
    async def stop_market() -> None:
        market_scope.cancel()

    return app
