"""What ``RedisBudget`` needs from Redis besides its scripts: a client for one node or a
cluster, key names that keep one budget in one hash slot, where it is (for messages), and
wake-ups when another worker frees a slot.

Wake-ups are plain pub/sub on both kinds: a ``PUBLISH`` inside a script reaches every node of a
cluster over its bus, and the listener subscribes on the node that owns the channel's slot.
At a budget's rate (a few messages a second at the most) the broadcast costs nothing worth a
second code path, and it works on every Redis version (sharded pub/sub needs Redis 7). A lost
message, or a listener whose node failed over, costs a waiter at most ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeAlias

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError

from ..._constants import LOGGER_NAME
from ...errors import ConfigurationError, EventLoopError
from ...support import Home, at_loop_end, forks, home, orphan, wait_event

__all__ = ["LoopHome", "RedisClient", "Wakeups", "connect", "hash_tag", "tagged", "where"]

#: The clients a ``RedisBudget`` accepts: one node (or a proxy in front of many), or a cluster.
RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"
log = logging.getLogger(LOGGER_NAME)


def hash_tag(key: str) -> str | None:
    """The hash tag Redis Cluster hashes ``key`` by, or None (Redis then hashes all of it).

    Redis's own rule: the first ``{``, then the first ``}`` after it, and a tag that is not
    empty. ``a{}b}`` has none (its first tag is empty, a later ``}`` does not count).

    Args:
        key: A Redis key.

    Returns:
        The tag, or None when Redis hashes the whole key.
    """
    start = key.find("{")
    if start == -1:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def tagged(key: str) -> str:
    """The prefix of every key of one budget, in one hash slot of a cluster.

    A key without a hash tag goes in one (``getbill:acme`` gives ``{getbill:acme}``); a key
    with its own (``{tenant-7}:getbill``) is kept as it is. Those two forms could name one
    ledger twice (the key ``{getbill:acme}`` would share ``getbill:acme``'s), so a key that is
    a whole tag around a tagless key is refused, with the key to use instead; its ledger is the
    same, so no worker loses its count by switching.

    Args:
        key: The budget's key.

    Returns:
        The prefix of the budget's Redis keys.

    Raises:
        ConfigurationError: The key is ``{<a key without a tag>}``.
    """
    if hash_tag(key) is None:
        return "{" + key + "}"
    inner = key[1:-1]
    if key.startswith("{") and key.endswith("}") and hash_tag(inner) is None:
        raise ConfigurationError(
            f"RedisBudget key {key!r} is how the key {inner!r} is stored, so both would share "
            f"one budget: pass key={inner!r} (the budget adds the hash tag itself)"
        )
    return key


def connect(url: str, *, cluster: bool, timeout: float) -> RedisClient:
    """A client for ``url``, every call bounded by ``timeout``; ``cluster``: a Redis Cluster
    reached through any of its nodes."""
    try:
        if cluster:
            return RedisCluster.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        # One quick retry for a dropped connection; a dead server fails fast.
        retry = Retry(ExponentialBackoff(cap=0.1, base=0.02), 1)
        return aioredis.Redis.from_url(
            url, retry=retry, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    except (ValueError, RedisError) as exc:
        raise ConfigurationError(f"bad Redis URL for RedisBudget: {exc}") from None


def where(client: RedisClient, key: str) -> str:
    """Where a budget lives, for messages: no password, no URL."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or list(client.nodes_manager.startup_nodes.values())
        shown = ",".join(sorted(f"{n.host}:{n.port}" for n in nodes)[:3])
        more = ",..." if len(nodes) > 3 else ""
        return f"Redis Cluster at {shown}{more} (key {key!r})"
    kw = client.connection_pool.connection_kwargs
    place = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    return f"Redis at {place} (db {kw.get('db', 0)}, key {key!r})"


class LoopHome:
    """Where a budget's Redis connections live (a process and an event loop), and their moves.

    The first ``enter()`` makes the running loop home; an owned client is then closed as
    that loop ends (``asyncio.run``). Entered from a child after ``fork()``, the parent's
    connections are left alone there (``orphan``) and new ones made; from another loop, new
    ones once the home loop is closed, and ``EventLoopError`` while it is open.
    """

    def __init__(
        self,
        connect: Callable[[], None],
        disconnect: Callable[[], Awaitable[None]],
        parts: Callable[[], object],
        owned: bool,
    ) -> None:
        self._connect, self._disconnect, self._parts = connect, disconnect, parts
        self._owned = owned
        self._home: Home = (forks(), None)
        self._sentinel: AsyncGenerator[None, None] | None = None
        self._ended = False  # the connections were closed as their loop ended

    def enter(self) -> None:
        here = home()
        if here == self._home:
            return
        born, loop = self._home
        if loop is not None or born != here[0]:
            self._check_move(born != here[0], loop)
            if not self._ended:
                orphan((self._parts(), self._sentinel))
            self._connect()
        self._home, self._ended, self._sentinel = here, False, None
        if self._owned and here[1] is not None:
            self._sentinel = at_loop_end(self._end)

    def _check_move(self, forked: bool, loop: asyncio.AbstractEventLoop | None) -> None:
        if not forked and loop is not None and not loop.is_closed():
            raise EventLoopError(
                "this RedisBudget works on another event loop, which is still open: give each "
                "loop its own budget (on the same key), or share one getbill_async.sync client"
            )
        if not self._owned:
            where = "the parent process" if forked else "an event loop that is closed"
            raise EventLoopError(
                f"the Redis client given to RedisBudget belongs to {where}: pass a redis:// "
                "URL instead, and the budget connects again by itself"
            )

    async def _end(self) -> None:
        self._ended, self._sentinel = True, None
        await self._disconnect()

    async def leave(self) -> None:
        """Close the connections (``aclose``): on their loop, or leave them if elsewhere."""
        born, loop = self._home
        if self._ended:
            return
        if born != forks() or (loop is not None and loop is not home()[1] and loop.is_closed()):
            orphan((self._parts(), self._sentinel))
            return
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            await sentinel.aclose()
        else:
            await self._disconnect()


class Wakeups:
    """One subscriber per budget; a message on a channel sets that channel's current event.

    Take ``event(channel)`` before asking Redis, then ``sleep(event, seconds)``: a release
    published in between is not missed.
    """

    def __init__(self, client: RedisClient, channels: list[str]) -> None:
        self._client = client
        self._channels = channels
        self._events = {channel: asyncio.Event() for channel in channels}
        self._task: asyncio.Task[None] | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        # redis-py's asyncio cluster client has pub/sub from 8.0 on; before, waiters poll.
        self._listens = hasattr(client, "pubsub")
        if not self._listens:
            log.warning(
                "redis-py %s has no pub/sub on a Redis Cluster client (it came in 8.0): "
                "waiters on this budget wake by polling (RedisBudget(poll=...)); "
                "install 'redis>=8' for wake-ups",
                redis.__version__,
            )

    def event(self, channel: str) -> asyncio.Event:
        return self._events[channel]

    async def sleep(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` pass (listening, if not yet)."""
        # A lost listener starts again here.
        if self._listens and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._listen())
        await wait_event(event, seconds)

    def _on_message(self, channel: str) -> None:
        if channel in self._events:
            self._events[channel].set()
            self._events[channel] = asyncio.Event()

    async def _listen(self) -> None:
        pubsub = self._pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=60.0)
                if message is not None:
                    channel = message["channel"]
                    self._on_message(channel.decode() if isinstance(channel, bytes) else channel)
        except Exception as exc:  # any client failure, e.g. a cluster node restarting
            # Waiters still wake after `poll`; the next wait starts a new listener.
            log.debug("budget wake-up channel lost: %s", exc)
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def aclose(self, timeout: float) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(
                RedisError, RedisClusterException, OSError, asyncio.TimeoutError
            ):
                await asyncio.wait_for(pubsub.aclose(), timeout)
