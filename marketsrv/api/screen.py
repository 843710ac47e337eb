"""The web trading screen: `static/` served at `/` (the page) and `/static/...` (its files).

The files are read once, when the app is made (before the event loop serves), and answered from
memory with an ETag: no file I/O on the event loop, and a browser revalidates for nothing. They
are small (the page, its modules and one vendored chart library: about 300 KB). After editing
them, restart the server.

The page is sent with a Content-Security-Policy that allows only this origin: scripts, styles and
connections (WebSockets included) to the server itself, nothing inline, no frames.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from quart import Blueprint, Response, request
from quart_schema import hide

from marketsrv.errors import NotFound

log = logging.getLogger("marketsrv")


def shipped(packaged: str, repository: str) -> Path:
    """A folder of the repository's top level (`static`, `docs`), which an installed package and
    the one-file build carry inside as `marketsrv/<packaged>` (pyproject.toml maps them); a
    checkout has only the repository's."""
    package = Path(__file__).resolve().parents[1]
    inside = package / packaged
    return inside if inside.is_dir() else package.parent / repository


STATIC_ROOT = shipped("static", "static")
MAX_FILES = 500  # a guard against serving a wrong, huge directory
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".ts": "text/plain; charset=utf-8",  # the client's type declarations, to read
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
CHART_STYLE = "sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY="  # lightweight-charts 5.2.1
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; img-src 'self' data:;"
        # The one <style> element the chart library adds (its attribution logo), by its hash.
        f" style-src 'self' '{CHART_STYLE}';"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load(root: Path = STATIC_ROOT) -> dict[str, StaticFile]:
    """Every file under `root` by its path relative to it ('' if there is no such folder)."""
    files: dict[str, StaticFile] = {}
    if not root.is_dir():
        log.warning("no web page: %s is not a folder", root)
        return files
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if len(files) >= MAX_FILES:
            log.warning("static/: more than %d files; the rest are not served", MAX_FILES)
            break
        name = path.relative_to(root).as_posix()
        body = path.read_bytes()
        kind = TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if path.name in ("LICENSE", "NOTICE") or path.suffix in (".LICENSE", ".NOTICE"):
            kind = TYPES[".txt"]
        etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
        files[name] = StaticFile(body, kind, etag)
    return files


def blueprint_for(files: dict[str, StaticFile]) -> Blueprint:
    screen = Blueprint("screen", __name__)

    @screen.get("/")
    @hide
    async def page() -> Response:
        if "index.html" not in files:
            raise NotFound("not_found", "this server was installed without its web page")
        return answer(files["index.html"], PAGE_HEADERS)

    @screen.get("/static/<path:name>")
    @hide
    async def static_file(name: str) -> Response:
        found = files.get(name)
        if found is None:
            raise NotFound("not_found", f"no such file: /static/{name}")
        return answer(found, {"X-Content-Type-Options": "nosniff"})

    return screen


def answer(file: StaticFile, headers: dict[str, str]) -> Response:
    # Revalidated on every load (cheap: a 304), so a restarted server's new page is seen at once.
    common = {"ETag": file.etag, "Cache-Control": "no-cache", **headers}
    if file.etag in request.headers.get("If-None-Match", ""):
        return Response(b"", status=304, headers=common)
    return Response(file.body, status=200, content_type=file.content_type, headers=common)
