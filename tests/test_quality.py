"""The code stays typed (mypy --strict) and lint-clean (ruff), so both run with the tests."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.builders import REPO


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "marketsrv", "storage", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", "marketsrv", "storage", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_hypercorn_is_one_the_stream_hook_knows() -> None:
    """Dead-peer detection and batched writes need the hook; pyproject.toml's range and the
    hook's list of tested versions must agree, or both features would silently switch off."""
    from marketsrv.streams import transport

    assert transport.install()


def test_every_package_and_the_page_are_in_the_distribution() -> None:
    """pyproject.toml lists its packages (so that static/ can be mapped in): a new subpackage
    missing from the list would be left out of the wheel and the one-file build."""
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("marketsrv", "storage")
        for init in (REPO / top).rglob("__init__.py")
    }
    page = {
        ".".join(("marketsrv", *d.relative_to(REPO).parts))
        for d in [REPO / "static", *(REPO / "static").rglob("*")]
        if d.is_dir()
    }
    assert listed == found | page | {"marketsrv.manual"}  # docs/
