"""The outbox's entries in Redis: a fleet's processes enqueue into it and drain it.

Every key of one outbox shares the hash tag ``{getbill-outbox:<name>}``, so each script runs
on one node of a Redis Cluster. Each operation is one Lua script (see ``_redis_lua``), atomic
on the server; it is durable as far as Redis persists: at open the store reads ``appendonly``
and ``appendfsync`` and logs a warning when a restart of Redis could lose entries.

Needs the ``redis`` extra.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from ..errors import ValidationError
from ..support import require
from ._store import Enqueued, StoreFull
from ._types import Claimed, DeadEntry, OutboxStoreError, StoreCounts

__all__ = ["RedisStore", "persistence_warning"]

log = logging.getLogger("getbill_async.outbox")
require("redis", extra="redis", feature="A Redis outbox")

from redis.asyncio import Redis  # noqa: E402
from redis.asyncio.cluster import RedisCluster  # noqa: E402
from redis.exceptions import RedisClusterException, RedisError  # noqa: E402

from . import _redis_lua as lua  # noqa: E402
from ._delivery_store import RedisVerifyMixin  # noqa: E402

_SCRIPTS = (
    *("ENQUEUE_CREATE", "ENQUEUE_UPDATE", "CLAIM", "RENEW", "FINISH"),
    *("COUNTS", "DEAD", "REQUEUE", "PRUNE"),
)
TIMEOUT = 10.0


def persistence_warning(config: dict[str, Any]) -> str | None:
    """What a restart of Redis could lose under ``config`` (``CONFIG GET append*``), or None."""
    if str(config.get("appendonly", "")).lower() != "yes":
        return "appendonly is off: a restart of Redis loses every entry since its last snapshot"
    if str(config.get("appendfsync", "")).lower() != "always":
        return (
            f"appendfsync is {config.get('appendfsync')!r}: a crash of Redis may lose the "
            "last second of entries (appendfsync always makes each enqueue durable)"
        )
    return None


def _entry(raw: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


class RedisStore(RedisVerifyMixin):
    """An outbox named ``name`` in the Redis at ``url`` (one node, or any node of a cluster,
    which is detected)."""

    def __init__(self, url: str, *, name: str) -> None:
        if not name or "{" in name or "}" in name:
            reason = f"must be a non-empty name without braces, got {name!r}"
            raise ValidationError(f"name: {reason}", field="name", details={"name": [reason]})
        self.url = url
        self.name = name
        self.prefix = "{getbill-outbox:" + name + "}"
        self.keys = [f"{self.prefix}:{suffix}" for suffix in lua.SUFFIXES]
        self._redis: Redis | RedisCluster | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def where(self) -> str:
        """Where the outbox lives, for messages: host and key, no password."""
        host = self.url.rpartition("@")[2]
        return f"{host} {self.prefix}"

    async def open(self) -> None:
        try:
            self._redis = await self._connect()
            for name in _SCRIPTS:
                self._scripts[name] = self._redis.register_script(getattr(lua, name))
            await self._redis.hsetnx(self.keys[7], "format", "getbill-outbox/1")
        except (RedisError, RedisClusterException, OSError) as exc:
            raise OutboxStoreError(f"outbox at {self.where}: {exc}") from None
        await self._check_persistence()

    async def _connect(self) -> Redis | RedisCluster:
        single = Redis.from_url(self.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        info = await single.info("cluster")
        if not info.get("cluster_enabled"):
            return single
        await single.aclose()
        return RedisCluster.from_url(
            self.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )

    async def _check_persistence(self) -> None:
        assert self._redis is not None
        try:
            config: Any = await self._redis.config_get("append*")
        except (RedisError, RedisClusterException) as exc:
            log.warning("outbox at %s: cannot read its persistence settings (%s)", self.where, exc)
            return
        if isinstance(self._redis, RedisCluster) and config and "appendonly" not in config:
            config = next(iter(config.values()))  # per node: the first node's answer
        warning = persistence_warning(dict(config))
        if warning:
            log.warning("outbox at %s: %s", self.where, warning)

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    async def _run(self, name: str, *args: Any) -> Any:
        if self._redis is None:
            raise OutboxStoreError(f"outbox at {self.where} is not open")
        try:
            return await self._scripts[name](keys=self.keys, args=list(args))
        except (RedisError, RedisClusterException, OSError) as exc:
            raise OutboxStoreError(f"outbox at {self.where}: {exc}") from None

    async def enqueue_create(
        self, key: str | None, debt_id: str, fields: str, now: float, limit: int
    ) -> Enqueued:
        answer = await self._run("ENQUEUE_CREATE", key or "", debt_id, fields, limit)
        return self._enqueued(answer)

    async def enqueue_update(
        self, key: str, fields: dict[str, Any], now: float, limit: int
    ) -> Enqueued:
        answer = await self._run("ENQUEUE_UPDATE", key, json.dumps(fields), limit)
        return self._enqueued(answer)

    @staticmethod
    def _enqueued(answer: Any) -> Enqueued:
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        if text == "full":
            raise StoreFull
        assert text in ("added", "merged", "duplicate", "unchanged")
        return text  # type: ignore[return-value]

    async def claim(self, owner: str, n: int, lease: float, now: float) -> list[Claimed]:
        claimed = []
        for raw in await self._run("CLAIM", owner, n, lease):
            e = _entry(raw)
            claimed.append(
                Claimed(
                    seq=int(e["seq"]),
                    key=e.get("key"),
                    op=e["op"],
                    debt_id=e.get("debt_id"),
                    fields=json.loads(e["fields"]),
                    target=e.get("target"),
                    check=bool(e.get("check")),
                    attempts=int(e["attempts"]),
                )
            )
        return claimed

    async def renew(self, owner: str, seqs: list[int], until: float) -> None:
        await self._run("RENEW", owner, max(0.0, until - time.time()), *seqs)

    async def finish(
        self,
        seq: int,
        owner: str,
        state: Literal["done", "dead", "held", "pending"],
        *,
        now: float,
        followup_id: str | None = None,
        error: dict[str, Any] | None = None,
        next_try: float = 0.0,
        check: bool = False,
    ) -> None:
        delay = max(0.0, next_try - time.time()) if next_try else 0.0
        text = "" if error is None else json.dumps(error)
        args = (seq, owner, state, followup_id or "", text, delay, int(check))
        await self._run("FINISH", *args)

    async def counts(self) -> StoreCounts:
        answer = await self._run("COUNTS")
        pending, in_flight, done, dead, held, merged, unkeyed = (int(v) for v in answer[:7])
        oldest, redis_now = float(answer[7]), float(answer[8])
        # Redis's clock said when; the outbox measures ages on this machine's clock.
        local = None if oldest < 0 else time.time() - (redis_now - oldest)
        return StoreCounts(pending, in_flight, done, dead, held, merged, unkeyed, local)

    async def dead_entries(self) -> list[DeadEntry]:
        entries = []
        for raw in await self._run("DEAD"):
            e = _entry(raw)
            info: dict[str, Any] = json.loads(e["error"]) if e.get("error") else {}
            entries.append(
                DeadEntry(
                    id=int(e["seq"]),
                    key=e.get("key"),
                    op=e["op"],
                    state=e["state"],
                    fields=json.loads(e["fields"]),
                    status=info.get("status"),
                    message=str(info.get("message", "")),
                    details=dict(info.get("details") or {}),
                )
            )
        return entries

    async def requeue(self, keys: list[str], ids: list[int], held: bool) -> int:
        return int(await self._run("REQUEUE", int(held), len(keys), *keys, *ids))

    async def prune(self, before: float) -> int:
        return int(await self._run("PRUNE", max(0.0, time.time() - before)))
