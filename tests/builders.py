"""Builders shared by the tests: a controllable clock, instruments, and hand-stepped markets."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio
import trio_websocket
from trio_websocket import WebSocketConnection
from wsproto.utilities import LocalProtocolError

from marketsrv.market import Instrument, Market, Simulator, load_universe
from marketsrv.market.rules import TickTable
from marketsrv.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
SYM50 = REPO / "scripts" / "data" / "universe-sym50.json"


class FakeClock:
    """A millisecond clock that only moves when told, for deterministic timestamps."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def make_instrument(
    symbol: str = "TEST",
    price: str = "50.00",
    tick: str | TickTable = "0.05",
    band_bps: int | None = None,
    volatility: float = 0.02,
    lot: int = 1,
) -> Instrument:
    """An instrument with one fixed tick (or the given table) and, unless asked, no price band."""
    return Instrument(
        symbol=symbol,
        name=f"{symbol} Ltd",
        sector="Testing",
        reference_price=Decimal(price),
        ticks=tick if isinstance(tick, TickTable) else TickTable.fixed(int(Decimal(tick) * 100)),
        lot_size=lot,
        daily_volatility=volatility,
        band_bps=band_bps,
    )


def simulated_market(
    seed: int = 7, steps: int = 0, clock: FakeClock | None = None, **sim: Any
) -> tuple[Market, Simulator]:
    """The bundled universe with a simulator stepped `steps` times by hand (no background task)."""
    clock = clock or FakeClock()
    market = Market(load_universe(), clock=clock)
    simulator = Simulator(market, seed=seed, **sim)
    for _ in range(steps):
        simulator.step()
        clock.advance(100)
    return market, simulator


class RecordingTransport:
    """A stream transport that keeps what would have been written, for in-process tests."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.aborted = False

    async def send(self, frames: Any) -> None:
        import orjson

        self.sent.extend(orjson.loads(f.payload) for f in frames)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def abort(self) -> None:
        self.aborted = True

    def can_write_now(self) -> bool:
        return False  # like plain ASGI: the sender task writes

    def write_now(self, frames: Any) -> bytes:
        raise NotImplementedError

    async def write_rest(self, data: bytes) -> None:
        raise NotImplementedError

    def last_received(self) -> float | None:
        return None

    def take(self) -> list[dict[str, Any]]:
        out, self.sent = self.sent, []
        return out


@asynccontextmanager
async def server_process(
    *flags: str,
    command: Sequence[str] = (sys.executable, "-m", "marketsrv"),
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[trio.Process, str]]:
    """`python -m marketsrv --port 0 FLAGS` (or `command`) as a real process: (process, bound
    URL); killed on exit if still running. MARKETSRV_* variables other than the test's database
    are not passed; `env`, when given, is the whole environment."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")}
        env["PYTHONUNBUFFERED"] = "1"
        if "MARKETSRV_DATABASE" in os.environ:
            env["MARKETSRV_DATABASE"] = os.environ["MARKETSRV_DATABASE"]
    cmd = [*command, "--port", "0", *flags]
    proc = await trio.lowlevel.open_process(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, env=env
    )
    try:
        assert proc.stdout is not None
        output = b""
        while b"listening on http://" not in output:
            chunk = await proc.stdout.receive_some()
            assert chunk, f"the server exited early: {output.decode()}"
            output += chunk
        yield proc, output.decode().split("listening on ", 1)[1].split()[0]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_cli(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`python -m marketsrv ARGV` to its end (under a time limit): (exit status, its output).
    MARKETSRV_* variables are not passed, but for those in `env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETSRV_")} | (env or {})
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "marketsrv", *argv],
            cwd=cwd or REPO,
            env=env,
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return done.returncode, done.stdout.decode()


def check_invariants(path: Path) -> None:
    """The ledger, holds and holdings agree with each other in the database file at `path`."""
    conn = sqlite3.connect(path)
    for user_id, balance, held in conn.execute(
        "SELECT user_id, balance_cents, held_cents FROM wallets"
    ):
        ledger = conn.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM ledger WHERE user_id = ?", (user_id,)
        ).fetchone()[0]
        holds = conn.execute(
            "SELECT coalesce(sum(held_cents), 0) FROM orders WHERE user_id = ? AND status IN ('pending', 'partially_filled')",
            (user_id,),
        ).fetchone()[0]
        assert balance == ledger and held == holds and balance >= held >= 0, (
            user_id,
            balance,
            ledger,
            held,
            holds,
        )
    for user_id, symbol, quantity, held in conn.execute(
        "SELECT user_id, symbol, quantity, held_quantity FROM holdings"
    ):
        bought, sold = conn.execute(
            "SELECT coalesce(sum(CASE side WHEN 'buy' THEN quantity END), 0),"
            " coalesce(sum(CASE side WHEN 'sell' THEN quantity END), 0) FROM fills WHERE user_id = ? AND symbol = ?",
            (user_id, symbol)).fetchone()  # fmt: skip
        shares_held = conn.execute(
            "SELECT coalesce(sum(held_shares), 0) FROM orders WHERE user_id = ? AND symbol = ? AND status IN ('pending', 'partially_filled')",
            (user_id, symbol),
        ).fetchone()[0]
        assert quantity == bought - sold >= 0 and held == shares_held, (user_id, symbol)
    conn.close()


# -- servers -----------------------------------------------------------------------------------

# The `start_server` fixture (conftest.py): `await start_server(**settings)` -> (url, runtime).
ServerFactory = Callable[..., Awaitable[tuple[str, Runtime]]]


def in_process_runtime(market: Market, trading: Any = None) -> Runtime:
    """A Runtime for the in-process test client: no simulator task (tests step the market by
    hand), the given trading services (or none)."""
    from marketsrv.settings import Settings
    from marketsrv.streams import Hub

    return Runtime(
        settings=Settings(simulate=False),
        market=market,
        simulator=None,
        hub=Hub(market),
        trading_services=trading,
    )


async def demo_token(http: Any, base: str = "") -> str:
    """The demo user's token from a real server (`base`: its URL, when `http` has none)."""
    body = {"username": "demo", "password": "marketsrv-demo"}
    login = await http.post(f"{base}/api/accounts/login/", json=body)
    assert login.status_code == 200, login.text
    token: str = login.json()["token"]
    return token


async def register(http: Any, name: str, cash: int = 0) -> dict[str, str]:
    """A new account on a real server, funded with `cash` KES: its Authorization header."""
    body = {"username": name, "password": "pw-secret"}
    answer = await http.post("/api/accounts/register/", json=body)
    assert answer.status_code == 201, answer.text
    headers = {"Authorization": f"Bearer {answer.json()['token']}"}
    if cash:
        deposit = await http.post("/api/trading/wallet/", json={"amount": cash}, headers=headers)
        assert deposit.status_code == 200, deposit.text
    return headers


# -- WebSocket clients -------------------------------------------------------------------------


@asynccontextmanager
async def open_ws(
    url: str, path: str, rcvbuf: int | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client on a socket the test owns and always closes.

    (trio-websocket's own `open_websocket_url` can leave its socket to the garbage collector when
    the server closes first, which `filterwarnings = error` turns into a failure.)
    """
    parts = urlsplit(url)
    sock = trio.socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect((parts.hostname, parts.port))
    closing = False
    try:
        async with trio.SocketStream(sock) as stream, trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, parts.hostname or "", path, message_queue_size=1
            )
            try:
                yield ws
            finally:
                closing = True
                with trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except* LocalProtocolError:
        # trio-websocket's reader answers a ping that arrives after the client sent its close,
        # which wsproto refuses: the client's own bug, in a race the server may win.
        if not closing:
            raise


async def send(ws: WebSocketConnection, message: Any) -> None:
    await ws.send_message(
        message if isinstance(message, (str, bytes)) else orjson.dumps(message).decode()
    )


async def next_of(
    ws: WebSocketConnection, kind: str, limit_s: float = 5, **match: Any
) -> dict[str, Any]:
    """The next frame of `type` `kind` (and matching data fields), skipping the others."""
    with trio.fail_after(limit_s):
        while True:
            frame = orjson.loads(await ws.get_message())
            if frame["type"] == kind and all(frame["data"].get(k) == v for k, v in match.items()):
                return frame
