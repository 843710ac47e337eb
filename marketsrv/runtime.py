"""What one running server owns, reachable from request handlers through `current_runtime()`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from quart import current_app

from marketsrv.market import Market, Simulator
from marketsrv.settings import Settings

EXTENSION_KEY = "marketsrv"


@dataclass
class Runtime:
    settings: Settings
    market: Market
    simulator: Simulator | None
    started_monotonic: float = field(default_factory=time.monotonic)
    simulator_running: bool = False


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions[EXTENSION_KEY]
    return runtime
