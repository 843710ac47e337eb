"""The server's logs: one line per record on stderr, as text for people or JSON for machines.

`log_format = json` writes each record as one JSON object: `ts` (ISO 8601, UTC), `level`,
`logger`, `message`, the fields a record carries (the access log's `client`, `method`, `path`,
`status`, `bytes`, `ms`, `agent`), and `exc` with the traceback when there is one. Text is the
familiar `time level logger: message`. A leaf: it imports nothing of ours.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(level: str, form: str = "text") -> None:
    """Route every logger (ours, hypercorn's, the libraries') to stderr in `form`. As
    `logging.basicConfig`, it leaves a root logger that already has handlers (a host program's,
    or pytest's) as it is, but for the level."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
