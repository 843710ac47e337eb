"""Accounts REST: register, login, logout, and who am I; plus the bearer-token check."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request
from quart_schema import document_request, document_response

from marketsrv.api.openapi import errors
from marketsrv.api.trading_schemas import Detail, TokenOut, UserOut
from marketsrv.errors import BadRequest, NotAuthenticated
from marketsrv.runtime import current_runtime
from marketsrv.trading.accounts import User
from marketsrv.trading.requests import Credentials, validate_body

blueprint = Blueprint("accounts", __name__, url_prefix="/api/accounts")


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise NotAuthenticated("not_authenticated", "Authentication credentials were not provided.")
    if scheme.lower() not in ("bearer", "token") or not token.strip():
        raise NotAuthenticated("invalid_token", "Use 'Authorization: Bearer <token>'.")
    return token.strip()


async def current_user() -> User:
    user = await current_runtime().trading().accounts.authenticate(bearer_token())
    if user is None:
        raise NotAuthenticated("invalid_token", "Invalid or revoked token.")
    return user


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin}


async def credentials(*, login: bool = False) -> tuple[str, str]:
    body = await request.get_json()
    try:
        found = validate_body(Credentials, body)
    except BadRequest as exc:
        if login and exc.code != "invalid_body":  # a login never says which part was wrong
            raise BadRequest("invalid_credentials", "username and password are required") from None
        raise
    return found.username, found.password


def client_address() -> str:
    """The peer's address, the key of the password throttles. Behind a reverse proxy every
    client shares the proxy's address (docs/protocol.md says so)."""
    return request.remote_addr or ""


# A token is a credential: no cache on the way may keep the answer that carries it.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@blueprint.post("/register/")
@errors(s400=["invalid_username", "invalid_password", "username_taken"], s429=["too_many_attempts"])
@document_request(Credentials)
@document_response(TokenOut, 201)
async def register() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Create an account (username and password) and sign in: the answer carries its token."""
    accounts = current_runtime().trading().accounts
    user, token = await accounts.register(*await credentials(), client=client_address())
    return {"token": token, "user": user_json(user)}, 201, NO_STORE


@blueprint.post("/login/")
@errors(s400=["invalid_credentials"], s429=["too_many_attempts"])
@document_request(Credentials)
@document_response(TokenOut)
async def login() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Sign in: a bearer token for the `Authorization` header and the private streams. Throttled
    per address and per username (429 `too_many_attempts`).
    """
    accounts = current_runtime().trading().accounts
    user, token = await accounts.login(*await credentials(login=True), client=client_address())
    return {"token": token, "user": user_json(user)}, 200, NO_STORE


@blueprint.post("/logout/")
@document_response(Detail)
async def logout() -> dict[str, Any]:
    """Revoke this token: it stops working at once, and the streams opened with it close (4002)."""
    await current_user()
    await current_runtime().trading().accounts.logout(bearer_token())
    return {"detail": "Logged out."}


@blueprint.get("/me/")
@document_response(UserOut)
async def me() -> dict[str, Any]:
    """The signed-in user."""
    user = await current_user()
    admin = await current_runtime().trading().accounts.is_admin(user.id)
    return {**user_json(user), "is_admin": admin}
