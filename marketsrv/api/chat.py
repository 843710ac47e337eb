"""Direct messages over REST, under /api/chat/ (a token needed): a pair's messages, threads with
their unread counts, read marks, presence and blocks. Sending is on /ws/chat/ (private/chat.py).
A user is named by id or by username, in paths and bodies alike."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from quart import Blueprint, request
from quart_schema import document_request, document_response

from marketsrv.api.openapi import errors
from marketsrv.api.trading import authenticate, user_id
from marketsrv.chat import messages
from marketsrv.errors import BadRequest, NotFound
from marketsrv.runtime import current_runtime
from marketsrv.trading.requests import validate_body
from marketsrv.units import iso_ms, whole_number

blueprint = Blueprint("chat", __name__, url_prefix="/api/chat")
blueprint.before_request(authenticate)
MAX_PRESENCE = 100  # users asked about at once
T = TypeVar("T")


class ChatUser(BaseModel):
    id: int
    username: str


class ChatMessage(BaseModel):
    id: int
    thread: int
    sender: int = Field(description="the sender's user id")
    sender_username: str
    receiver: int = Field(description="the receiver's user id")
    receiver_username: str
    text: str = Field(description="as sent: plain text, never HTML")
    data: Any = Field(description="any JSON the sender attached, or null")
    created_at: str


class Conversation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    with_: ChatUser = Field(alias="with")
    results: list[ChatMessage] = Field(description="newest first")
    has_more: bool = Field(description="older messages exist: ask with ?before=<last id>")


class Thread(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: int
    with_: ChatUser = Field(alias="with")
    unread: int = Field(description="messages to you after your read mark")
    last_message: ChatMessage | None
    created_at: str


class ThreadList(BaseModel):
    results: list[Thread] = Field(description="the latest message first")


class UnreadThread(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    thread: int
    with_: ChatUser = Field(alias="with")
    unread: int


class Unread(BaseModel):
    total: int
    threads: list[UnreadThread]


class UnreadOut(BaseModel):
    unread: Unread


class PresenceUser(BaseModel):
    id: int
    username: str
    online: bool = Field(description="a chat socket open, or a presence.ping in the last 60 s")
    last_seen: str | None


class PresenceOut(BaseModel):
    users: list[PresenceUser]


class BlockOut(BaseModel):
    user: ChatUser
    blocked: bool


class BlockList(BaseModel):
    results: list[ChatUser]


class UserRequest(BaseModel):
    """`POST /api/chat/threads/` and `/api/chat/blocks/`."""

    user: StrictInt | StrictStr = Field(description="a user id or username")


class ReadRequest(BaseModel):
    """`POST /api/chat/read/`."""

    model_config = ConfigDict(populate_by_name=True)
    with_: StrictInt | StrictStr = Field(alias="with", description="a user id or username")
    until: StrictInt | None = Field(
        default=None, description="the last message id read (default: all so far)"
    )


async def as_me(work: Callable[[sqlite3.Connection, int, int], T], *, write: bool = False) -> T:
    """`work(conn, my user id, now)` on the storage threads: a read, or a durable write."""
    me, rt = user_id(), current_runtime()
    now, store = rt.market.clock(), rt.trading().store
    run = store.write if write else store.read
    return await run(lambda conn: work(conn, me, now))


def _cursor(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    value = whole_number(raw, 18)
    if value is None:
        raise BadRequest(f"invalid_{name}", f"{name} must be a message id")
    return value


@blueprint.get("/messages/<raw_user>/")
@errors(s400=["invalid_before", "invalid_after", "invalid_limit"], s404=["unknown_user"])
@document_response(Conversation)
async def conversation(raw_user: str) -> dict[str, Any]:
    """The messages between you and that user, newest first: `limit` (1-100, 50), `before` /
    `after` a message id."""
    before, after = _cursor("before"), _cursor("after")
    limit = whole_number(request.args.get("limit", str(messages.PAGE)), 3)
    if limit is None or not 1 <= limit <= 100:
        raise BadRequest("invalid_limit", "limit must be a whole number from 1 to 100")
    other, found, more = await as_me(
        lambda conn, me, _: messages.conversation(conn, me, raw_user, before, after, limit)
    )
    return {"with": other, "results": found, "has_more": more}


@blueprint.get("/threads/")
@document_response(ThreadList)
async def threads() -> dict[str, Any]:
    """Your conversations, the newest first, each with its last message and your unread count."""
    return {"results": await as_me(lambda conn, me, _: messages.threads(conn, me))}


@blueprint.post("/threads/")
@errors(s400=["invalid_user", "invalid_receiver"], s404=["unknown_user"])
@document_request(UserRequest)
@document_response(Thread)
async def open_thread() -> dict[str, Any]:
    """Get or make the thread of you and another user (not yourself)."""
    other = validate_body(UserRequest, await request.get_json()).user

    def work(conn: sqlite3.Connection, me: int, now: int) -> dict[str, Any]:
        other_id, _ = messages.user_named(conn, other)
        thread = messages.thread_of(conn, me, other_id, now)
        return messages.threads(conn, me, only=thread)[0]

    return await as_me(work, write=True)


@blueprint.get("/unread/")
@document_response(UnreadOut)
async def unread() -> dict[str, Any]:
    """How many messages you have not read, in all and per sender."""
    return {"unread": await as_me(lambda conn, me, _: messages.unread(conn, me))}


@blueprint.post("/read/")
@errors(s400=["invalid_with", "invalid_until", "invalid_receiver"], s404=["unknown_user"])
@document_request(ReadRequest)
@document_response(UnreadOut)
async def mark_read() -> dict[str, Any]:
    """Everything that user sent you so far is read; your unread counts after it."""
    body = validate_body(ReadRequest, await request.get_json())

    def work(conn: sqlite3.Connection, me: int, _: int) -> dict[str, Any]:
        messages.mark_read(conn, me, body.with_, body.until)
        return messages.unread(conn, me)

    return {"unread": await as_me(work, write=True)}


@blueprint.get("/presence/")
@errors(s400=["invalid_users"])
@document_response(PresenceOut)
async def presence() -> dict[str, Any]:
    """`?users=alice,7`: who of them is online (a socket open, or a ping in the last 60 s);
    names of no user are left out."""
    names = [u.strip() for u in request.args.get("users", "").split(",") if u.strip()]
    if len(names) > MAX_PRESENCE:
        raise BadRequest("invalid_users", f"ask about at most {MAX_PRESENCE} users at once")
    rt = current_runtime()

    def known(conn: Any) -> list[tuple[int, str]]:  # names of no user are left out
        out = []
        for name in names:
            try:
                out.append(messages.user_named(conn, name))
            except NotFound:
                continue
        return out

    found = await rt.trading().store.read(known)
    seen = rt.presence
    mono, wall = seen.clock(), rt.market.clock()
    out = []
    for uid, username in dict(found).items():
        last = seen.last_seen(uid)
        at = iso_ms(int(wall - (mono - last) * 1000)) if last is not None else None
        out.append({"id": uid, "username": username, "online": seen.online(uid), "last_seen": at})
    return {"users": out}


@blueprint.get("/blocks/")
@document_response(BlockList)
async def blocks() -> dict[str, Any]:
    """The users you blocked."""
    return {"results": await as_me(lambda conn, me, _: messages.blocked(conn, me))}


@blueprint.post("/blocks/")
@errors(s400=["invalid_user", "invalid_receiver"], s404=["unknown_user"])
@document_request(UserRequest)
@document_response(BlockOut)
async def block() -> dict[str, Any]:
    """Refuse that user's messages (they get `blocked` when they send)."""
    other = validate_body(UserRequest, await request.get_json()).user
    return await as_me(lambda conn, me, now: messages.block(conn, me, other, now, True), write=True)


@blueprint.delete("/blocks/<raw_user>/")
@errors(s404=["unknown_user"])
@document_response(BlockOut)
async def unblock(raw_user: str) -> dict[str, Any]:
    """Take that user off your block list."""
    return await as_me(
        lambda conn, me, now: messages.block(conn, me, raw_user, now, False), write=True
    )
