"""Edges recover by themselves (docs/scaling.md, "What fails how"): Redis, an edge and the primary
killed, an edge left behind by the bus, and a primary that is away or refuses. Real processes
over a real redis-server; every client ends with a book equal to the primary's.
"""

from __future__ import annotations

import signal
import socket
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import coredis
import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.builders import demo_token, next_of, open_ws
from tests.cluster import (
    ClientBook,
    Cluster,
    bus_url,
    in_step,
    keep_book,
    kill,
    redis_server,
    subscribe_book,
)

pytestmark = pytest.mark.timeout(180)


# -- failures -----------------------------------------------------------------------------------


async def test_edges_recover_from_redis_an_edge_and_the_primary_being_killed(
    bus_folder: Path,
) -> None:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server(bus_folder))
        cluster = Cluster(bus_folder, stack, ())
        primary = await cluster.start_primary()
        edge_proc, edge = await cluster.start_edge()
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        token = await demo_token(http, edge)
        auth = {"Authorization": f"Bearer {token}"}
        order = {"symbol": "KCB", "side": "buy", "quantity": 100, "order_type": "market"}

        async with open_ws(edge, "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            seq = await in_step(book, cluster.primary_url, "SCOM")

            # Redis killed, and restarted empty: the edge joins again; the book goes on.
            await kill(redis)
            await stack.enter_async_context(redis_server(bus_folder))
            seq = await in_step(book, cluster.primary_url, "SCOM", seq)

            # The primary killed and restarted on its port and database: a new epoch, and a
            # fresh snapshot for the edge's client.
            async with open_ws(edge, f"/ws/user/?token={token}") as user:
                last = (await next_of(user, "ready"))["data"]["seq"]
                snapshots = book.snapshots
                await kill(primary)
                with pytest.raises(ConnectionClosed):  # the edge closes what it forwarded
                    with trio.fail_after(10):
                        while True:
                            last = orjson.loads(await user.get_message()).get("seq", last)
            primary = await cluster.start_primary()
            placed = await http.post(f"{cluster.primary_url}/api/trading/orders/", json=order,
                                     headers=auth)  # fmt: skip
            assert placed.status_code == 201, placed.text
            seq = await in_step(book, cluster.primary_url, "SCOM", -1)
            assert book.snapshots > snapshots
            # The private stream resumes through the edge: the event made while it was down.
            async with open_ws(edge, f"/ws/user/?token={token}&after={last}") as user:
                assert (await next_of(user, "order.accepted"))["seq"] == last + 1
            nursery.cancel_scope.cancel()

        # An edge killed and started again serves a correct book from its first frame.
        await kill(edge_proc)
        _, edge = await cluster.start_edge()
        async with open_ws(edge, "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            await in_step(book, cluster.primary_url, "SCOM")
            nursery.cancel_scope.cancel()


async def test_a_slow_edge_joins_again_with_fresh_books(bus_folder: Path) -> None:
    """An edge stopped (SIGSTOP) until the bus trimmed what it had not read."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(redis_server(bus_folder))
        cluster = Cluster(bus_folder, stack, ("--stream-interval-ms", "10", "--bus-max-entries", "100"))  # fmt: skip
        await cluster.start_primary()
        edge_proc, edge = await cluster.start_edge()
        async with open_ws(edge, "/ws/market/") as ws, trio.open_nursery() as nursery:
            book = ClientBook()
            await subscribe_book(ws, "SCOM")
            nursery.start_soon(keep_book, ws, book)
            seq = await in_step(book, cluster.primary_url, "SCOM")
            snapshots = book.snapshots
            edge_proc.send_signal(signal.SIGSTOP)
            await trimmed_past_now(bus_folder)
            edge_proc.send_signal(signal.SIGCONT)
            await in_step(book, cluster.primary_url, "SCOM", seq)
            assert book.snapshots > snapshots
            nursery.cancel_scope.cancel()


async def trimmed_past_now(folder: Path) -> None:
    """Wait until the bus no longer holds the entry after the newest one now."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(bus_url(folder))
    async with client:
        newest = int((await client.xrevrange("marketsrv:market", count=1))[0].field_values[b"n"])
        with trio.fail_after(60):
            while True:
                oldest = (await client.xrange("marketsrv:market", count=1))[0].field_values[b"n"]
                if int(oldest) > newest + 1:
                    return
                await trio.sleep(0.1)


# -- an edge whose primary is away or refuses ---------------------------------------------------


async def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` as it is written (httpx would resolve its dot segments): (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body


async def refusing_server(stream: trio.SocketStream) -> None:
    """A "primary" that answers every request, upgrades included, with 403."""
    with trio.move_on_after(5):
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
    await stream.aclose()


async def test_an_edge_says_when_its_primary_is_away_or_refuses(
    nursery: trio.Nursery, bus_folder: Path
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, refusing_server, 0, host="127.0.0.1"))
    refusing = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        away = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with AsyncExitStack() as stack:
        for primary, http_status, ws_close in ((away, 502, 1011), (refusing, 403, 1008)):
            cluster = Cluster(bus_folder, stack, ())  # no redis-server: the bus is away too
            cluster.primary_url = primary
            _, edge = await cluster.start_edge()
            async with httpx.AsyncClient(base_url=edge, timeout=10) as http:
                origin = {"Origin": "http://localhost:3000"}  # a page the settings allow
                answer = await http.get("/api/stocks/SCOM/", headers=origin)
                assert answer.status_code == http_status
                if http_status == 502:
                    assert answer.json()["code"] == "primary_unavailable"
                    assert answer.headers["access-control-allow-origin"] == origin["Origin"]
                # A path that would resolve out of /api/ on the primary is not passed on.
                for sneaky in (
                    "/api/../metrics",
                    "/api/./../-/settings.json",
                    "/api/%2e%2e/metrics",
                ):
                    status, body = await raw_get(edge, sneaky)
                    assert (status, orjson.loads(body)["code"]) == (404, "not_found"), sneaky
            async with open_ws(edge, "/ws/user/?token=x") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == ws_close
