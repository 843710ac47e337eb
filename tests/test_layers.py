"""The layers of marketsrv, written down and enforced: every import, lazy ones included, points
down (or stays inside its own package).

    leaves    marketsrv (__version__), .units, .errors, .settings, .logs  import nothing of ours
    storage   storage                                                    nothing of marketsrv
    1         marketsrv.engine                                           the order books, no I/O
    2         marketsrv.market                                           instruments, stats, sim
    3         marketsrv.streams | .trading | .memory | .chat              none knows another
    4         marketsrv.runtime, marketsrv.private                      what a server owns;
              (private: the signed-in sockets, /ws/user/ joining trading's outbox to the
              streams' sockets and /ws/chat/ the chat's messages)
    5         marketsrv.api                                              REST over the runtime
    6         marketsrv.app, .server, .cli, .*_cli, .__main__              the top
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.builders import REPO

LAYERS: dict[str, int] = {
    "marketsrv.units": 0,
    "marketsrv.errors": 0,
    "marketsrv.settings": 0,
    "marketsrv.logs": 0,
    "marketsrv.data": 0,
    "storage": 0,
    "marketsrv.engine": 1,
    "marketsrv.market": 2,
    "marketsrv.streams": 3,
    "marketsrv.trading": 3,
    "marketsrv.memory": 3,
    "marketsrv.chat": 3,
    "marketsrv.runtime": 4,
    "marketsrv.private": 4,
    "marketsrv.api": 5,
    "marketsrv.scale": 5,
    "marketsrv.app": 6,
    "marketsrv.server": 6,
    "marketsrv.cli": 6,
    "marketsrv.users_cli": 6,
    "marketsrv.scenario_cli": 6,
    "marketsrv.backup_cli": 6,
    "marketsrv.serve_cli": 6,
    "marketsrv.__main__": 6,
    "marketsrv": 0,  # the package's __init__: its version only
}
# Same layer, still apart: the streams never reach into trading, nor trading into the streams.
APART = {
    frozenset({"marketsrv.streams", "marketsrv.trading"}),
    frozenset({"marketsrv.streams", "marketsrv.memory"}),
    frozenset({"marketsrv.trading", "marketsrv.memory"}),
    frozenset({"marketsrv.chat", "marketsrv.streams"}),
    frozenset({"marketsrv.chat", "marketsrv.trading"}),
    frozenset({"marketsrv.chat", "marketsrv.memory"}),
}


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: its longest prefix in LAYERS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name == "marketsrv" and module != name:
            break  # the bare package (its version) is a unit of its own, never a fallback
        if name in LAYERS:
            return name
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in the file, at any depth (lazy ones count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # relative: resolved against this package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, name] if name else base)
            for alias in node.names:  # `from marketsrv import cli` imports marketsrv.cli
                sub = root.joinpath(*name.split("."), alias.name)
                whole = sub.is_dir() or sub.with_suffix(".py").is_file()
                found.append((node.lineno, f"{name}.{alias.name}" if whole else name))
    return [(line, name) for line, name in found if name.split(".")[0] in ("marketsrv", "storage")]


def violations(root: Path) -> list[str]:
    problems = []
    for path in sorted([*root.glob("marketsrv/**/*.py"), *root.glob("storage/**/*.py")]):
        here = unit_of(module_name(path, root))
        for line, target in imports_of(path, root):
            there = unit_of(target)
            if there == here:
                continue
            rule = None
            if here == "storage":
                rule = "storage imports nothing of marketsrv"
            elif LAYERS[here] == 0:
                rule = "a leaf imports nothing of ours"
            elif LAYERS[there] > LAYERS[here]:
                rule = f"layer {LAYERS[here]} may not import layer {LAYERS[there]}"
            elif frozenset({here, there}) in APART:
                rule = f"{here} and {there} stay apart"
            if rule:
                problems.append(
                    f"{path.relative_to(root)}:{line}: {here} imports {target} ({rule})"
                )
    return problems


def test_every_import_points_down_the_layers() -> None:
    assert violations(REPO) == []


def test_a_backwards_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a copy of the tree with one lazy import turned around."""
    import shutil

    for package in ("marketsrv", "storage"):
        shutil.copytree(REPO / package, tmp_path / package)
    book = tmp_path / "marketsrv" / "engine" / "book.py"
    book.write_text(
        book.read_text(encoding="utf-8") + "\n\ndef _late() -> None:\n"
        "    from marketsrv.api.stocks import blueprint  # noqa: F401\n",
        encoding="utf-8",
    )
    found = violations(tmp_path)
    assert len(found) == 1 and "marketsrv.engine imports marketsrv.api.stocks" in found[0]


@pytest.mark.parametrize("leaf", ["units", "errors", "settings", "logs"])
def test_leaves_import_nothing_of_ours(leaf: str) -> None:
    """A leaf module imports nothing of ours; a leaf package only its own modules."""
    module = REPO / "marketsrv" / f"{leaf}.py"
    files = [module] if module.exists() else sorted((REPO / "marketsrv" / leaf).glob("*.py"))
    assert files
    for path in files:
        outside = [m for _, m in imports_of(path) if not m.startswith(f"marketsrv.{leaf}")]
        assert outside == [], path
