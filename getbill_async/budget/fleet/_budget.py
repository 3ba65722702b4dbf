"""A rate budget shared by every process and host that uses one OAuth client: ``RedisBudget``.

GetBill counts requests per OAuth client, so ten workers on one client share one sliding
window, kept in Redis as ``LocalBudget``'s ledger is in memory: per class a sorted set of
counted slots scored by when each frees, and one of slots in flight scored by when their lease
ends. Admission is one Lua script (atomic) reading Redis's ``TIME``: one clock decides for the
whole fleet; a worker only measures durations (how long to sleep), never instants.

The rules are ``LocalBudget``'s: a slot counts from the answer's time; a request in flight
holds a slot; ``Outcome(sent=False)`` gives it back; what of an ``X-RateLimit-Remaining`` the
fleet cannot prove its own bounds other programs' requests until a window after that answer
(``budget/_others.py``); a 429 pauses the class for every worker. A full budget costs no
polling: the worker sleeps until the next slot frees (plus jitter), woken early by another
worker's release on the class's channel, or after ``poll`` seconds if a message was lost.

    budget = RedisBudget("redis://localhost:6379/0", "getbill:acme", RateLimit(reads=1000))
    async with budget, GetBillClient(token, rate_limit=budget) as client:
        ...

The keys are ``_scripts``'s. Redis's clock must run at the server's rate (NTP does); only a
step *forward* of its clock could free slots early. An owned client is closed as its loop
ends, and made again on the next loop or after ``fork()``.

Redis restarted, or failed over to an empty replica: the ledger is gone, and with it what the
server had counted. Until an answer is seen again, the scripts admit one request per class at a
time across the fleet (the cold start), so the first answer's headers rebuild the count; so
too after eviction or a failover to a lagging replica (see ``_lua``). The cold probe holds
its slot for ``cold_lease`` at most. A restart shorter than ``timeout`` is ridden out, and a
release that failed is sent again once Redis answers (see ``_calls``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable
from typing import Any

try:
    from redis.asyncio.cluster import RedisCluster

    from ._calls import PendingReleases
    from ._checks import check_options
    from ._conn import LoopHome, RedisClient, Wakeups, connect
    from ._scripts import ACQUIRING, READING, RELEASING, Scripts
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RedisBudget needs redis-py: pip install 'getbill-async[redis]'") from exc

from ..._constants import LOGGER_NAME
from ...errors import BudgetExhaustedError, BudgetUnavailableError, ConfigurationError
from ...support import AsyncClosing
from .. import LANES, BudgetStatus, ClassStatus, Kind, Lane, Outcome, RateLimit, Slot
from .._types import check_lane
from ._fallback import Fallback
from ._replies import COLD, class_status, release_args, sleep_for, text

__all__ = ["DEFAULT_KEY", "RedisBudget", "budget_from_url"]

log = logging.getLogger(LOGGER_NAME)
KINDS: tuple[Kind, ...] = ("read", "write")
DEFAULT_KEY = "getbill:default"


class _FellBack(Exception):
    """The budget fell back to its local share while this task waited for its turn."""


class RedisBudget(AsyncClosing):
    """A ``Budget`` kept in Redis, shared by every worker that uses the same ``key``.

    Args:
        url_or_client: a ``redis://``, ``rediss://`` or ``unix://`` URL (the budget owns that
            client and closes it in ``aclose``), or a ``redis.asyncio.Redis`` or ``RedisCluster``
            of yours (left open).
        key: one per OAuth client (``"getbill:<client id>"``); every worker of that client
            uses the same key and the same ``rate_limit`` (its ``reserve`` included).
        rate_limit: the limits (the API's own by default).
        cluster: the URL is a node of a Redis Cluster.
        fallback: Redis unreachable: a WARNING and a ``LocalBudget`` with ``1 /
            expected_workers`` of each limit, instead of ``BudgetUnavailableError``; a worker
            that rejoins brings the slots it spent locally into the shared ledger.
        expected_workers: the fleet's size, for the fallback's fair share (so the fleet stays
            under the limit however many fall back; the server's headers narrow it further).
        lease: how long a slot may stay in flight before the ledger assumes its worker died;
            above the longest ``acquire``-to-``release`` of one try (a token fetch plus the
            request, each bounded by the client's ``timeout``). Too short is unsafe; too long
            only keeps a dead worker's slot until ``lease + window``.
        poll: the longest single sleep (a lost wake-up message costs at most that).
        timeout: bounds every Redis call.
        fallback_retry: with ``fallback``, how often one request tries Redis again.
        cold_lease: how long the cold start's single probe may stay in flight before the
            fleet assumes it lost (Redis stalled, its worker died); at most ``lease``.
        accept_eviction: go on (with a WARNING) on a Redis whose ``maxmemory-policy`` is not
            ``noeviction``; each loss of keys then costs a cold start.

    Raises:
        ConfigurationError: A bad option (named with what it allows), a key that would share
            another key's ledger, or (at the first ``acquire``/``status``) an evicting Redis.
    """

    def __init__(
        self,
        url_or_client: str | RedisClient,
        key: str = DEFAULT_KEY,
        rate_limit: RateLimit | None = None,
        *,
        cluster: bool = False,
        fallback: bool = False,
        expected_workers: int = 4,
        lease: float = 120.0,
        poll: float = 1.0,
        timeout: float = 2.0,
        fallback_retry: float = 30.0,
        cold_lease: float = 5.0,
        accept_eviction: bool = False,
    ) -> None:
        timing = {"lease": lease, "poll": poll, "timeout": timeout, "cold_lease": cold_lease}
        check_options(key, expected_workers, timing)
        self.rate_limit = rate_limit or RateLimit()
        self.key = key
        self.lease = float(lease)
        self.cold_lease = min(float(cold_lease), self.lease)
        self.poll = float(poll)
        self.timeout = float(timeout)
        self.fallback = fallback
        self.expected_workers = expected_workers
        self.fallback_retry = float(fallback_retry)
        self.accept_eviction = accept_eviction
        self._url = url_or_client if isinstance(url_or_client, str) else None
        self._owns_client, self._cluster = self._url is not None, cluster
        self._redis: RedisClient = url_or_client  # type: ignore[assignment]
        self._fallback = Fallback(self.rate_limit, expected_workers, self.fallback_retry)
        parts = lambda: (self._redis, self._wakeups, self._pending, self._forgetting)  # noqa: E731
        self._home = LoopHome(self._connect, self._disconnect, parts, self._owns_client)
        self._connect()
        self._closed = False

    def _connect(self) -> None:
        """The parts bound to a loop and a process: made again on another (``LoopHome``)."""
        if self._url is not None:
            self._redis = connect(self._url, cluster=self._cluster, timeout=self.timeout)
        evicting = self.accept_eviction
        self._ledger = Scripts(self._redis, self.key, self.timeout, accept_eviction=evicting)
        self._locks = {(kind, lane): asyncio.Lock() for kind in KINDS for lane in LANES}
        self._wakeups = Wakeups(self._redis, [self._ledger.channel(k) for k in KINDS])
        self._pending = PendingReleases(self.lease)
        self._forgetting: set[asyncio.Task[Any]] = set()

    async def _disconnect(self) -> None:
        await self._pending.aclose(self.timeout)
        await self._wakeups.aclose(self.timeout)
        await asyncio.gather(*self._forgetting, return_exceptions=True)
        if self._owns_client:
            await self._redis.aclose()

    @property
    def is_cluster(self) -> bool:
        """Whether the budget's Redis is a Redis Cluster."""
        return isinstance(self._redis, RedisCluster)

    def _where(self) -> str:
        return self._ledger.where()

    def _limits(self, kind: Kind) -> tuple[int, float]:
        return self.rate_limit.limit(kind), float(self.rate_limit.window)

    # the Budget protocol -----------------------------------------------------------------

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot:
        """A slot for one request of ``kind`` in the shared ledger.

        While Redis is unreachable (with ``fallback=True``), from the local fallback's share.

        Args:
            kind: ``"read"`` or ``"write"``.
            lane: ``"interactive"`` or ``"bulk"`` (see ``RateLimit.reserve``).
            max_wait: Seconds to wait at most (``None``: the rate limit's ``max_wait``).

        Returns:
            The slot, to hand back with ``release``.

        Raises:
            BudgetExhaustedError: No slot within ``max_wait``.
            BudgetUnavailableError: Redis failed, and ``fallback`` is off.
            ConfigurationError: The budget is closed, the lane is unknown, or Redis evicts.
        """
        if self._closed:
            raise ConfigurationError("the RedisBudget is closed")
        check_lane(lane)
        self._home.enter()
        fallback = self._fallback
        if fallback.active():
            return await fallback.local.acquire(kind, lane=lane, max_wait=max_wait)
        probe = fallback.start_probe()
        slot: Slot | None = None
        try:
            if probe:
                await self._adopt()  # first, so no worker sees the ledger without them
            slot = await self._acquire_shared(kind, lane, max_wait, probe)
        except _FellBack:
            pass
        except BudgetUnavailableError as exc:
            if not self.fallback:
                raise
            fallback.begin(exc)
        finally:
            if probe:
                fallback.end_probe(slot is not None, self._where())
        if slot is None:
            return await fallback.local.acquire(kind, lane=lane, max_wait=max_wait)
        for late in KINDS if probe else ():  # spent locally while the probe waited
            await self._bring(late, fallback.take_spent(late, float(self.rate_limit.window)))
        return slot

    async def _bring(self, kind: Kind, left: list[float]) -> None:
        """Local slots (the seconds each still counts) into the shared ledger, retried."""
        times, doing = (float(self.rate_limit.window), self.lease), f"bringing local {kind} slots"
        if left:
            await self._pending.send(doing, lambda: self._ledger.adopt(kind, times, left, (0, 0)))

    async def _adopt(self) -> None:
        """Back from the fallback: bring this worker's local slots into the shared ledger, and
        hold the other workers' local shares back until they are back too."""
        window, workers = float(self.rate_limit.window), self.expected_workers
        hold = self.fallback_retry + self.timeout
        for kind in KINDS:
            left = self._fallback.take_spent(kind, window)
            held = (workers - 1) * (self.rate_limit.limit(kind) // workers)
            try:
                await self._ledger.adopt(kind, (window, self.lease), left, (held, hold))
            except BudgetUnavailableError:
                self._fallback.keep_spent(kind, left, window)
                raise

    async def _acquire_shared(
        self, kind: Kind, lane: Lane, max_wait: float | None, probe: bool
    ) -> Slot:
        limit, window = self._limits(kind)
        if max_wait is None:
            max_wait = self.rate_limit.max_wait
        if max_wait is not None and math.isinf(max_wait):
            max_wait = None
        start = time.monotonic()
        waiter = uuid.uuid4().hex
        async with self._locks[kind, lane]:
            marked = False  # an interactive waiter left a mark that holds bulk back
            try:
                while True:
                    if not probe and self._fallback.active():
                        raise _FellBack  # Redis failed for a task ahead of this one meanwhile
                    slot_id = lane[0] + uuid.uuid4().hex
                    # Taken before asking, so no release slips by between the answer and the sleep.
                    woken = self._wakeups.event(self._ledger.channel(kind))
                    args: list[str | float] = [
                        limit,
                        window,
                        self.lease,
                        slot_id,
                        int(self.rate_limit.pace),
                        self.rate_limit.reserve,
                        waiter,
                        self.poll,
                        self._ledger.channel(kind),
                        self.cold_lease,
                    ]
                    try:
                        doing = f"acquiring a {kind} slot"
                        answer = await self._ledger.run(ACQUIRING, kind, args, doing)
                    except (asyncio.CancelledError, BudgetUnavailableError):
                        self._forget(kind, slot_id)  # the script may have run: give it back
                        raise
                    if int(answer[0]) == 1:
                        # The handle: the slot's id and when Redis admitted it.
                        token = f"{slot_id} {text(answer[1])}"
                        return Slot(kind, time.monotonic() - start, token, lane=lane)
                    wait, why = float(text(answer[1])), int(answer[2])
                    marked = lane == "interactive" and why != COLD
                    waited = time.monotonic() - start
                    wait = sleep_for(kind, why, wait, waited, max_wait, window)
                    # Plus jitter, so the fleet does not wake as one; at most `poll`.
                    jitter = random.uniform(0.0, min(0.05, 0.005 + 0.01 * wait))
                    await self._wakeups.sleep(woken, min(self.poll, wait + jitter))
            except (asyncio.CancelledError, BudgetExhaustedError):
                if marked:  # gone without being served: let bulk requests go at once
                    self._background(self._redis.zrem(self._ledger.keys(kind)[5], waiter))
                raise

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        """Hand ``slot`` back with its request's outcome (see ``Budget.release``).

        Never raises for Redis: a release that cannot reach Redis is queued and sent again
        when Redis answers, so the request's own result stands.

        Args:
            slot: What ``acquire`` gave.
            outcome: The request's outcome (status, headers, whether it was sent).
        """
        self._home.enter()
        kind = slot.kind
        if not slot.token:
            await self._fallback.local.release(slot, self._fallback.fair_share(outcome))
            window = float(self.rate_limit.window)
            if not outcome.sent:
                return
            if not self._fallback.shared():
                self._fallback.spent(kind, window)
                return
            # Answered after this worker rejoined Redis: it counts there for a window.
            await self._bring(kind, [window])
            return
        slot_id, _, admitted = slot.token.partition(" ")
        limit, window = self._limits(kind)
        rules = (limit, window, self.lease)
        args = release_args(slot_id, admitted, outcome, rules, self._ledger.channel(kind))
        doing = f"releasing a {kind} slot"
        await self._pending.send(doing, lambda: self._ledger.run(RELEASING, kind, args, doing))

    def _forget(self, kind: Kind, token: str) -> None:
        self._background(self.release(Slot(kind, 0.0, token), Outcome(sent=False)))

    def _background(self, call: Awaitable[Any]) -> None:
        """Run a clean-up call without waiting for it (``aclose`` does); failures only log."""

        async def run() -> None:
            try:
                await asyncio.wait_for(call, self.timeout)
            except Exception as exc:  # a clean-up never fails the caller
                log.debug("budget clean-up in Redis failed: %s", exc)

        task = asyncio.ensure_future(run())
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def status(self) -> BudgetStatus:
        """The shared ledger's view of each class, read from Redis.

        Returns:
            Both classes' status; the fallback's while Redis is unreachable (with ``fallback``).

        Raises:
            BudgetUnavailableError: Redis failed, and ``fallback`` is off.
        """
        self._home.enter()
        if self._fallback.active():
            return await self._fallback.local.status()
        try:
            reads, writes = [await self._class_status(kind) for kind in KINDS]
        except BudgetUnavailableError:
            if not self.fallback:
                raise
            return await self._fallback.local.status()
        return BudgetStatus(reads, writes)

    async def _class_status(self, kind: Kind) -> ClassStatus:
        limit, window = self._limits(kind)
        args: list[str | float] = [limit, window, self.lease, self.rate_limit.reserve]
        doing = f"reading the {kind} budget"
        return class_status(await self._ledger.run(READING, kind, args, doing))

    # lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop listening, hand back abandoned slots, and close the client if it is ours."""
        if self._closed:
            return
        self._closed = True
        await self._home.leave()

    def __repr__(self) -> str:
        r, kind = self.rate_limit, ", cluster" if self.is_cluster else ""
        reserve = f", reserve={r.reserve:g}" if r.reserve else ""
        limits = f"reads={r.reads}, writes={r.writes}, window={r.window:g}{reserve}"
        return f"RedisBudget(key={self.key!r}{kind}, {limits})"


def budget_from_url(
    url: str,
    rate_limit: RateLimit,
    *,
    fallback: bool = False,
    key: str = DEFAULT_KEY,
    cluster: bool = False,
    **options: Any,
) -> RedisBudget:
    """The ``RedisBudget`` behind a ``--redis URL`` option (``redis://``, ``rediss://`` or
    ``unix://``; ``cluster=True`` for a Redis Cluster); pass ``key="getbill:<client id>"`` so
    each OAuth client has its own budget."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"--redis must be a redis://, rediss:// or unix:// URL, got {url.split('@')[-1]!r}"
        )
    if cluster and url.startswith("unix://"):
        raise ConfigurationError("--redis-cluster needs a redis:// or rediss:// URL of a node")
    return RedisBudget(url, key, rate_limit, fallback=fallback, cluster=cluster, **options)
