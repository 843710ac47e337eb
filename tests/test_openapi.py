"""`/api/openapi.json` is valid OpenAPI, lists every operation with its errors, lists nothing that
answers 405, and agrees with the answers the server really sends (field by field, both ways)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from marketsrv.app import create_app
from tests.builders import ServerFactory, in_process_runtime, register, simulated_market


@pytest.fixture
async def served(
    start_server: ServerFactory,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any], dict[str, str]]]:
    """A live server, its document, and a funded user who holds shares and has an open order."""
    url, runtime = await start_server(seed=8)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        auth = await register(http, "auditor", cash=1_000_000)
        buy = {"symbol": "SCOM", "side": "buy", "quantity": 100, "order_type": "market"}
        assert (await http.post("/api/trading/orders/", json=buy, headers=auth)).status_code == 201
        rest = {"symbol": "KCB", "side": "buy", "quantity": 10, "price": "50.00"}
        assert (await http.post("/api/trading/orders/", json=rest, headers=auth)).status_code == 201
        # The operator's token opens /api/admin/ (a user's token there is a 403 not_admin).
        http.headers["X-Test-Operator"] = runtime.operator_token
        yield http, (await http.get("/api/openapi.json")).json(), auth


async def test_the_document_validates(
    served: tuple[httpx.AsyncClient, dict[str, Any], dict[str, str]],
) -> None:
    _, document, _ = served
    validate(document)


async def test_every_operation_lists_its_success_and_error_responses(
    served: tuple[httpx.AsyncClient, dict[str, Any], dict[str, str]],
) -> None:
    _, document, _ = served
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert statuses & {"200", "201"}, (method, path)
            assert {"400", "500"} <= statuses, (method, path)
            if path.startswith("/api/trading/"):
                assert "401" in statuses, (method, path)
            for status, response in operation["responses"].items():
                if status >= "400":
                    assert response["description"].startswith("codes: "), (method, path)


def _fill(path: str) -> str:
    return path.replace("{symbol}", "SCOM").replace("{raw_id}", "1").replace("{raw_user}", "1")


async def test_no_documented_operation_answers_405(
    served: tuple[httpx.AsyncClient, dict[str, Any], dict[str, str]],
) -> None:
    http, document, auth = served
    for path, operations in document["paths"].items():
        for method in operations:
            answer = await http.request(method.upper(), _fill(path), headers=auth, json={})
            assert answer.status_code != 405, (method, path)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _compare(document: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """Every documented property is sent and every sent key is documented, all the way down."""
    schema = _resolve(document, schema)
    if "anyOf" in schema:  # X | None
        if value is None:
            return
        schema = _resolve(document, next(s for s in schema["anyOf"] if s.get("type") != "null"))
    if schema.get("type") == "array":
        for i, item in enumerate(value[:3]):
            _compare(document, schema["items"], item, f"{where}[{i}]")
    elif schema.get("type") == "object" and "properties" in schema:
        assert isinstance(value, dict), where
        assert set(value) == set(schema["properties"]), (
            where,
            "sent, not documented:",
            set(value) - set(schema["properties"]),
            "documented, not sent:",
            set(schema["properties"]) - set(value),
        )
        for key, sub in schema["properties"].items():
            _compare(document, sub, value[key], f"{where}.{key}")


async def test_documented_answers_are_the_answers_sent(
    served: tuple[httpx.AsyncClient, dict[str, Any], dict[str, str]],
) -> None:
    http, document, auth = served
    checked = 0
    for path, operations in document["paths"].items():
        operation = operations.get("get")
        if operation is None or "{raw_id}" in path:
            continue
        headers = auth
        if path.startswith("/api/admin/"):
            headers = {"Authorization": f"Bearer {http.headers['X-Test-Operator']}"}
        answer = await http.get(_fill(path), headers=headers)
        assert answer.status_code == 200, (path, answer.text)
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        _compare(document, schema, answer.json(), path)
        checked += 1
    orders = (await http.get("/api/trading/orders/", headers=auth)).json()
    one = await http.get(f"/api/trading/orders/{orders[0]['id']}/", headers=auth)
    schema = document["paths"]["/api/trading/orders/{raw_id}/"]["get"]["responses"]["200"]
    _compare(document, schema["content"]["application/json"]["schema"], one.json(), "order")
    assert checked >= 15


# Routes that are not the JSON API: the page, its files, the docs, and Prometheus' text.
NOT_API = {"/", "/static/<path:name>", "/docs", "/docs/<name>", "/metrics", "/api/openapi.json"}


async def test_the_document_lists_every_route_of_the_app(
    served: tuple[httpx.AsyncClient, dict[str, Any], dict[str, str]],
) -> None:
    _, document, _ = served
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    app = create_app(in_process_runtime(simulated_market()[0]))
    routes = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule not in NOT_API
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    # GET /api/stocks/batch/ exists only to answer 405 (not to read "batch" as a symbol).
    assert routes - {("GET", "/api/stocks/batch/")} == documented
