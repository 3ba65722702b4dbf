"""A rate budget shared by every process and host that uses one OAuth client: ``RedisBudget``.

GetBill counts requests per OAuth client, so ten workers on one client share one sliding
window. Each keeps a ``LocalBudget``-style ledger in Redis instead of in memory: per class
(read, write) a sorted set of counted slots scored by when each frees, and a sorted set of slots
in flight scored by when their lease ends. Admission is one Lua script, so it is atomic, and it
reads ``TIME`` on the Redis server: one clock decides for the whole fleet, and a worker whose
clock is seconds off (or whose monotonic clock started elsewhere) cannot break the window. The
worker only measures durations (how long to sleep), never instants.

The rules are ``LocalBudget``'s: a slot counts from the answer's time (Redis's ``TIME`` when the
release runs); a request in flight holds a slot; ``Outcome(sent=False)`` gives the slot back;
``X-RateLimit-Remaining`` lower than the ledger's count adds the unseen requests as taken *now*;
a 429 pauses the class, here for every worker. A full budget costs no polling: the script says
when the next slot frees, the worker sleeps that long plus a little jitter, and wakes early
when another worker's release is published on the class's channel (or after ``poll`` seconds,
in case a message was lost).

    budget = RedisBudget("redis://localhost:6379/0", "getbill:acme", RateLimit(reads=1000))
    async with budget, GetBillClient(token, rate_limit=budget) as client:
        ...

Keys, per class: ``<key>:<class>:slots``, ``:inflight``, ``:pause``, ``:pace``, ``:server`` and
the channel ``:freed`` (see ``_redis_lua``); each expires on its own once the fleet has been idle
for a window and two leases. Redis's clock must run at the server's rate (any NTP-disciplined
host does); only a step *forward* of the Redis host's clock could free slots early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RedisBudget needs redis-py: pip install 'getbill-async[redis]'") from exc

from ._budget import (
    BudgetStatus,
    ClassStatus,
    Kind,
    Lane,
    LocalBudget,
    Outcome,
    RateLimit,
    Slot,
    parse_headers,
)
from ._constants import LOGGER_NAME
from ._redis_lua import ACQUIRE, RELEASE, STATUS
from .errors import BudgetExhaustedError, BudgetUnavailableError, ConfigurationError

__all__ = ["DEFAULT_KEY", "RedisBudget", "budget_from_url"]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)
KINDS: tuple[Kind, ...] = ("read", "write")
DEFAULT_KEY = "getbill:default"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(float(value))


class RedisBudget:
    """A ``Budget`` kept in Redis, shared by every worker that uses the same ``key``.

    ``url_or_client``: a ``redis://`` / ``rediss://`` / ``unix://`` URL (the budget owns that
    client and closes it in ``aclose``) or a ``redis.asyncio.Redis`` of yours (left open).
    ``key``: one per OAuth client, e.g. ``"getbill:<client id>"``; every worker of that client
    must use the same key and the same ``rate_limit``.

    ``lease``: how long a slot may stay in flight before the ledger assumes its worker died. It
    must exceed the longest time between ``acquire`` and ``release`` of one try: a token fetch
    plus the request, each bounded by the client's ``timeout`` (30 s by default), so 2 x 30 s
    with room for a busy event loop. Too short would count a slow request as freeing before it
    really does (unsafe); too long only keeps a crashed worker's slot a little longer (its slot
    frees at ``lease + window`` after it was taken), so the default errs long.

    ``timeout`` bounds every Redis call; ``poll`` bounds one sleep (a lost wake-up message costs
    at most that). Redis unreachable: ``BudgetUnavailableError``; with ``fallback=True`` a
    WARNING and a ``LocalBudget`` with ``1 / expected_workers`` of each limit (each worker's fair
    share, so the fleet stays under the limit however many of them fall back; the server's
    ``X-RateLimit-Remaining`` narrows it further). Redis is tried again every
    ``fallback_retry`` seconds; slots spent locally meanwhile reach the shared ledger through the
    server's headers.
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis,
        key: str = DEFAULT_KEY,
        rate_limit: RateLimit | None = None,
        *,
        fallback: bool = False,
        expected_workers: int = 4,
        lease: float = 120.0,
        poll: float = 1.0,
        timeout: float = 2.0,
        fallback_retry: float = 30.0,
    ) -> None:
        if not key:
            raise ConfigurationError("RedisBudget key must be a non-empty string")
        if expected_workers < 1:
            raise ConfigurationError(f"expected_workers must be >= 1, got {expected_workers!r}")
        for name, value in (("lease", lease), ("poll", poll), ("timeout", timeout)):
            if not value > 0:
                raise ConfigurationError(f"RedisBudget {name} must be > 0 seconds, got {value!r}")
        self.rate_limit = rate_limit or RateLimit()
        self.key = key
        self.lease = float(lease)
        self.poll = float(poll)
        self.timeout = float(timeout)
        self.fallback = fallback
        self.expected_workers = expected_workers
        self.fallback_retry = float(fallback_retry)
        if isinstance(url_or_client, str):
            try:
                self._redis = aioredis.Redis.from_url(
                    url_or_client,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    # One quick retry for a dropped connection; a dead server fails fast.
                    retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1),
                )
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL for RedisBudget: {exc}") from None
            self._owns_client = True
        else:
            self._redis = url_or_client
            self._owns_client = False
        self._scripts = tuple(self._redis.register_script(s) for s in (ACQUIRE, RELEASE, STATUS))
        self._locks = {kind: asyncio.Lock() for kind in KINDS}  # FIFO within this process
        self._events = {kind: asyncio.Event() for kind in KINDS}
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: PubSub | None = None
        share = RateLimit(
            reads=max(1, self.rate_limit.reads // expected_workers),
            writes=max(1, self.rate_limit.writes // expected_workers),
            window=self.rate_limit.window,
            max_wait=self.rate_limit.max_wait,
            pace=self.rate_limit.pace,
        )
        self._local = LocalBudget(share)
        self._local_until: float | None = None  # monotonic end of the fallback, None: shared
        self._release_failed = False
        self._forgetting: set[asyncio.Task[None]] = set()
        self._closed = False

    # keys and Redis calls ---------------------------------------------------------------

    def _keys(self, kind: Kind) -> list[str]:
        base = f"{self.key}:{kind}"
        return [f"{base}:{name}" for name in ("slots", "inflight", "pause", "pace", "server")]

    def _channel(self, kind: Kind) -> str:
        return f"{self.key}:{kind}:freed"

    def _where(self) -> str:
        kw = self._redis.connection_pool.connection_kwargs
        place = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        return f"Redis at {place} (db {kw.get('db', 0)}, key {self.key!r})"

    async def _call(self, doing: str, call: Awaitable[T]) -> T:
        """One Redis round trip, bounded by ``timeout``; failures become BudgetUnavailable."""
        try:
            return await asyncio.wait_for(call, self.timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise BudgetUnavailableError(
                f"shared rate budget unavailable: {self._where()} failed while {doing}: {reason}"
            ) from exc

    def _limits(self, kind: Kind) -> tuple[int, float]:
        return self.rate_limit.limit(kind), float(self.rate_limit.window)

    # the Budget protocol -----------------------------------------------------------------

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot:
        if self._closed:
            raise ConfigurationError("the RedisBudget is closed")
        if self._local_until is not None and time.monotonic() < self._local_until:
            return await self._local.acquire(kind, lane=lane, max_wait=max_wait)
        try:
            slot = await self._acquire_shared(kind, max_wait)
        except BudgetUnavailableError as exc:
            if not self.fallback:
                raise
            if self._local_until is None:
                log.warning(
                    "%s; falling back to a local budget of 1/%d of the limits (%r) and trying "
                    "Redis again every %gs",
                    exc,
                    self.expected_workers,
                    self._local,
                    self.fallback_retry,
                )
            self._local_until = time.monotonic() + self.fallback_retry
            return await self._local.acquire(kind, lane=lane, max_wait=max_wait)
        if self._local_until is not None:
            log.warning("%s answers again: back to the shared budget", self._where())
            self._local_until = None
        return slot

    async def _acquire_shared(self, kind: Kind, max_wait: float | None) -> Slot:
        acquire = self._scripts[0]
        limit, window = self._limits(kind)
        if max_wait is None:
            max_wait = self.rate_limit.max_wait
        if max_wait is not None and math.isinf(max_wait):
            max_wait = None
        start = time.monotonic()
        async with self._locks[kind]:
            while True:
                slot_id = uuid.uuid4().hex
                woken = self._events[kind]  # taken before asking, so no release slips by
                args: list[str | float] = [
                    limit,
                    window,
                    self.lease,
                    slot_id,
                    int(self.rate_limit.pace),
                ]
                try:
                    answer = await self._call(
                        f"acquiring a {kind} slot", acquire(keys=self._keys(kind), args=args)
                    )
                except asyncio.CancelledError:
                    self._forget(kind, slot_id)  # the script may have run: give the slot back
                    raise
                except BudgetUnavailableError as exc:
                    if isinstance(exc.__cause__, (asyncio.TimeoutError, RedisTimeoutError)):
                        self._forget(kind, slot_id)  # no answer, yet it may have run
                    raise
                if int(answer[0]) == 1:
                    # The handle: the slot's id and when Redis admitted it.
                    token = f"{slot_id} {_text(answer[1])}"
                    return Slot(kind, time.monotonic() - start, token)
                wait, flying_only = float(_text(answer[1])), int(answer[2]) == 1
                if max_wait is not None:
                    # Only answers can free a slot: a window from now at the soonest.
                    estimate = min(wait, window) if flying_only else wait
                    if time.monotonic() - start + estimate > max_wait:
                        raise BudgetExhaustedError(kind, estimate, max_wait)
                if log.isEnabledFor(logging.DEBUG):
                    shown = "an answer in flight" if flying_only else f"{wait:.3f}s"
                    log.debug("shared %s budget full: waiting for %s", kind, shown)
                await self._sleep(woken, wait)

    async def _sleep(self, woken: asyncio.Event, wait: float) -> None:
        """Sleep until the next slot frees (plus jitter, so the fleet does not wake as one),
        a release is published, or ``poll`` passes."""
        self._listen()
        seconds = min(self.poll, wait + random.uniform(0.0, min(0.05, 0.005 + 0.01 * wait)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(woken.wait(), seconds)

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        if not slot.token:
            await self._local.release(slot, outcome)
            return
        slot_id, _, admitted = slot.token.partition(" ")
        limit, remaining, window = parse_headers(outcome.headers)
        own_limit, own_window = self._limits(slot.kind)
        args: list[str | float] = [
            slot_id,
            "1" if outcome.sent else "0",
            own_limit,
            own_window,
            self.lease,
            "" if outcome.status is None else str(outcome.status),
            _number(remaining),
            _number(limit),
            _number(window),
            _number(outcome.retry_after),
            admitted,
            self._channel(slot.kind),
        ]
        try:
            await self._call(
                f"releasing a {slot.kind} slot",
                self._scripts[1](keys=self._keys(slot.kind), args=args),
            )
        except BudgetUnavailableError as exc:
            # The slot stays in flight in Redis until its lease ends, which errs on the safe
            # side; raising here would hide the request's own result.
            if not self._release_failed:
                log.warning("%s; the slot is held until its lease ends", exc)
            self._release_failed = True
        else:
            self._release_failed = False

    def _forget(self, kind: Kind, token: str) -> None:
        task = asyncio.ensure_future(self.release(Slot(kind, 0.0, token), Outcome(sent=False)))
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def status(self) -> BudgetStatus:
        if self._local_until is not None and time.monotonic() < self._local_until:
            return await self._local.status()
        try:
            reads, writes = [await self._class_status(kind) for kind in KINDS]
        except BudgetUnavailableError:
            if not self.fallback:
                raise
            return await self._local.status()
        return BudgetStatus(reads, writes)

    async def _class_status(self, kind: Kind) -> ClassStatus:
        limit, window = self._limits(kind)
        answer = await self._call(
            f"reading the {kind} budget",
            self._scripts[2](keys=self._keys(kind), args=[limit, window, self.lease]),
        )
        lim, win, used, flying, wait, blocked = (float(_text(v)) for v in answer)
        return ClassStatus(
            limit=int(lim),
            window=win,
            used=int(used),
            in_flight=int(flying),
            remaining=max(0, int(lim - used - flying)),
            next_slot_in=wait,
            blocked_for=blocked,
        )

    # wake-ups ----------------------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._listen_loop())

    async def _listen_loop(self) -> None:
        channels = {self._channel(kind): kind for kind in KINDS}
        pubsub = self._pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(*channels)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=60.0)
                if message is not None:
                    kind = channels.get(_text(message["channel"]))
                    if kind is not None:
                        self._events[kind].set()
                        self._events[kind] = asyncio.Event()
        except (RedisError, OSError) as exc:
            # Waiters still wake after `poll`; the next wait starts a new listener.
            log.debug("budget wake-up channel lost: %s", exc)
            self._pubsub = None
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    # lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop listening, hand back abandoned slots, and close the client if it is ours."""
        if self._closed:
            return
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), self.timeout)  # type: ignore[no-untyped-call]
        if self._forgetting:
            await asyncio.gather(*self._forgetting, return_exceptions=True)
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisBudget:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        r = self.rate_limit
        return (
            f"RedisBudget(key={self.key!r}, reads={r.reads}, writes={r.writes}, "
            f"window={r.window:g})"
        )


def budget_from_url(
    url: str,
    rate_limit: RateLimit,
    *,
    fallback: bool = False,
    key: str = DEFAULT_KEY,
    **options: Any,
) -> RedisBudget:
    """The ``RedisBudget`` behind a ``--redis URL`` option (``redis://``, ``rediss://`` or
    ``unix://``); pass ``key="getbill:<client id>"`` so each OAuth client has its own budget."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"--redis must be a redis://, rediss:// or unix:// URL, got {url.split('@')[-1]!r}"
        )
    return RedisBudget(url, key, rate_limit, fallback=fallback, **options)
