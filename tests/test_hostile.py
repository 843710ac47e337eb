"""What an attacker's probe found, kept found: hostile packets and races against a real server.

Network rules as everywhere (tests/conftest.py): 127.0.0.1, port 0, a time limit on every wait.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from argon2 import PasswordHasher

from marketsrv.runtime import Runtime
from tests.builders import ServerFactory, check_invariants, register

UPGRADE = (
    b"GET /ws/market/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
EARLY_FRAME = b"\x81\x85\x00\x00\x00\x00hello"  # a masked text frame, sent before our 101


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some():
            data += chunk
    return data


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_early_websocket_data_gets_a_400_and_never_ends_the_server(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _ in range(100):
            stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
            await stream.send_all(UPGRADE + EARLY_FRAME)
            answer = await read_until_closed(stream)
            await stream.aclose()
            assert answer.startswith(b"HTTP/1.1 400"), answer
            assert (await http.get("/api/health/")).status_code == 200


async def test_an_error_in_one_connection_leaves_the_others_served(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever hypercorn's next bug is: a connection task that raises is closed, nothing more."""
    from hypercorn.protocol.h11 import H11Protocol

    original = H11Protocol._create_stream

    async def create_stream(self: Any, request: Any) -> None:
        if request.target == b"/boom":
            raise RuntimeError("a bug in the HTTP layer")
        await original(self, request)

    monkeypatch.setattr(H11Protocol, "_create_stream", create_stream)
    url, _ = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _ in range(3):
            with pytest.raises(httpx.TransportError):
                await http.get("/boom")
            assert (await http.get("/api/health/")).status_code == 200


async def _wait_gone(runtime: Runtime) -> None:
    with trio.fail_after(10):
        while runtime.hub.connections:
            await trio.sleep(0.05)


async def _handshake(port: int, path: str) -> tuple[trio.SocketStream, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE.replace(b"/ws/market/", path.encode()))
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some()
    assert data.startswith(b"HTTP/1.1 101"), data
    return stream, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("full", [False, True], ids=["unknown-symbol-4004", "server-full-1013"])
async def test_a_rejected_websocket_that_ignores_our_close_is_dropped(
    start_server: ServerFactory, full: bool
) -> None:
    url, runtime = await start_server(ws_max_connections=1, ws_close_timeout_s=0.5)
    port = port_of(url)
    keep = None
    if full:
        keep, _ = await _handshake(port, "/ws/market/")
        with trio.fail_after(10):
            while not runtime.hub.connections:
                await trio.sleep(0.01)
    stream, early = await _handshake(port, "/ws/market/" if full else "/ws/orderbook/NOPE/")
    # The client reads the error and the close frame but never answers the close.
    rest = early + await read_until_closed(stream)
    code = (1013 if full else 4004).to_bytes(2, "big")
    assert b"\x88" in rest and code in rest, rest
    await stream.aclose()
    if keep is not None:
        await keep.aclose()


async def test_place_then_cancel_races_never_leave_a_ghost_in_the_book(
    start_server: ServerFactory, isolated_database: Any
) -> None:
    """A cancel aimed at an order whose acceptance is still under way waits for it (or gets a
    409): never a 201 saying `cancelled`, never an order in the book the database calls closed."""
    url, runtime = await start_server(simulate=False, db_synchronous="OFF")
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        headers = await register(http, "racer", cash=10_000_000)
        body = {"symbol": "SCOM", "side": "buy", "quantity": 1, "price": "26.00"}
        for guess in range(1, 1001):  # one trader, so the next order's id is known
            placed: list[httpx.Response] = []

            async def place(placed: list[httpx.Response] = placed) -> None:
                placed.append(await http.post("/api/trading/orders/", json=body, headers=headers))

            async def cancel(guess: int = guess) -> None:
                # Ask again and again until the order exists: the first answer that is not a
                # 404 comes from inside the acceptance's gap, or just after it.
                with trio.fail_after(20):
                    while True:
                        r = await http.delete(f"/api/trading/orders/{guess}/", headers=headers)
                        if r.status_code != 404:
                            key = f"{r.status_code} {r.json().get('status') or r.json()['code']}"
                            statuses[key] = statuses.get(key, 0) + 1
                            return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(place)
                nursery.start_soon(cancel)
            order = placed[0].json()
            assert placed[0].status_code == 201 and order["id"] == guess, order
            assert order["status"] == "pending", order

    assert set(statuses) <= {"200 cancelled", "409 order_in_flight"}, statuses
    trading = runtime.trading()
    assert trading.orders.suspended is None
    in_book = {-o.order_id for o in runtime.market.books["SCOM"].orders() if o.order_id < 0}
    assert in_book == set(), in_book
    open_in_db = await trading.store.read(
        lambda c: c.execute(
            "SELECT count(*) FROM orders WHERE status IN ('pending', 'partially_filled')"
        ).fetchone()[0]
    )
    assert open_in_db == 0
    check_invariants(isolated_database)


async def test_after_logout_the_token_is_dead_whatever_ran_in_parallel(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await register(http, "leaver")
        for _ in range(30):
            login = await http.post(
                "/api/accounts/login/", json={"username": "leaver", "password": "pw-secret"}
            )
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            logged_out = trio.Event()

            async def meanwhile(headers: dict[str, str] = headers, done: Any = logged_out) -> None:
                while not done.is_set():
                    await http.get("/api/trading/wallet/", headers=headers)

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(meanwhile)
                await trio.sleep(0)
                out = await http.post("/api/accounts/logout/", headers=headers)
                assert out.status_code == 200
                logged_out.set()
            for path in ("/api/trading/wallet/", "/api/accounts/me/", "/api/trading/orders/"):
                after = await http.get(path, headers=headers)
                assert after.status_code == 401, (path, after.json())


async def test_wrong_passwords_are_throttled_per_address_and_per_account(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await register(http, "victim")
        wrong = {"username": "victim", "password": "not-the-password"}
        codes = [
            (await http.post("/api/accounts/login/", json=wrong)).status_code for _ in range(25)
        ]
        assert codes[:10] == [400] * 10 and set(codes[10:]) == {429}, codes
        # The right password is refused too while the account is throttled: no free oracle.
        right = await http.post(
            "/api/accounts/login/", json={"username": "victim", "password": "pw-secret"}
        )
        assert right.status_code == 429 and right.json()["code"] == "too_many_attempts"
        assert int(right.headers["Retry-After"]) >= 1 and right.json()["retry_after"] >= 1

        # Other accounts from the same address: the address's own limit, counted in parallel.
        answers: list[int] = []

        async def guess(n: int) -> None:
            body = {"username": f"nobody{n}", "password": "not-the-password"}
            answers.append((await http.post("/api/accounts/login/", json=body)).status_code)

        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(guess, n)
        assert answers.count(429) >= 30, answers  # 25 failures were already counted
        forty_first = await http.post("/api/accounts/login/", json=wrong | {"username": "x1"})
        assert forty_first.status_code == 429


async def test_a_right_login_is_not_counted_against_the_address(
    start_server: ServerFactory,
) -> None:
    url, _ = await start_server(simulate=False, login_failures_per_address=3)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await register(http, "regular")
        right = {"username": "regular", "password": "pw-secret"}
        for _ in range(6):
            answer = await http.post("/api/accounts/login/", json=right)
            assert answer.status_code == 200
            assert answer.headers["Cache-Control"] == "no-store"


async def test_foreign_host_names_are_refused_on_loopback(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    url, _ = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        evil = await http.get("/api/health/", headers={"Host": "rebind.evil.example"})
        assert evil.status_code == 400 and evil.json()["code"] == "invalid_host"
        for host in ("localhost:8000", "127.0.0.1", "[::1]:1234", "app.localhost"):
            assert (await http.get("/api/health/", headers={"Host": host})).status_code == 200
    async with await trio.open_tcp_stream("127.0.0.1", port_of(url)) as stream:
        await stream.send_all(UPGRADE.replace(b"Host: 127.0.0.1", b"Host: rebind.evil.example"))
        assert (await read_until_closed(stream)).startswith(b"HTTP/1.1 403")
    url, _ = await start_server(
        simulate=False, allowed_hosts="*", database=str(tmp_path / "second.db")
    )
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        anyhost = await http.get("/api/health/", headers={"Host": "rebind.evil.example"})
        assert anyhost.status_code == 200


async def test_tokens_expire_and_the_cache_stays_bounded(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketsrv.trading.accounts import AuthLimits

    url, runtime = await start_server(simulate=False, token_ttl_hours=1)
    accounts = runtime.trading().accounts
    accounts.limits = AuthLimits(token_ttl_s=3600, max_cached_tokens=2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        users = [await register(http, f"holder{n}") for n in range(3)]
        assert len(runtime.trading().accounts._tokens) <= 2
        for headers in users:  # evicted or not, every token still works
            assert (await http.get("/api/accounts/me/", headers=headers)).status_code == 200
        later = accounts.clock() + 3601 * 1000
        monkeypatch.setattr(accounts, "clock", lambda: later)
        for headers in users:
            assert (await http.get("/api/accounts/me/", headers=headers)).status_code == 401


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("demo\n", "pw-secret", "invalid_username"),
        ("demo\r\n", "pw-secret", "invalid_username"),
        ("dëmo", "pw-secret", "invalid_username"),
        ("fresh", "        ", "invalid_password"),
    ],
)
async def test_lookalike_usernames_and_blank_passwords_are_refused(
    start_server: ServerFactory, username: str, password: str, code: str
) -> None:
    url, _ = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        body = {"username": username, "password": password}
        answer = await http.post("/api/accounts/register/", json=body)
        assert answer.status_code == 400 and answer.json()["code"] == code


async def test_a_long_password_is_checked_whole(start_server: ServerFactory) -> None:
    url, _ = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        secret = "p" * 256
        body = {"username": "longpw", "password": secret}
        assert (await http.post("/api/accounts/register/", json=body)).status_code == 201
        longer = await http.post("/api/accounts/login/", json=body | {"password": secret + "x"})
        assert longer.status_code == 400 and longer.json()["code"] == "invalid_credentials"
        assert (await http.post("/api/accounts/login/", json=body)).status_code == 200


async def test_parallel_logins_of_unknown_users_hash_the_dummy_once(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown username must cost one password check like a known one, not two."""
    url, runtime = await start_server(simulate=False)
    hashed: list[str] = []

    class CountingHasher(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            hashed.append(str(password))
            return super().hash(password, salt=salt)

    monkeypatch.setattr(runtime.trading().accounts, "hasher", CountingHasher())
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def login(n: int) -> None:
            body = {"username": f"ghost{n}", "password": "not-a-password"}
            assert (await http.post("/api/accounts/login/", json=body)).status_code == 400

        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(login, n)
    assert len(hashed) == 1


@pytest.mark.parametrize(
    "host", ["[::1]evil.com", "[::1].evil.com", "localhost:evil", "localhost:80@evil", "local host"]
)
async def test_malformed_host_headers_are_refused(start_server: ServerFactory, host: str) -> None:
    url, _ = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        answer = await http.get("/api/health/", headers={"Host": host})
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_host"


async def test_impossible_usernames_are_not_throttle_keys(start_server: ServerFactory) -> None:
    """A 64 KiB username cannot exist: refused before it is stored anywhere or hashed."""
    url, runtime = await start_server(simulate=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        body = {"username": "x" * 65_000, "password": "whatever-pw"}
        answer = await http.post("/api/accounts/login/", json=body)
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_credentials"
    assert not runtime.trading().accounts._by_account._events


async def test_a_client_ignoring_a_1009_close_is_dropped(start_server: ServerFactory) -> None:
    """hypercorn itself closes a connection whose message is over the size limit (1009); a
    client that ignores that close frame is dropped after the close timeout too."""
    url, _ = await start_server(ws_max_message_bytes=1024, ws_close_timeout_s=0.5)
    stream, early = await _handshake(port_of(url), "/ws/market/")
    payload = b"x" * 2000
    frame = b"\x81\xfe" + len(payload).to_bytes(2, "big") + b"\x00\x00\x00\x00" + payload
    await stream.send_all(frame)
    rest = early + await read_until_closed(stream)  # the server hangs up, we never answer
    assert b"\x88\x02" + (1009).to_bytes(2, "big") in rest
    await stream.aclose()


def test_allowed_host_entries_are_read_as_host_headers() -> None:
    from marketsrv.api.hosts import allowed_hosts, host_allowed, host_name

    allowed = allowed_hosts("[::1], Example.com:8000, .corp.example, my_host", "0.0.0.0")
    assert allowed is not None
    for header in (b"[::1]:80", b"example.com", b"a.corp.example:443", b"my_host"):
        name = host_name(header)
        assert name is not None and host_allowed(name, allowed), header
    assert allowed_hosts("auto", "0.0.0.0") is None and allowed_hosts("*", "127.0.0.1") is None


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /api/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"GET /api/health/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # then idle past keep-alive
    ],
    ids=["connection-close", "http-1.0", "keep-alive-idle"],
)
async def test_finished_connections_are_closed(
    start_server: ServerFactory, request_head: bytes
) -> None:
    """A client that holds its sockets open cannot keep them: the server closes each one once its
    answer is sent (Connection: close, HTTP/1.0) or it has been idle for the keep-alive time."""
    url, _ = await start_server()
    port = int(url.rsplit(":", 1)[1])
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request_head)
        answer = b""
        with trio.fail_after(20):  # hypercorn's keep-alive timeout is 5 s
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), answer[:100]


@pytest.mark.parametrize("target", [b"?x=1", b"*"])
async def test_a_request_target_that_is_not_a_path_gets_a_400(
    start_server: ServerFactory, target: bytes
) -> None:
    """`GET ?x=1` reached the framework with an empty path, which it failed on (500)."""
    url, _ = await start_server()
    async with await trio.open_tcp_stream("127.0.0.1", port_of(url)) as stream:
        await stream.send_all(
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        answer = await read_until_closed(stream)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400"), head
    assert orjson.loads(body)["code"] == "bad_request"
