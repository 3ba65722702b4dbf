"""The duplicate filter's marks in Redis, shared by every worker and kept across restarts.

Imported only when a ``DuplicateFilter(redis=...)`` is made (the ``redis`` extra). One key per
event body, ``<prefix><sha256 hex>``, in one of two states:

- ``running:<token>``: a worker claimed the event and is handling it. The key expires after a
  lease (the delivery's deadline and a margin), so the claim of a worker that died lets go;
- ``done``: the event was handled; the key expires ``ttl`` seconds later.

A claim is one script (read, and claim if absent), so two workers never both claim one event.
A copy that finds ``running`` polls the key until it says ``done`` (the copy is answered like a
duplicate), or until the claim is gone (released after a failure, or expired) or the copy's
own deadline passes (answered 503, and the sender sends it again). Every call is bounded by
``timeout``; a Redis that does not answer raises ``MarksUnavailable``, never a silent pass.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from ._marks import MarksUnavailable

__all__ = ["RedisMarks", "check_url", "where"]

_DONE = b"done"
_CLAIM = """
local seen = redis.call('GET', KEYS[1])
if seen then return seen end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'claimed'
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_POLL_FIRST = 0.02
_POLL_MOST = 0.2


def check_url(url: object) -> str:
    """The URL, when it is one redis-py reads; the error never shows its password."""
    if not isinstance(url, str):
        raise TypeError(f"redis must be a Redis URL (a str), got {type(url).__name__}")
    try:
        parse_url(url)
    except ValueError as exc:
        raise ValueError(f"redis is not a Redis URL: {exc}") from None
    return url


def where(url: str) -> str:
    """Host, port and db of ``url``, for a repr or a log line: no password, no user."""
    kwargs: dict[str, Any] = dict(parse_url(url))
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class RedisMarks:
    """The claims and ``done`` marks of one ``DuplicateFilter`` in Redis."""

    def __init__(self, url: str, *, ttl: float, prefix: str, timeout: float) -> None:
        self._url = url
        self._ttl_ms = max(1, round(ttl * 1000))
        self._prefix = prefix
        self._timeout = timeout
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokens: dict[bytes, bytes] = {}

    def _redis(self) -> aioredis.Redis:
        # A client belongs to the loop it first ran on: a new loop (a test's, a worker's)
        # gets its own rather than one whose connections are bound elsewhere.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = aioredis.Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
            self._loop = loop
        return self._client

    def _key(self, digest: bytes) -> str:
        return self._prefix + digest.hex()

    async def _call(self, ask: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        try:
            return await asyncio.wait_for(ask(self._redis()), self._timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise MarksUnavailable(
                f"{type(exc).__name__} from Redis at {where(self._url)}"
            ) from exc

    async def _eval(self, script: str, digest: bytes, *args: bytes | int) -> Any:
        key = self._key(digest)
        return await self._call(lambda client: client.eval(script, 1, key, *args))

    async def _get(self, digest: bytes) -> Any:
        key = self._key(digest)
        return await self._call(lambda client: client.get(key))

    async def claim(self, digest: bytes, lease: float) -> str:
        """``"claimed"`` (handle it now), ``"done"`` or ``"running"`` (another has it)."""
        token = b"running:" + secrets.token_hex(8).encode()
        lease_ms = max(1, round(lease * 1000))
        seen = await self._eval(_CLAIM, digest, token, lease_ms)
        if seen == b"claimed":
            self._tokens[digest] = token
            return "claimed"
        return "done" if seen == _DONE else "running"

    async def outcome(self, digest: bytes, timeout: float) -> bool:
        """Whether the claim another worker holds ends ``done`` within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        pause = _POLL_FIRST
        while True:
            seen = await self._get(digest)
            if seen == _DONE:
                return True
            if seen is None or loop.time() + pause > until:
                return False  # released after a failure, expired, or no time left
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MOST)

    async def finish(self, digest: bytes) -> None:
        """Mark the event handled, for ``ttl`` seconds (whoever held the claim)."""
        self._tokens.pop(digest, None)
        key, ttl_ms = self._key(digest), self._ttl_ms
        await self._call(lambda client: client.set(key, _DONE, px=ttl_ms))

    async def release(self, digest: bytes) -> None:
        """Let go of this worker's claim (a failure): a copy may run the callback again."""
        token = self._tokens.pop(digest, None)
        if token is not None:
            await self._eval(_RELEASE, digest, token)

    async def seen(self, digest: bytes) -> bool:
        """Whether the event is marked handled."""
        return bool(await self._get(digest) == _DONE)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
