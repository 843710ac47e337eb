"""Who is online: a user with a chat socket open, or who sent `presence.ping` (or connected)
less than `ONLINE_S` ago. In memory: presence is not worth a disk write, and a restart that
forgets it is right (everyone reconnects)."""

from __future__ import annotations

import time
from collections.abc import Callable

ONLINE_S = 60.0


class Presence:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[int, float] = {}  # user id -> when it last pinged or connected
        self._sockets: dict[int, int] = {}  # user id -> chat sockets open

    def seen(self, user_id: int) -> None:
        self._seen[user_id] = self.clock()

    def opened(self, user_id: int) -> None:
        self._sockets[user_id] = self._sockets.get(user_id, 0) + 1
        self.seen(user_id)

    def closed(self, user_id: int) -> None:
        left = self._sockets.get(user_id, 0) - 1
        if left > 0:
            self._sockets[user_id] = left
        else:
            self._sockets.pop(user_id, None)

    def online(self, user_id: int) -> bool:
        last = self._seen.get(user_id)
        return user_id in self._sockets or (last is not None and self.clock() - last < ONLINE_S)

    def last_seen(self, user_id: int) -> float | None:
        return self._seen.get(user_id)
