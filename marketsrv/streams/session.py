"""What a client may say on a stream, and the answer each message gets.

Every inbound frame is checked here: binary frames, non-JSON, wrong field types, unknown types,
unknown symbols and over-limit requests each get an `error` frame with a stable code, and the
connection stays open. Only a client that goes on flooding past its message rate is closed (1008).
Nothing here does I/O: it changes the connection's subscriptions and queues replies on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import trio

from marketsrv.errors import BadRequest, MarketsrvError
from marketsrv.streams.connection import CLOSE_POLICY, Connection
from marketsrv.streams.frames import error_frame, frame
from marketsrv.units import MAX_DEPTH


@dataclass(frozen=True)
class Limits:
    max_symbols: int = 100  # per connection
    max_messages_per_s: float = 20.0  # inbound, with a burst of twice that
    close_timeout_s: float = 3.0  # after our close frame, the client's reply is awaited this long


class RateLimiter:
    """A token bucket: `rate` messages a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = trio.current_time()

    def allow(self) -> bool:
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Session:
    """The protocol of one connection to `/ws/market/` or (with `symbol`) `/ws/orderbook/<symbol>/`."""

    def __init__(
        self, hub: Any, conn: Connection, limits: Limits, symbol: str | None = None
    ) -> None:
        self.hub = hub
        self.conn = conn
        self.limits = limits
        self.symbol = symbol
        self.limiter = RateLimiter(limits.max_messages_per_s, 2 * limits.max_messages_per_s)
        self.strikes = 0

    def receive(self, text: str | None = None, data: bytes | None = None) -> None:
        """Handle one inbound WebSocket message (exactly one of `text`, `data`)."""
        conn = self.conn
        if conn.closing is not None:
            return  # closed (or refused: an unknown symbol, a full server): nothing more to say
        if not self.limiter.allow():
            self.strikes += 1
            if self.strikes >= 2 * self.limits.max_messages_per_s:
                conn.close(CLOSE_POLICY, "too many messages: over the rate limit for too long")
            elif self.strikes == 1 or self.strikes % 10 == 0:
                conn.reply(error_frame(
                    self.hub.now_s(),
                    "rate_limited",
                    f"over {self.limits.max_messages_per_s:g} messages a second; "
                    "messages are being dropped",
                ))  # fmt: skip
            return
        self.strikes = max(0, self.strikes - 1)
        try:
            self._dispatch(self._parse(text, data))
        except MarketsrvError as exc:  # a stream renders any of the family as an error frame
            conn.reply(error_frame(self.hub.now_s(), exc.code, exc.message, **exc.extra))

    def _parse(self, text: str | None, data: bytes | None) -> dict[str, Any]:
        if text is None:
            raise BadRequest("binary_not_supported", "send JSON text frames, not binary ones")
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadRequest("invalid_json", "the message is not valid JSON") from None
        if not isinstance(message, dict):
            raise BadRequest("invalid_message", "the message must be a JSON object")
        return message

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind is None and self.symbol is not None and "depth" in message:
            kind = "snapshot"  # the seed's orderbook client opens with a type-less {"depth": N}
        if kind == "ping":
            self.conn.reply(frame("pong", {
                "timestamp": message.get("timestamp"),
                "server_time": self.hub.market.clock(),
            }, self.hub.now_s()))  # fmt: skip
        elif kind == "snapshot":
            self._snapshot(message)
        elif kind == "subscribe" and self.symbol is None:
            self._subscribe(message)
        elif kind == "unsubscribe" and self.symbol is None:
            symbols = self._symbols(message, required=True)
            self.hub.unsubscribe(self.conn, [s for s in symbols if s in self.conn.symbols])
            self._confirm()
        elif kind is None:
            raise BadRequest("missing_type", "the message has no 'type'")
        else:
            raise BadRequest("unknown_type", f"unknown message type {kind!r}", type=str(kind)[:64])

    def _subscribe(self, message: dict[str, Any]) -> None:
        conn, hub = self.conn, self.hub
        symbols = self._symbols(message, required=True)
        options = {
            name: _flag(message, name)
            for name in ("order_book", "trades", "candles", "batch")
            if name in message
        }
        depth = _depth(message) if "depth" in message else None
        mode = message.get("book_mode")
        if mode is not None and mode not in ("snapshot", "diff"):
            raise BadRequest(
                "invalid_field", "book_mode must be 'snapshot' or 'diff'", field="book_mode"
            )
        known = [s for s in symbols if s in hub.market.instruments]
        unknown = [s for s in symbols if s not in hub.market.instruments]
        if len(conn.symbols | set(known)) > self.limits.max_symbols:
            raise BadRequest(
                "too_many_symbols",
                f"at most {self.limits.max_symbols} symbols per connection; nothing was changed",
                limit=self.limits.max_symbols,
            )
        for name, value in options.items():
            setattr(conn, name, value)
        if depth is not None:
            conn.depth = depth
        resnapshot: list[str] = []
        if mode == "diff":
            conn.order_book = True  # asking for book diffs is asking for the book
        if mode is not None and mode != conn.book_mode:
            conn.book_mode = mode
            # Books already streamed in the other mode: a diff client needs a whole book to
            # build on (the depth-limited frames it had are not one), so start every one again.
            resnapshot = [s for s in conn.symbols if s not in known]
        hub.subscribe(conn, known)
        self._confirm()
        if unknown:
            conn.reply(error_frame(
                hub.now_s(),
                "unknown_symbols", "these symbols are not listed: " + ", ".join(unknown),
                symbols=unknown,
            ))  # fmt: skip
        hub.send_snapshots(conn, known)
        if resnapshot:
            hub.send_snapshots(conn, resnapshot)

    def _snapshot(self, message: dict[str, Any]) -> None:
        conn, hub = self.conn, self.hub
        if "depth" in message:
            conn.depth = _depth(message)
        if self.symbol is not None:
            hub.send_snapshots(conn, [self.symbol])
            return
        symbols = self._symbols(message, required=False)
        if symbols is None:
            symbols = sorted(conn.symbols)
        unknown = [s for s in symbols if s not in hub.market.instruments]
        if unknown:
            conn.reply(error_frame(
                hub.now_s(),
                "unknown_symbols", "these symbols are not listed: " + ", ".join(unknown),
                symbols=unknown,
            ))  # fmt: skip
        known = [s for s in symbols if s in hub.market.instruments]
        hub.send_snapshots(conn, known[: self.limits.max_symbols], order_book=True)

    def _symbols(self, message: dict[str, Any], required: bool) -> Any:
        raw = message.get("symbols")
        if raw is None and not required:
            return None
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise BadRequest(
                "invalid_symbols", "'symbols' must be a list of strings", field="symbols"
            )
        if len(raw) > 10 * self.limits.max_symbols:
            raise BadRequest("too_many_symbols", "the symbol list is far over the limit",
                             limit=self.limits.max_symbols)  # fmt: skip
        return list(dict.fromkeys(s.strip().upper() for s in raw))

    def _confirm(self) -> None:
        symbols = sorted(self.conn.symbols)
        self.conn.reply(frame("subscription_confirmed", {"symbols": symbols}, self.hub.now_s()))


def _flag(message: dict[str, Any], name: str) -> bool:
    value = message[name]
    if not isinstance(value, bool):
        raise BadRequest("invalid_field", f"{name} must be true or false", field=name)
    return value


def _depth(message: dict[str, Any]) -> int:
    """A requested depth, clamped to 1..50 as the seed's client expects; non-integers are errors."""
    value: object = message["depth"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 20.0 is 20
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("invalid_depth", "depth must be an integer from 1 to 50", field="depth")
    return max(1, min(MAX_DEPTH, value))
