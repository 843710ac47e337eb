"""Admin REST: the market's demo scenarios (halt, resume, news jumps, regimes), for operators.

Allowed to an admin user's token, or to the operator token the server writes beside its database
at start (`<database>.operator-token`, readable by its owner only), which `marketsrv scenario`
reads: whoever can read the server's database may already do anything to it.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr
from quart import Blueprint, request
from quart_schema import document_request, document_response

from marketsrv.api.accounts import bearer_token, current_user
from marketsrv.api.openapi import errors
from marketsrv.errors import BadRequest, Forbidden
from marketsrv.market import scenarios
from marketsrv.runtime import current_runtime
from marketsrv.trading.requests import validate_body

blueprint = Blueprint("admin", __name__, url_prefix="/api/admin")


class ScenarioRequest(BaseModel):
    """`POST /api/admin/scenarios/`."""

    model_config = ConfigDict(extra="ignore")

    scenario: StrictStr = Field(description="one of: " + ", ".join(scenarios.NAMES))
    symbols: list[StrictStr] | None = Field(
        None, max_length=500, description="the symbols; null or empty: every one"
    )
    percent: Number | None = Field(
        None,
        description="jump: the move in %, -90 to 100 (default 5); flash_crash: the fall in %,"
        " 0 to 90, its sign ignored (default 8)",
    )
    factor: Number | None = Field(None, description="volatile: times the volatility (default 5)")
    duration_s: Number | None = Field(
        None, description="how long a regime lasts, seconds (default 60, at most a day)"
    )


def _number(value: object) -> object:
    """JSON true is not 1 here: a number is a number."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return value


Number = Annotated[float, BeforeValidator(_number)]


class ScenarioOut(BaseModel):
    detail: str
    market: dict[str, Any]


async def require_admin() -> None:
    runtime = current_runtime()
    if secrets.compare_digest(bearer_token().encode(), runtime.operator_token.encode()):
        return
    user = await current_user()
    if not await runtime.trading().accounts.is_admin(user.id):
        raise Forbidden("not_admin", "only an admin may run scenarios")


def market_json() -> dict[str, Any]:
    runtime = current_runtime()
    market, sim = runtime.market, runtime.simulator
    regimes = {}
    if sim is not None:
        for symbol, agent in sim.agents.items():
            regime = agent.regime
            if regime.name != "normal":
                left = None
                if regime.until_tick is not None:
                    left = max(0.0, (regime.until_tick - sim.ticks) * sim.tick_interval_ms / 1000)
                regimes[symbol] = {"regime": regime.name, "seconds_left": left}
    return {
        "state": market.phase,
        "trading_day": market.session.day.isoformat(),
        "halted": dict(market.halted),
        "regimes": regimes,
    }


@blueprint.post("/scenarios/")
@errors(
    s400=["unknown_scenario", "unknown_symbol", "invalid_percent", "invalid_factor",
          "invalid_duration_s", "simulator_off"],
    s403=["not_admin"],
)  # fmt: skip
@document_request(ScenarioRequest)
@document_response(ScenarioOut)
async def run_scenario() -> dict[str, Any]:
    """Run a demo scenario (admins): halt or resume a symbol, a news jump, volatility, a liquidity
    drought, a flash crash.
    """
    await require_admin()
    body = validate_body(ScenarioRequest, await request.get_json())
    runtime = current_runtime()
    scenario = scenarios.Scenario(
        name=body.scenario.strip().lower(),
        symbols=tuple(dict.fromkeys(s.strip().upper() for s in body.symbols or [])),
        percent=body.percent,
        factor=body.factor,
        duration_s=body.duration_s,
    )
    try:
        detail = scenarios.run(runtime.market, runtime.simulator, scenario)
    except scenarios.ScenarioError as exc:
        raise BadRequest(exc.code, str(exc)) from None
    return {"detail": detail, "market": market_json()}


@blueprint.get("/scenarios/")
@errors(s403=["not_admin"])
@document_response(ScenarioOut)
async def scenario_state() -> dict[str, Any]:
    """The scenarios in force, per symbol (admins)."""
    await require_admin()
    return {"detail": "scenarios: " + ", ".join(scenarios.NAMES), "market": market_json()}
