"""The outbox's entries in Redis: a fleet's processes enqueue into it and drain it.

Every key of one outbox shares the hash tag ``{getbill-outbox:<name>}``, so each script runs
on one node of a Redis Cluster. Each operation is one Lua script (see ``_redis_lua``), atomic
on the server; it is durable as far as Redis persists: at open the store reads ``appendonly``
and ``appendfsync`` and logs a warning when a restart of Redis could lose entries.

A reply can be lost (a timeout after the script ran). Each call that must not run twice has
an id of its own and is retried a few times with it: a create's retry finds the first
answer instead of adding the create again, and a claim's retry gets what the first one took.
A claim never heard of is undone by the owner's next claim: its entries go back, never sent.

Needs the ``redis`` extra.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

from ..errors import ValidationError
from ..support import require
from ._store import Enqueued, StoreFull, check_account
from ._types import Claimed, DeadEntry, EntryEvent, OutboxStoreError, Outcome, StoreCounts

__all__ = ["RedisStore", "persistence_warning"]

log = logging.getLogger("getbill_async.outbox")
require("redis", extra="redis", feature="A Redis outbox")

from redis.asyncio import Redis  # noqa: E402
from redis.asyncio.cluster import RedisCluster  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import RedisClusterException, RedisError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

from . import _redis_lua as lua  # noqa: E402
from ._delivery_store import RedisVerifyMixin  # noqa: E402

_SCRIPTS = (
    *("ENQUEUE_CREATE", "ENQUEUE_TAGGED", "ENQUEUE_UPDATE", "CLAIM", "RENEW", "FINISH"),
    *("COUNTS", "DEAD", "REQUEUE", "PRUNE", "RECLAIM", "TAGGED"),
)
TIMEOUT = 10.0
RETRIES = (0.05, 0.25, 1.0)  # pauses before the retries of a call whose answer was lost
ENQUEUE_MEMORY_MS = 600_000  # how long a create's answer is kept for its retries
_LOST = (RedisTimeoutError, RedisConnectionError, OSError)


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


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def _entry(raw: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


class RedisStore(RedisVerifyMixin):
    """An outbox named ``name`` in the Redis at ``url`` (one node, or any node of a cluster,
    which is detected)."""

    def __init__(self, url: str, *, name: str, timeout: float = TIMEOUT) -> None:
        if not name or "{" in name or "}" in name:
            reason = f"must be a non-empty name without braces, got {name!r}"
            raise ValidationError(f"name: {reason}", field="name", details={"name": [reason]})
        self.url = url
        self.name = name
        self.prefix = "{getbill-outbox:" + name + "}"
        self.keys = [f"{self.prefix}:{suffix}" for suffix in lua.SUFFIXES]
        self.timeout = timeout
        self._redis: Redis | RedisCluster | None = None
        self._scripts: dict[str, Any] = {}
        self._heard: dict[str, str] = {}  # owner -> the id of its last claim answered

    @property
    def where(self) -> str:
        """Where the outbox lives, for messages: host and key, no password."""
        host = self.url.rpartition("@")[2]
        return f"{host} {self.prefix}"

    async def open(self, account: str | None = None) -> None:
        """Connect; refuse an outbox of another account (see ``check_account``)."""
        try:
            self._redis = await self._connect()
            for name in _SCRIPTS:
                self._scripts[name] = self._redis.register_script(getattr(lua, name))
            await self._redis.hsetnx(self.keys[7], "format", "getbill-outbox/1")
            recorded = await self._redis.hget(self.keys[7], "account")
        except (RedisError, RedisClusterException, OSError) as exc:
            await self.close()
            raise OutboxStoreError(f"outbox at {self.where}: {exc}") from None
        try:
            text = _text(recorded)
            if check_account(self.where, text, account) and account:
                await self._record_account(account)
        except BaseException:
            await self.close()
            raise
        await self._check_persistence()

    async def _record_account(self, account: str) -> None:
        """Record ``account`` unless another opener recorded one meanwhile (then check it)."""
        assert self._redis is not None
        try:
            if await self._redis.hsetnx(self.keys[7], "account", account):
                return
            recorded = await self._redis.hget(self.keys[7], "account")
        except (RedisError, RedisClusterException, OSError) as exc:
            raise OutboxStoreError(f"outbox at {self.where}: {exc}") from None
        check_account(self.where, _text(recorded), account)

    async def _connect(self) -> Redis | RedisCluster:
        wait = self.timeout
        single = Redis.from_url(self.url, socket_timeout=wait, socket_connect_timeout=wait)
        info = await single.info("cluster")
        if not info.get("cluster_enabled"):
            return single
        await single.aclose()
        return RedisCluster.from_url(self.url, socket_timeout=wait, socket_connect_timeout=wait)

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

    async def _run(self, name: str, *args: Any, key: str | None = None) -> Any:
        """Run a script once (``key``: one more key it uses, after the common ones)."""
        if self._redis is None:
            raise OutboxStoreError(f"outbox at {self.where} is not open")
        keys = self.keys if key is None else [*self.keys, key]
        try:
            return await self._scripts[name](keys=keys, args=list(args))
        except (RedisError, RedisClusterException, OSError) as exc:
            raise OutboxStoreError(f"outbox at {self.where}: {exc}") from exc

    async def _run_again(self, name: str, *args: Any, key: str | None = None) -> Any:
        """Run a script whose retry is safe (it carries an id of its own), retrying when its
        answer may have been lost."""
        for pause in (*RETRIES, None):
            try:
                return await self._run(name, *args, key=key)
            except OutboxStoreError as exc:
                if pause is None or not isinstance(exc.__cause__, _LOST):
                    raise
                log.debug("outbox at %s: %s answer lost (%s); retrying", self.where, name, exc)
                await asyncio.sleep(pause)
        raise AssertionError("not reached")

    async def enqueue_create(
        self, key: str | None, debt_id: str, fields: str, now: float, limit: int
    ) -> Enqueued:
        record = f"{self.prefix}:enqueue:{secrets.token_hex(12)}"
        args = (key or "", debt_id, fields, limit, ENQUEUE_MEMORY_MS)
        try:
            return self._enqueued(await self._run_again("ENQUEUE_CREATE", *args, key=record))
        except OutboxStoreError as exc:
            if key is not None or not isinstance(exc.__cause__, _LOST):
                raise
            # Its own retries are over: a retry by the caller is a new create, and without a
            # call_id nothing tells the two apart.
            raise OutboxStoreError(
                f"{exc}; this create (no call_id) may have been enqueued before the answer "
                "was lost: enqueuing it again may send it twice (give creates a call_id)"
            ) from exc.__cause__

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
        claim_id = secrets.token_hex(12)
        heard = self._heard.get(owner, "")
        claims = f"{self.prefix}:claims"
        answer = await self._run_again("CLAIM", owner, n, lease, claim_id, heard, key=claims)
        self._heard[owner] = claim_id
        claimed = []
        for raw in answer:
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
                    tag=e.get("tag"),
                )
            )
        return claimed

    async def reclaim(self, now: float) -> None:
        """Take back the entries in flight whose lease has ended (as the next claim would)."""
        await self._run("RECLAIM")

    async def enqueue_tagged(
        self, tag: str, key: str | None, debt_id: str, fields: str, now: float, *, check: bool
    ) -> Enqueued:
        """Add a create named by ``tag`` unless the tag is taken (a retry after a lost
        answer finds its own entry: ``duplicate``, and the entry is there)."""
        args = (tag, key or "", debt_id, fields, int(check))
        return self._enqueued(await self._run_again("ENQUEUE_TAGGED", *args))

    async def tagged(self) -> list[EntryEvent]:
        """Every tagged entry, in the order it was enqueued, with its state and outcome."""
        events = []
        for raw in await self._run("TAGGED"):
            e = _entry(raw)
            error = json.loads(e["error"]) if e.get("error") else None
            events.append(
                EntryEvent(
                    int(e["seq"]),
                    e["tag"],
                    e.get("key"),
                    e["op"],
                    e.get("debt_id"),
                    e["state"],
                    e.get("followup_id"),
                    error,
                    check=bool(e.get("check")),
                )  # fmt: skip
            )
        return events

    async def renew(self, owner: str, seqs: list[int], until: float) -> list[int]:
        renewed = await self._run("RENEW", owner, max(0.0, until - time.time()), *seqs)
        return [int(seq) for seq in renewed]

    async def finish(self, seq: int, owner: str, outcome: Outcome, *, now: float) -> None:
        next_try = outcome.next_try
        delay = max(0.0, next_try - time.time()) if next_try else 0.0
        text = "" if outcome.error is None else json.dumps(outcome.error)
        args = (seq, owner, outcome.state, outcome.followup_id or "", text, delay)
        await self._run("FINISH", *args, int(outcome.check), int(not outcome.attempted))

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
