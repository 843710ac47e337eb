"""The private user stream (`/ws/user/`): each user's own orders, fills, cash and holdings, pushed
from the outbox as they commit, with resume after a reconnect. It joins the back office (accounts,
the outbox) to the streams' connections, so it sits above both."""

from marketsrv.private.endpoint import UserStreamRouter
from marketsrv.private.relay import Relay

__all__ = ["Relay", "UserStreamRouter"]
