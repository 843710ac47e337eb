"""The API's documentation at `/docs`, readable in a browser with no network: HTML made here.

`/docs` is the REST reference, rendered from the OpenAPI document (the types that validate are
the types it shows); `/docs/protocol` and `/docs/settings` are `docs/protocol.md` (the streams,
with every message and close code) and `docs/settings.md`, which the package carries. Each page is
made once, on a worker thread, and then answered from memory; its one stylesheet is the page's
own (`/static/css/docs.css`), so the strict CSP of the screen applies here too.
"""

from __future__ import annotations

import contextvars
import html
import re
from functools import cache
from typing import Any

import trio
from markdown_it import MarkdownIt
from pydantic import BaseModel, Field
from quart import Blueprint, Response, current_app
from quart_schema import hide, validate_response

from marketsrv import __version__
from marketsrv.api.errors import not_found_page, wants_page
from marketsrv.api.screen import PAGE_HEADERS, shipped
from marketsrv.errors import NotFound

blueprint = Blueprint("docs", __name__)

MANUAL_ROOT = shipped("manual", "docs")
MANUAL = {
    "protocol": "The wire protocol",
    "settings": "Settings",
    "deploy": "Deploying",
    "scaling": "Scaling out",
}
METHODS = ("get", "post", "put", "patch", "delete")
_REFERENCE = "marketsrv.docs.reference"  # the app's reference page, made once


def _code(text: str) -> str:
    """Escaped text, with `backticks` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return name, doc["components"]["schemas"][name]
    return None, schema


def type_of(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    """A schema as a short phrase of HTML: `integer ≥ 1`, `array of <a>Level</a>`, ..."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f'<a href="#schema-{name}">{name}</a>'
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        kinds = [type_of(doc, s) for s in options if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in options)
        return " | ".join(kinds) + (" or null" if nullable else "")
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(doc, schema["allOf"][0])
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{html.escape(str(v))}</code>" for v in schema["enum"])
    if "const" in schema:
        return f"<code>{html.escape(str(schema['const']))}</code>"
    kind = schema.get("type", "any")
    if kind == "array":
        return "array of " + type_of(doc, schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "object of " + type_of(doc, schema["additionalProperties"])
    notes = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤")):
        if key in schema:
            notes.append(f"{sign} {schema[key]}")
    if "maxLength" in schema:
        notes.append(f"{schema.get('minLength', 0)}–{schema['maxLength']} characters")
    if "format" in schema:
        notes.append(html.escape(schema["format"]))
    if "pattern" in schema:
        notes.append(f"matching <code>{html.escape(schema['pattern'])}</code>")
    return str(kind) + (f" ({', '.join(notes)})" if notes else "")


def fields(doc: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> str:
    """An object's properties as a table; anything else as its type."""
    _, schema = _resolve(doc, schema)
    props = schema.get("properties")
    if not props:
        return f"<p>{type_of(doc, schema)}</p>"
    required = set(schema.get("required", []))
    rows = []
    for name, sub in props.items():
        about = _code(sub.get("description", ""))
        if "default" in sub and sub["default"] is not None:
            about += f" Default <code>{html.escape(str(sub['default']))}</code>."
        if sub.get("properties") and depth < 2:  # an inline object: its own table, nested
            about += fields(doc, sub, depth + 1)
        need = "required" if name in required else ""
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{type_of(doc, sub)}</td>"
            f"<td>{need}</td><td>{about}</td></tr>"
        )
    return (
        "<table><thead><tr><th>field</th><th>type</th><th></th><th>meaning</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    anchor = op.get("operationId", f"{method}-{path}")
    out = [
        f'<article class="op" id="{html.escape(anchor)}"><h3><span class="method {method}">'
        f"{method.upper()}</span> <code>{html.escape(path)}</code></h3>"
    ]
    if op.get("summary"):
        out.append(f"<p>{_code(op['summary'])}</p>")
    if op.get("description"):
        out += [f"<p>{_code(p)}</p>" for p in op["description"].split("\n\n")]
    if op.get("security"):
        out.append('<p class="auth">Needs a token: <code>Authorization: Bearer …</code></p>')
    params = [p for p in op.get("parameters", []) if p.get("in") in ("path", "query")]
    if params:
        rows = "".join(
            f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
            f"<td>{type_of(doc, p.get('schema', {}))}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td>{_code(p.get('description', ''))}</td></tr>"
            for p in params
        )
        out.append(
            "<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th></th>"
            f"<th>meaning</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        out.append("<h4>Request body (JSON)</h4>" + fields(doc, body.get("schema", {})))
    errors = []
    for code, answer in op.get("responses", {}).items():
        status = str(code)  # quart-schema's own are ints until the document is JSON
        content = answer.get("content", {}).get("application/json")
        if status.startswith("2"):
            out.append(f"<h4>{status} answer</h4>")
            out.append(fields(doc, content["schema"]) if content else "<p>no body</p>")
        else:
            codes = answer.get("description", "").removeprefix("codes: ").split(", ")
            listed = ", ".join(f"<code>{html.escape(c)}</code>" for c in codes if c)
            errors.append(f"<tr><td>{status}</td><td>{listed}</td></tr>")
    if errors:
        out.append(
            '<h4>Errors</h4><table class="errors"><thead><tr><th>status</th><th>codes</th></tr>'
            f"</thead><tbody>{''.join(errors)}</tbody></table>"
        )
    out.append("</article>")
    return "".join(out)


def reference(doc: dict[str, Any]) -> str:
    """The whole REST reference page."""
    groups: dict[str, list[str]] = {}
    for path, ops in doc["paths"].items():
        for method in METHODS:
            if method in ops:
                tag = (ops[method].get("tags") or ["Other"])[0]
                groups.setdefault(tag, []).append(operation(doc, path, method, ops[method]))
    slug = {tag: re.sub(r"[^a-z]+", "-", tag.lower()) for tag in groups}
    nav = "".join(f'<li><a href="#{slug[t]}">{html.escape(t)}</a></li>' for t in groups)
    manual = "".join(
        f'<li><a href="/docs/{name}">{title}</a></li>' for name, title in MANUAL.items()
    )
    sections = "".join(
        f'<section id="{slug[t]}"><h2>{html.escape(t)}</h2>{"".join(ops)}</section>'
        for t, ops in groups.items()
    )
    schemas = "".join(
        f'<article class="schema" id="schema-{name}"><h3>{name}</h3>{fields(doc, s)}</article>'
        for name, s in doc["components"]["schemas"].items()
    )
    intro = """
<p>Every path answers with and without its trailing slash. Bodies are JSON. Amounts are decimal
numbers of the market's currency (KES) with at most two decimals, quantities whole shares, times ISO
8601 in UTC or milliseconds since the epoch where named <code>timestamp</code>.</p>
<p>Sign in with <a href="#post_login"><code>POST /api/accounts/login/</code></a> (or register); send
the token as <code>Authorization: Bearer &lt;token&gt;</code>. Every error is JSON:
<code>{"code", "error", "detail", "message"}</code>, where <code>code</code> is stable (branch on
it) and the other three carry the same human message; field errors add <code>field</code>.</p>
<p>The streams (<code>/ws/market/</code>, <code>/ws/orderbook/&lt;symbol&gt;/</code>,
<code>/ws/user/</code>, <code>/ws/chat/</code>), every message and close code, and the limits are in
<a href="/docs/protocol">the wire protocol</a>. The machine-readable document is
<a href="/api/openapi.json"><code>/api/openapi.json</code></a> (OpenAPI 3).</p>"""
    return page(
        "marketsrv API",
        f"<nav><ul>{nav}<li><a href='#schemas'>Types</a></li></ul><ul>{manual}</ul></nav>"
        f"{intro}{sections}<section id='schemas'><h2>Types</h2>{schemas}</section>",
    )


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/static/css/docs.css">'
        '<link rel="icon" href="/static/favicon.svg"></head><body>'
        f'<header><a href="/docs">marketsrv {__version__}</a> · <a href="/">the trading screen</a>'
        "</header>"
        f"<main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )


@cache
def manual_page(name: str) -> str:
    """One file of docs/ as a page (blocking: reads the file)."""
    text = (MANUAL_ROOT / f"{name}.md").read_text(encoding="utf-8")
    text = re.sub(r"^# .*\n", "", text, count=1)  # the page's own title replaces it
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return page(MANUAL[name], md.render(text))


def _answer(text: str) -> Response:
    return Response(text, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _reference_page() -> str:
    """The reference of this app (blocking: builds the OpenAPI document the first time)."""
    return reference(current_app.extensions["QUART_SCHEMA"].openapi_provider.schema())


@blueprint.get("/docs")
@hide
async def docs() -> Response:
    cached = current_app.extensions.get(_REFERENCE)
    if cached is None:
        # copy_context: the worker thread sees this app as current_app.
        run = contextvars.copy_context().run
        cached = current_app.extensions[_REFERENCE] = await trio.to_thread.run_sync(
            run, _reference_page
        )
    return _answer(cached)


@blueprint.get("/docs/<name>")
@hide
async def manual(name: str) -> Response:
    if name not in MANUAL:
        if wants_page():
            return not_found_page()
        raise NotFound("not_found", "no such page; the documentation starts at /docs")
    try:
        return _answer(await trio.to_thread.run_sync(manual_page, name))
    except FileNotFoundError:  # a package built without that file
        raise NotFound("not_found", "that page is not in this build; see /docs") from None


class ApiIndex(BaseModel):
    """Where things are."""

    name: str
    version: str
    docs: str = Field(description="the readable documentation (HTML)")
    openapi: str = Field(description="this API as an OpenAPI 3 document")
    protocol: str = Field(description="the wire protocol: the streams, errors and limits")
    health: str
    streams: list[str] = Field(description="the WebSocket endpoints")


@blueprint.get("/api/")
@validate_response(ApiIndex)
async def api_index() -> ApiIndex:
    """Where the documentation, the OpenAPI document and the streams are."""
    return ApiIndex(
        name="marketsrv",
        version=__version__,
        docs="/docs",
        openapi="/api/openapi.json",
        protocol="/docs/protocol",
        health="/api/health/",
        streams=["/ws/market/", "/ws/orderbook/<symbol>/", "/ws/user/", "/ws/chat/"],
    )
