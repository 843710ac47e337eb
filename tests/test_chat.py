"""Direct messages: `/ws/chat/` on a real server with trio-websocket clients, and `/api/chat/`.

The protocol is the replaced backend's: `?token=` (4001 without, 4002 bad), `chat.message` in,
`chat.sent` back and `chat.message` out to every socket of the receiver and the sender's others,
`presence.ping` -> `presence.pong`, an unknown type -> `{"error": "unknown message type"}` with the
connection kept.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from marketsrv.users_cli import create_user
from storage import Database
from tests.builders import ServerFactory, open_ws, register, send, server_process


def token(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


async def next_type(ws: WebSocketConnection, kind: str, limit_s: float = 5) -> dict[str, Any]:
    """The next message of `type` `kind`, skipping others."""
    with trio.fail_after(limit_s):
        while True:
            message = orjson.loads(await ws.get_message())
            if message.get("type") == kind:
                return message  # type: ignore[no-any-return]


@pytest.fixture
async def server(start_server: ServerFactory) -> str:
    url, _ = await start_server(simulate=False)
    return url


async def test_a_message_reaches_every_socket_but_no_third_user(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        amy, ben, cal = [await register(http, n) for n in ("amy", "ben", "cal")]
        async with (
            open_ws(server, f"/ws/chat/?token={token(amy)}") as a1,
            open_ws(server, f"/ws/chat/?token={token(amy)}") as a2,
            open_ws(server, f"/ws/chat/?token={token(ben)}") as b1,
            open_ws(server, f"/ws/chat/?token={token(ben)}") as b2,
            open_ws(server, f"/ws/chat/?token={token(cal)}") as c1,
        ):
            for ws in (a1, a2, b1, b2, c1):
                assert (await next_type(ws, "chat.unread"))["unread"]["total"] == 0
            text = "<b>hi</b> ben & co"  # stored and returned as it is: plain text
            await send(a1, {"type": "chat.message", "to": "ben", "text": text, "data": {"k": [1]}})
            sent = (await next_type(a1, "chat.sent"))["message"]
            assert sent["text"] == text and sent["data"] == {"k": [1]}
            assert (sent["sender_username"], sent["receiver_username"]) == ("amy", "ben")
            assert {"id", "sender", "receiver", "text", "data", "created_at", "thread"} <= set(sent)
            for ws in (b1, b2, a2):  # the receiver's sockets and the sender's other one
                assert (await next_type(ws, "chat.message"))["message"] == sent
            # By id works as well as by name.
            await send(b2, {"type": "chat.message", "to": sent["sender"], "text": "hello amy"})
            assert (await next_type(a1, "chat.message"))["message"]["text"] == "hello amy"
            # Cal heard nothing: the next thing he gets is his own pong.
            await send(c1, {"type": "presence.ping"})
            assert orjson.loads(await c1.get_message())["type"] == "presence.pong"

        for me, other in ((amy, "ben"), (ben, "amy")):
            page = (await http.get(f"/api/chat/messages/{other}/", headers=me)).json()
            assert [m["text"] for m in page["results"]] == ["hello amy", text]  # newest first
        older = await http.get("/api/chat/messages/ben/?limit=1", headers=amy)
        assert older.json()["has_more"] is True
        last_id = older.json()["results"][0]["id"]
        before = (await http.get(f"/api/chat/messages/ben/?before={last_id}", headers=amy)).json()
        assert [m["text"] for m in before["results"]] == [text]
        # Cal reads no pair but his own: with amy there is nothing.
        assert (await http.get("/api/chat/messages/amy/", headers=cal)).json()["results"] == []
        assert (await http.get("/api/chat/threads/", headers=cal)).json()["results"] == []


async def test_an_offline_receiver_finds_the_message_and_an_unread_count(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        dee, eve = await register(http, "dee"), await register(http, "eve")
        async with open_ws(server, f"/ws/chat/?token={token(dee)}") as d:
            await next_type(d, "chat.unread")
            for n in range(3):
                await send(d, {"type": "chat.message", "to": "eve", "text": f"m{n}"})
                await next_type(d, "chat.sent")
        threads = (await http.get("/api/chat/threads/", headers=eve)).json()["results"]
        assert [(t["with"]["username"], t["unread"]) for t in threads] == [("dee", 3)]
        assert threads[0]["last_message"]["text"] == "m2"
        async with open_ws(server, f"/ws/chat/?token={token(eve)}") as e:
            unread = (await next_type(e, "chat.unread"))["unread"]
            assert unread["total"] == 3 and unread["threads"][0]["with"]["username"] == "dee"
            await send(e, {"type": "chat.read", "with": "dee"})
            assert (await next_type(e, "chat.unread"))["unread"]["total"] == 0
        assert (await http.get("/api/chat/unread/", headers=eve)).json()["unread"]["total"] == 0


async def test_tokens_unknown_types_presence_and_limits(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        fay, gus = await register(http, "fay"), await register(http, "gus")
        for path, code in (("/ws/chat/", 4001), ("/ws/chat/?token=nope", 4002)):
            async with open_ws(server, path) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    with trio.fail_after(15):
                        await ws.get_message()
                assert closed.value.reason.code == code
        presence = await http.get("/api/chat/presence/?users=fay,gus", headers=gus)
        assert [u["online"] for u in presence.json()["users"]] == [False, False]
        async with open_ws(server, f"/ws/chat/?token={token(fay)}") as f:
            await next_type(f, "chat.unread")
            await send(f, {"type": "nope"})
            error = orjson.loads(await f.get_message())
            assert error["error"] == "unknown message type"  # the replaced backend's words
            await send(f, {"type": "presence.ping"})
            assert (await next_type(f, "presence.pong"))["online_for_s"] == 60
            refusals = [
                ({"type": "chat.message", "to": "gus", "text": "   "}, "invalid_text"),
                ({"type": "chat.message", "to": "gus", "text": "x" * 2001}, "text_too_long"),
                ({"type": "chat.message", "to": "gus", "text": "x", "data": "y" * 5000}, "data_too_large"),
                ({"type": "chat.message", "to": "nobody", "text": "x"}, "unknown_user"),
                ({"type": "chat.message", "to": "fay", "text": "x"}, "invalid_receiver"),
                ({"type": "chat.message", "text": "x"}, "invalid_receiver"),
            ]  # fmt: skip
            for message, code in refusals:
                await send(f, message)
                assert (await next_type(f, "error"))["code"] == code, message
            await f.send_message("not json")
            assert (await next_type(f, "error"))["code"] == "invalid_json"
            # Still open, and online for the others.
            online = (await http.get("/api/chat/presence/?users=fay", headers=gus)).json()
            assert online["users"][0]["online"] is True and online["users"][0]["last_seen"]
        # The socket is gone; the last ping keeps fay online for 60 s.
        online = (await http.get("/api/chat/presence/?users=fay", headers=gus)).json()
        assert online["users"][0]["online"] is True


async def test_hostile_messages_are_refused_and_nothing_breaks(server: str) -> None:
    """Found by an adversarial probe: data nested 250 deep was stored and then broke every
    history read; a user named with digits took messages meant for that user id; ids past
    SQLite's integers closed the socket; a flood was never closed."""
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        lea = await register(http, "lea")
        first = (await http.get("/api/accounts/me/", headers=lea)).json()["id"]
        mimic = await register(http, f"{first:03d}")  # named as lea's id, digits and all
        async with open_ws(server, f"/ws/chat/?token={token(lea)}") as ws:
            await next_type(ws, "chat.unread")
            deep = orjson.loads("[" * 250 + "]" * 250)
            refusals = [
                ({"type": "chat.message", "to": f"{first:03d}", "text": "x", "data": deep}, "invalid_data"),
                ({"type": "chat.message", "to": 2**63, "text": "x"}, "unknown_user"),
                ({"type": "chat.read", "with": 2**64 - 1}, "unknown_user"),
                ({"type": "chat.message", "to": ["lea"], "text": "x"}, "invalid_receiver"),
                ({"type": "chat.message", "to": "x", "text": "x", "data": "é" * 2048}, "data_too_large"),
                ({}, "missing_type"),
            ]  # fmt: skip
            for message, code in refusals:
                await send(ws, message)
                assert (await next_type(ws, "error"))["code"] == code, message
        # "001" is lea's id first: the user who took that name is not reached by it.
        async with open_ws(server, f"/ws/chat/?token={token(mimic)}") as ws:
            await next_type(ws, "chat.unread")
            await send(ws, {"type": "chat.message", "to": f"{first:03d}", "text": "to lea"})
            assert (await next_type(ws, "chat.sent"))["message"]["receiver_username"] == "lea"
        for path in ("/api/chat/threads/", "/api/chat/messages/lea/"):
            assert (await http.get(path, headers=mimic)).status_code == 200
        big = await http.post("/api/chat/threads/", json={"user": 2**63}, headers=lea)
        assert big.status_code == 404 and big.json()["code"] == "unknown_user"
        async with open_ws(server, f"/ws/chat/?token={token(lea)}") as ws:
            await next_type(ws, "chat.unread")
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(10):
                    for _ in range(500):
                        await send(ws, {"type": "presence.ping"})
                    while True:
                        await ws.get_message()
            assert closed.value.reason.code == 1008
        assert (await http.get("/api/health/")).json()["status"] == "ok"


async def test_the_rate_limit_holds_over_parallel_sockets(start_server: ServerFactory) -> None:
    url, _ = await start_server(simulate=False, chat_messages_per_minute=2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        max_, ned = await register(http, "max"), await register(http, "ned")
        async with (
            open_ws(url, f"/ws/chat/?token={token(max_)}") as s1,
            open_ws(url, f"/ws/chat/?token={token(max_)}") as s2,
            open_ws(url, f"/ws/chat/?token={token(max_)}") as s3,
            open_ws(url, f"/ws/chat/?token={token(max_)}") as s4,
        ):
            for ws in (s1, s2, s3, s4):
                await next_type(ws, "chat.unread")
            await send(s1, {"type": "chat.message", "to": "nobody", "text": "refused"})
            assert (await next_type(s1, "error"))["code"] == "unknown_user"  # not counted
            for ws in (s1, s2, s3, s4):  # all at once
                await send(ws, {"type": "chat.message", "to": "ned", "text": "hi"})
            answers = []
            for ws in (s1, s2, s3, s4):
                with trio.fail_after(5):
                    while True:
                        frame = orjson.loads(await ws.get_message())
                        if frame["type"] in ("chat.sent", "error"):
                            answers.append(frame.get("code", frame["type"]))
                            break
            assert sorted(answers) == ["chat.sent", "chat.sent", "rate_limited", "rate_limited"]
        page = (await http.get("/api/chat/messages/max/", headers=ned)).json()
        assert len(page["results"]) == 2
        # Read up to the first: the second stays unread.
        first = page["results"][-1]["id"]
        read = await http.post("/api/chat/read/", json={"with": "max", "until": first}, headers=ned)
        assert read.json()["unread"]["total"] == 1
        nothing = await http.post("/api/chat/read/", json={"with": "nobody"}, headers=ned)
        assert nothing.status_code == 404
        # Reading a conversation that does not exist makes none.
        await register(http, "oli")
        empty = await http.post("/api/chat/read/", json={"with": "oli"}, headers=ned)
        assert empty.status_code == 200
        assert [
            t["with"]["username"]
            for t in (await http.get("/api/chat/threads/", headers=ned)).json()["results"]
        ] == ["max"]


async def test_a_blocked_sender_is_refused(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        hal, ida = await register(http, "hal"), await register(http, "ida")
        blocked = await http.post("/api/chat/blocks/", json={"user": "hal"}, headers=ida)
        assert blocked.json() == {"user": {"id": blocked.json()["user"]["id"], "username": "hal"},
                                  "blocked": True}  # fmt: skip
        async with open_ws(server, f"/ws/chat/?token={token(hal)}") as h:
            await next_type(h, "chat.unread")
            await send(h, {"type": "chat.message", "to": "ida", "text": "let me in"})
            error = await next_type(h, "error")
            assert error["code"] == "blocked" and "does not accept" in error["error"]
            await http.delete("/api/chat/blocks/hal/", headers=ida)
            await send(h, {"type": "chat.message", "to": "ida", "text": "thanks"})
            await next_type(h, "chat.sent")
        assert (await http.post("/api/chat/threads/", json={"user": "hal"}, headers=hal)).json()[
            "code"
        ] == "invalid_receiver"  # no thread with oneself
        thread = await http.post("/api/chat/threads/", json={"user": "ida"}, headers=hal)
        assert thread.json()["with"]["username"] == "ida" and thread.json()["unread"] == 0


async def test_a_message_sent_is_kept_after_kill_9(tmp_path: Path) -> None:
    db_path = tmp_path / "chat.db"
    db = Database(db_path)
    db.open()
    for name in ("joe", "kim"):
        create_user(db, name, "chat-pass", 0)
    db.close()
    flags = ("--database", str(db_path), "--demo-user", "off", "--no-simulate",
             "--history-days", "2", "--history-minute-days", "1")  # fmt: skip
    pw = "chat-pass"
    with trio.fail_after(60):
        async with (
            server_process(*flags) as (proc, url),
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):
            login = await http.post(
                "/api/accounts/login/", json={"username": "joe", "password": pw}
            )
            async with open_ws(url, f"/ws/chat/?token={login.json()['token']}") as ws:
                await next_type(ws, "chat.unread")
                await send(ws, {"type": "chat.message", "to": "kim", "text": "durable?"})
                sent = (await next_type(ws, "chat.sent"))["message"]
                proc.send_signal(signal.SIGKILL)  # right after the acknowledgement
                await proc.wait()
        async with (
            server_process(*flags) as (proc, url),
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):
            login = await http.post(
                "/api/accounts/login/", json={"username": "kim", "password": pw}
            )
            kim = {"Authorization": f"Bearer {login.json()['token']}"}
            page = (await http.get("/api/chat/messages/joe/", headers=kim)).json()
            assert page["results"] == [sent]
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


async def test_a_token_that_expires_closes_its_sockets(start_server: ServerFactory) -> None:
    url, _ = await start_server(simulate=False, token_ttl_hours=0.0005)  # 1.8 s
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        pat = await register(http, "pat")
        async with (
            open_ws(url, f"/ws/chat/?token={token(pat)}") as chat,
            open_ws(url, f"/ws/user/?token={token(pat)}") as user,
        ):
            await next_type(chat, "chat.unread")
            await next_type(user, "ready")
            for ws in (chat, user):
                with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
                    while True:
                        await ws.get_message()
                assert closed.value.reason.code == 4002
                assert closed.value.reason.reason == "the token expired"
        assert (await http.get("/api/chat/threads/", headers=pat)).status_code == 401
