"""The bus: the few Redis (or Valkey) Streams commands a primary and its edges use, over coredis.

This is the only module that imports the Redis client, and only a primary or an edge imports it
(a standalone server never does). Everything above it deals in `Entry` and plain dicts, so that
another client (redis-py in threads, say) could replace this file alone.

Two keys, under the settings' `bus_prefix`:

    PREFIX:market     a stream capped near `bus_max_entries`: one entry per publish of the hub
    PREFIX:snapshot   a hash: the state as of the newest checkpoint (every symbol's book, quote...)

The primary writes the hash with an entry in one MULTI/EXEC (a checkpoint), so that an edge
which reads the hash and the newest entries in one transaction holds a snapshot and exactly the
entries that follow it (`../shared/notes/scaleout.md`: a snapshot read apart from the stream
position broke every chain).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import coredis
import trio

log = logging.getLogger("marketsrv.scale")
RETRY_S = (0.2, 5.0)  # the first and the longest pause before connecting again
CONNECT_TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 10.0  # a command's answer; longer than any blocking read (edge.BLOCK_MS)


class BusError(Exception):
    """The bus could not be reached or refused a command; the caller retries later."""


@dataclass(frozen=True)
class Entry:
    id: bytes
    fields: Mapping[bytes, bytes]


@dataclass(frozen=True)
class Joined:
    entries: list[Entry]  # the newest, newest first
    snapshot: dict[bytes, bytes]  # the state as of the checkpoint entry its ~meta names


class Bus:
    def __init__(self, client: coredis.Redis[bytes], prefix: str, max_entries: int) -> None:
        self._client = client
        self.stream_key = f"{prefix}:market"
        self.snapshot_key = f"{prefix}:snapshot"
        self._max_entries = max_entries

    async def publish(
        self, entries: list[dict[str, bytes]], snapshot: dict[bytes, bytes], reset: bool
    ) -> int:
        """Append `entries`, and set `snapshot`'s fields (after deleting the whole snapshot if
        `reset`), in one transaction. Returns the number of fields the snapshot then has (-1 with
        no snapshot): fewer than the last reset wrote means Redis lost them (a restart)."""
        try:
            async with self._client.pipeline(transaction=bool(snapshot)) as pipe:
                if reset:
                    pipe.delete([self.snapshot_key])
                for fields in entries:
                    pipe.xadd(
                        self.stream_key,
                        fields,
                        trim_strategy=coredis.PureToken.MAXLEN,
                        threshold=self._max_entries,
                        trim_operator=coredis.PureToken.APPROXIMATELY,
                    )
                size = None
                if snapshot:
                    pipe.hset(self.snapshot_key, snapshot)
                    size = pipe.hlen(self.snapshot_key)
            return -1 if size is None else int(await size)
        except Exception as exc:
            raise BusError(f"cannot publish to the bus: {exc!r}") from exc

    async def join(self, tail: int) -> Joined:
        """The snapshot and the newest `tail` entries (newest first), read in one transaction."""
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                newest = pipe.xrevrange(self.stream_key, "+", "-", count=tail)
                state = pipe.hgetall(self.snapshot_key)
            entries, snapshot = await newest, await state
        except Exception as exc:
            raise BusError(f"cannot read the bus: {exc!r}") from exc
        return Joined([_entry(e) for e in entries], dict(snapshot))

    async def read(self, after: bytes, block_ms: int, count: int) -> list[Entry]:
        """Entries after the id `after`, waiting up to `block_ms` for the first."""
        try:
            found = await self._client.xread({self.stream_key: after}, count=count, block=block_ms)
        except Exception as exc:
            raise BusError(f"cannot read the bus: {exc!r}") from exc
        if not found:
            return []
        return [_entry(e) for e in found.get(self.stream_key.encode(), ())]


def _entry(found: Any) -> Entry:
    return Entry(found.identifier, found.field_values)


@asynccontextmanager
async def connect(url: str, prefix: str, max_entries: int) -> AsyncIterator[Bus]:
    """A bus over a client of its own, closed on exit. Connecting is lazy: a Redis that is down
    shows as a `BusError` from the first command."""
    try:
        # Bounded waits: a network that drops packets must fail a call, not hang it (a blocking
        # read waits BLOCK_MS at most, well within the stream timeout).
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, connect_timeout=CONNECT_TIMEOUT_S, stream_timeout=STREAM_TIMEOUT_S
        )
    except Exception as exc:  # a malformed URL
        raise BusError(f"cannot use bus_url: {exc}") from exc
    try:
        await client.__aenter__()
    except Exception as exc:
        raise BusError(f"cannot connect to the bus: {exc!r}") from exc
    try:
        yield Bus(client, prefix, max_entries)
    finally:
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            await client.__aexit__(None, None, None)


class Retry:
    """The pause before connecting again: doubling from the first to the longest, and back to
    the first once the work says it is making progress (`reset`)."""

    def __init__(self) -> None:
        self.wait = RETRY_S[0]

    def reset(self) -> None:
        self.wait = RETRY_S[0]

    async def pause(self) -> None:
        await trio.sleep(self.wait)
        self.wait = min(self.wait * 2, RETRY_S[1])


async def keep_connected(
    url: str,
    prefix: str,
    max_entries: int,
    work: Callable[[Bus, Retry], Awaitable[None]],
    failed: Callable[[], None],
) -> None:
    """Run `work` over a bus until cancelled, connecting again whenever it fails (`failed` is
    told first). Any other error is logged too: the server goes on without the bus meanwhile."""
    retry = Retry()
    while True:
        try:
            async with connect(url, prefix, max_entries) as b:
                await work(b, retry)
        except BusError as exc:
            log.warning("the bus failed (%s); connecting again in %.1f s", exc, retry.wait)
        except Exception:  # never expected: a bug must not end the server
            log.exception("working with the bus failed; connecting again in %.1f s", retry.wait)
        failed()
        await retry.pause()
