"""Every error code the server can send is documented: the codes are read from the source (every
raise of the error family, every stream error frame, every JSON error body) and looked up in
docs/protocol.md, so a new code cannot ship without its line in the reference."""

from __future__ import annotations

import ast

from pydantic import BaseModel

from marketsrv import errors
from tests.builders import REPO

FAMILY = {name for name in errors.__all__ if name != "MarketsrvError"}


def _model_of(obj: object, module: str) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module


def dynamic_codes() -> dict[str, list[str]]:
    """Codes built from a field's name: every field of every request and query model."""
    from marketsrv.api import schemas
    from marketsrv.api.openapi import field_codes
    from marketsrv.trading import requests

    found = {"bad_query": ["invalid_query"]}
    models = [m for m in vars(requests).values() if _model_of(m, requests.__name__)]
    models += [
        m
        for n, m in vars(schemas).items()
        if n.endswith("Query") and _model_of(m, schemas.__name__)
    ]
    for model in models:
        found[model.__name__] = field_codes(model)
    return found


def literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def codes_in_source() -> dict[str, str]:
    """code -> where it is raised (file:line)."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "marketsrv").rglob("*.py")):
        if path.parent.name == "cli" or path.name in ("cli.py", "users_cli.py"):
            continue  # the command line prints, it does not answer
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            code = None
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in FAMILY and node.args:
                    code = literal(node.args[0])
                elif name in ("error_frame", "error_response") and len(node.args) > 1:
                    code = literal(node.args[1])
                elif name == "error_body" and node.args:
                    code = literal(node.args[0])
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if key is not None and literal(key) == "code":
                        code = literal(value)
            if code:
                found.setdefault(code, f"{path.relative_to(REPO)}:{node.lineno}")
    from marketsrv.api.errors import _HTTP_CODES

    for code in _HTTP_CODES.values():
        found.setdefault(code, "marketsrv/api/errors.py")
    for where, codes in dynamic_codes().items():
        for code in codes:
            found.setdefault(code, where)
    return found


def test_every_error_code_is_in_the_protocol_reference() -> None:
    docs = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    codes = codes_in_source()
    assert len(codes) > 40  # the scan itself works
    missing = {c: where for c, where in codes.items() if f"`{c}`" not in docs}
    assert missing == {}, "add these codes to docs/protocol.md"
