"""The drainer: claims the oldest sendable entries, sends them in the bulk lane, settles them.

Invariants:

- an entry is marked in flight (durably, under this drainer's lease) before its write is
  sent, and its outcome is recorded before another entry of its key can be claimed;
- ``concurrency`` bounds the writes in flight; leases are renewed every third of ``lease``;
- a write refused for good (400/422, 403, 404) is dead with the API's message; one that can
  be retried (429, 401, a budget wait, a write not sent) goes back to pending with backoff;
  one whose outcome is unknown goes back marked to be looked up first: a create by its
  ``call_id`` (through the client's own ``find_by_call_id``), an update by reading the
  followup (a read instead of a second write). A create without ``call_id`` is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

from ..errors import (
    AmbiguousWriteError,
    APIConnectionError,
    APIError,
    BudgetExhaustedError,
    DecodeError,
    GetBillError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from ..models import Followup
from ._store import Store
from ._types import Claimed, EntryEvent, OutboxStoreError

__all__ = ["Drainer", "wait_event"]

log = logging.getLogger("getbill_async.outbox")
_DATETIMES = ("call_date", "scheduled_at")
_FOR_GOOD = (ValidationError, PermissionDeniedError, NotFoundError)
_UNKNOWN_OUTCOME = (ServerError, APIConnectionError, DecodeError)
PRUNE_EVERY = 60.0


@dataclass
class _Outcome:
    state: Literal["done", "dead", "held", "pending"]
    followup_id: str | None = None
    error: dict[str, Any] | None = None
    next_try: float = 0.0
    check: bool = False
    found: bool = False


@dataclass
class Counters:
    """What this drainer did since it started (the benchmark and tests read it)."""

    sent: int = 0
    looked_up: int = 0
    found: int = 0
    dead: int = 0
    retried: int = 0
    by_op: dict[str, int] = field(default_factory=dict)


def _error_of(exc: BaseException) -> dict[str, Any]:
    kind = type(exc).__name__
    if isinstance(exc, APIError):
        return {"status": exc.status, "message": exc.message, "details": exc.details, "kind": kind}
    return {"status": None, "message": str(exc), "details": {}, "kind": kind}


def _applied(current: Followup, fields: dict[str, Any]) -> bool:
    """Whether the followup already carries every field of an update."""
    for name, value in fields.items():
        have = getattr(current, name, msgspec.UNSET)
        if name in _DATETIMES and isinstance(value, str):
            value = msgspec.convert(value, datetime)
        if have != value:
            return False
    return True


def _backoff(attempts: int, exc: BaseException) -> float:
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        return float(exc.retry_after)
    if isinstance(exc, BudgetExhaustedError):
        return float(exc.retry_in)
    return min(60.0, 0.25 * 2.0 ** min(attempts, 8)) * (0.5 + random.random() / 2)


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever comes first.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that lands as the
    event is set, and a caller looping on it (``Outbox.join``) would then never end.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()


class Drainer:
    """Drains one store through one client (a bulk-lane view); see the module docstring."""

    def __init__(
        self,
        client: Any,
        store: Store,
        *,
        owner: str,
        concurrency: int,
        lease: float,
        retention: float,
        poll: float,
        on_event: Callable[[EntryEvent], None] | None = None,
        give_up_after: int | None = None,
    ) -> None:
        self._client = client
        self._on_event = on_event
        # Attempts after which a write known not to have been sent (429, 401, not sent)
        # is dead instead of pending again: a run over a file must end (None: never).
        self._give_up_after = give_up_after
        self._store = store
        self._owner = owner
        self._concurrency = concurrency
        self._lease = lease
        self._retention = retention
        self._poll = poll
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.progress = asyncio.Event()  # set whenever an entry is settled
        self.counters = Counters()
        self._stopping = False
        self._slot_in: float | None = None  # the budget is full: its next slot, in seconds
        self.metrics: Any = None  # an OutboxMetrics with the otel extra (see _metrics)

    @property
    def in_flight(self) -> int:
        """Writes this drainer is sending now."""
        return len(self._tasks)

    def abort(self) -> None:
        """Cancel the writes in flight now (each goes back to pending, to be looked up)."""
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()

    def wake(self) -> None:
        """Something was enqueued here: look for it now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until ``stop()``; safe to cancel."""
        heartbeat = asyncio.create_task(self._heartbeat())
        next_prune = 0.0
        try:
            while not self._stopping:
                try:
                    if time.monotonic() >= next_prune:
                        await self._prune()
                        next_prune = time.monotonic() + PRUNE_EVERY
                    if self.metrics is not None and time.monotonic() - self.metrics.sampled_at >= 1:
                        await self._sample()
                    claimed = await self._claim()
                except Exception:  # the drain goes on; what failed is logged
                    log.exception("outbox drainer: unexpected failure; going on")
                    claimed = []
                if not claimed or len(self._tasks) >= self._concurrency:
                    await self._idle()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def stop(self, grace: float) -> None:
        """Stop claiming; let writes in flight finish for ``grace`` seconds, then cancel
        them (they go back to pending, to be looked up before they are sent again)."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def _idle(self) -> None:
        wait = self._poll if self._slot_in is None else min(self._poll, self._slot_in)
        await wait_event(self._wake, max(0.02, wait))
        self._wake.clear()

    async def _budget_room(self) -> int | None:
        """Writes the budget would admit now, less those this drainer already waits for;
        None when the budget cannot tell. An entry claimed while no slot is free would
        wait in flight, where nothing can merge into it: better to leave it pending."""
        try:
            writes = (await self._client.budget_status()).writes
        except Exception:  # a budget that cannot answer must not stop the drain
            return None
        waiting = max(0, len(self._tasks) - writes.in_flight)
        room = int(writes.remaining - writes.reserved - waiting)
        if writes.blocked_for > 0:  # a 429 paused the class
            room = 0
        self._slot_in = max(writes.next_slot_in, writes.blocked_for) if room <= 0 else None
        return room

    async def _claim(self) -> list[Claimed]:
        free = self._concurrency - len(self._tasks)
        if free <= 0:
            return []
        room = await self._budget_room()
        if room is not None:
            free = min(free, room)
            if free <= 0:
                return []
        try:
            claimed = await self._store.claim(self._owner, free, self._lease, time.time())
        except OutboxStoreError as exc:
            log.warning("outbox claim failed, retrying: %s", exc)
            return []
        for entry in claimed:
            self._tell(entry, "in_flight")
            task = asyncio.create_task(self._settle(entry))
            self._tasks[entry.seq] = task
            task.add_done_callback(functools.partial(self._done, entry.seq))
        return claimed

    def _done(self, seq: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(seq, None)
        self._wake.set()
        self.progress.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if self._tasks:
                try:
                    until = time.time() + self._lease
                    await self._store.renew(self._owner, list(self._tasks), until)
                except OutboxStoreError as exc:
                    log.warning("outbox lease renewal failed: %s", exc)

    async def _sample(self) -> None:
        try:
            self.metrics.sample(await self._store.counts())
        except OutboxStoreError as exc:
            log.debug("outbox counts for metrics not read: %s", exc)
            self.metrics.sampled_at = time.monotonic()

    async def _prune(self) -> None:
        try:
            await self._store.prune(time.time() - self._retention)
        except OutboxStoreError as exc:
            log.warning("outbox pruning failed: %s", exc)

    async def _settle(self, entry: Claimed) -> None:
        try:
            outcome = await self._attempt(entry)
        except asyncio.CancelledError:
            await self._record(entry, _Outcome("pending", check=True))
            raise
        except Exception:  # not an API answer: a bug, or a fault of this machine
            log.exception("outbox entry %s: unexpected failure; it will be looked up", entry.seq)
            next_try = time.time() + _backoff(entry.attempts, RuntimeError())
            outcome = _Outcome("pending", next_try=next_try, check=True)
        await self._record(entry, outcome)

    async def _record(self, entry: Claimed, outcome: _Outcome) -> None:
        for delay in (0.05, 0.2, 1.0, 5.0, None):
            try:
                await self._store.finish(
                    entry.seq,
                    self._owner,
                    outcome.state,
                    now=time.time(),
                    followup_id=outcome.followup_id,
                    error=outcome.error,
                    next_try=outcome.next_try,
                    check=outcome.check,
                )
                self._tell(entry, outcome.state, outcome)
                return
            except OutboxStoreError as exc:
                if delay is None:
                    log.error("outbox entry %s: outcome not recorded: %s", entry.seq, exc)
                    return  # the lease ends; the entry is looked up before it is resent
                await asyncio.sleep(delay)

    def _tell(self, entry: Claimed, state: str, outcome: _Outcome | None = None) -> None:
        if self._on_event is None:
            return
        done = outcome or _Outcome("pending")
        event = EntryEvent(
            entry.seq, entry.tag, entry.key, entry.op, entry.debt_id, state,
            done.followup_id, done.error, done.found, done.check,
        )  # fmt: skip
        try:
            self._on_event(event)
        except Exception:  # a listener's fault must not stop the drain
            log.exception("outbox on_event listener failed")

    async def _attempt(self, entry: Claimed) -> _Outcome:
        keyless = entry.op == "create" and entry.key is None
        try:
            if entry.op == "create":
                return await self._create(entry)
            return await self._update(entry)
        except AmbiguousWriteError as exc:
            return self._unknown(entry, exc, keyless)
        except _FOR_GOOD as exc:
            self.counters.dead += 1
            log.info("outbox entry %s (%s) is dead: %s", entry.seq, entry.key, exc)
            return _Outcome("dead", error=_error_of(exc))
        except _UNKNOWN_OUTCOME as exc:
            return self._unknown(entry, exc, keyless)
        except GetBillError as exc:
            if self._gives_up(entry, exc):
                self.counters.dead += 1
                return _Outcome("dead", error=_error_of(exc))
            self.counters.retried += 1
            log.debug("outbox entry %s: %s; retrying later", entry.seq, exc)
            next_try = time.time() + _backoff(entry.attempts, exc)
            return _Outcome("pending", next_try=next_try, check=entry.check)

    def _gives_up(self, entry: Claimed, exc: GetBillError) -> bool:
        """Whether a write known not to have been sent has had its attempts. A full budget
        is not a fault (it is the normal state of a long drain), and an entry to be looked
        up first is never given up: it may exist."""
        limit = self._give_up_after
        if limit is None or entry.check or isinstance(exc, BudgetExhaustedError):
            return False
        return entry.attempts >= limit

    def _unknown(self, entry: Claimed, exc: BaseException, keyless: bool) -> _Outcome:
        if keyless:
            log.warning("outbox entry %s: create without call_id, outcome unknown: held", entry.seq)
            return _Outcome("held", error=_error_of(exc))
        self.counters.retried += 1
        next_try = time.time() + _backoff(entry.attempts, exc)
        return _Outcome("pending", next_try=next_try, check=True)

    async def _create(self, entry: Claimed) -> _Outcome:
        followups = self._client.followups
        if entry.check and entry.key is not None:
            assert entry.debt_id is not None
            self.counters.looked_up += 1
            found = await followups.find_by_call_id(entry.debt_id, entry.key)
            if found is not None:
                self.counters.found += 1
                return _Outcome("done", followup_id=found.id, found=True)
        created = await followups.create(**entry.fields)
        self._count("create")
        return _Outcome("done", followup_id=created.id)

    async def _update(self, entry: Claimed) -> _Outcome:
        followups = self._client.followups
        if entry.target is None:
            return _Outcome("dead", error={"message": "no followup id for this update"})
        if entry.check:
            self.counters.looked_up += 1
            current = await followups.get(entry.target)
            if _applied(current, entry.fields):
                self.counters.found += 1
                return _Outcome("done", followup_id=entry.target)
        await followups.update(entry.target, **entry.fields)
        self._count("update")
        return _Outcome("done", followup_id=entry.target)

    def _count(self, op: str) -> None:
        if self.metrics is not None:
            self.metrics.wrote(op)
        self.counters.sent += 1
        self.counters.by_op[op] = self.counters.by_op.get(op, 0) + 1
