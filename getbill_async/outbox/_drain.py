"""The drainer: claims the oldest sendable entries, sends them in the bulk lane, settles them.

Invariants:

- an entry is marked in flight (durably, under this drainer's lease) before its write is
  sent, and its outcome is recorded before another entry of its key can be claimed;
- ``concurrency`` bounds the writes in flight; leases are renewed every third of ``lease``,
  for as long as any write of this drainer runs (the grace of a ``stop`` included); a
  renewal that fails is logged and tried again, it never ends the heartbeat;
- **never after the lease**: every call for an entry runs under a deadline, this drainer's
  own reckoning of its lease (the start of the claim or of the last renewal, plus ``lease``,
  less ``margin``); a write not sent by then is not sent (a frozen process that wakes up
  past its lease sends nothing), and the margin covers a write still on its way;
- what an answer means is ``_outcomes``' rule: refused for good is dead, a write that may have
  landed is looked up first (a create without ``call_id`` is held, never resent silently);
- **one lifecycle**: ``start()`` runs the loop; ``stop(grace)`` stops claiming, the loop exits
  by itself (a claim under way completes and its writes count), the writes in flight get
  ``grace`` seconds, the rest are cancelled and each records what became of it; only then
  does the heartbeat stop and ``stop`` return. ``start()`` after ``stop()`` drains again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BudgetExhaustedError, GetBillError
from ..support import RepeatedFailure, wait_event
from ..transport import SENT, SentRecord
from ._outcomes import applied, backoff, cut_off, judge
from ._store import Store
from ._types import Claimed, EntryEvent, Outcome

__all__ = ["Counters", "Drainer"]

log = logging.getLogger("getbill_async.outbox")
PRUNE_EVERY = 60.0


@dataclass
class Counters:
    """What this drainer did since it started (the benchmark and tests read it)."""

    sent: int = 0
    looked_up: int = 0
    found: int = 0
    dead: int = 0
    retried: int = 0
    by_op: dict[str, int] = field(default_factory=dict)


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
        margin: float,
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
        self.lease, self.margin = lease, margin
        self._retention = retention
        self._poll = poll
        self._tasks: dict[int, asyncio.Task[None]] = {}  # one per entry held: send, record
        self._sending: dict[int, asyncio.Future[Outcome]] = {}  # the part a stop may cancel
        self._held_from: dict[int, float] = {}  # monotonic start of each entry's lease
        self._wake = asyncio.Event()
        self.progress = asyncio.Event()  # set whenever an entry is settled
        self.counters = Counters()
        self._stopping = False
        self._cut_at = float("inf")  # monotonic: writes still in flight then are cancelled
        self._run: asyncio.Task[None] | None = None
        self._slot_in: float | None = None  # the budget is full: its next slot, in seconds
        self.metrics: Any = None  # an OutboxMetrics with the otel extra (see _metrics)
        # A store that is down fails every poll: logged once, then once a minute.
        self._claims = RepeatedFailure(log, "outbox drainer")
        self._prunes = RepeatedFailure(log, "outbox pruning")
        self._renewals = RepeatedFailure(log, "outbox lease renewal")

    @property
    def client_timeout(self) -> float:
        """The seconds one try of the client may take."""
        return float(self._client.timeout)

    @property
    def in_flight(self) -> int:
        """Writes this drainer is sending now."""
        return len(self._tasks)

    def start(self) -> None:
        """Start draining (again, after a ``stop``)."""
        if self._run is not None and not self._run.done():
            return
        self._stopping, self._cut_at = False, float("inf")
        self._wake.clear()
        self._run = asyncio.create_task(self._loop())

    async def stop(self, grace: float) -> None:
        """Stop claiming, give the writes in flight ``grace`` seconds, cancel the rest (each
        records its outcome: see ``_outcomes.cut_off``); return once nothing of the drainer
        runs. Safe to call twice, and while another ``stop`` waits."""
        self._stopping = True
        self._cut_at = min(self._cut_at, time.monotonic() + max(0.0, grace))
        self._wake.set()
        run = self._run
        if run is not None:
            await asyncio.wait({run})
            if not run.cancelled() and run.exception() is not None:
                log.error("outbox drainer ended with an error", exc_info=run.exception())

    def abort(self) -> None:
        """Cancel the writes in flight now (what each becomes: ``_outcomes.cut_off``)."""
        self._stopping, self._cut_at = True, time.monotonic()
        self._wake.set()
        for sending in self._sending.values():
            sending.cancel()

    def wake(self) -> None:
        """Something was enqueued here: look for it now rather than at the next poll."""
        self._wake.set()

    async def _loop(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._claim_until_stopped()
            await self._wind_down()
        finally:
            if self._tasks:  # cancelled from outside: settle what runs, then end
                for sending in self._sending.values():
                    sending.cancel()
                await asyncio.wait(list(self._tasks.values()))
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _claim_until_stopped(self) -> None:
        next_prune = 0.0
        while not self._stopping:
            try:
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    await self._prune()
                if self.metrics is not None and time.monotonic() - self.metrics.sampled_at >= 1:
                    await self._sample()
                claimed = await self._claim()
            except Exception as exc:  # the drain goes on; what failed is logged
                self._claims.failed(exc)
                claimed = []
            else:
                self._claims.ok()
            if not self._stopping and (not claimed or len(self._tasks) >= self._concurrency):
                await self._idle()

    async def _prune(self) -> None:
        try:
            await self._store.prune(time.time() - self._retention)
        except Exception as exc:
            self._prunes.failed(exc)
        else:
            self._prunes.ok()

    async def _sample(self) -> None:
        self.metrics.sampled_at = time.monotonic()  # at most once a second, even failing
        try:
            self.metrics.sample(await self._store.counts())
        except Exception as exc:
            log.debug("outbox counts for metrics not read: %s", exc)

    async def _wind_down(self) -> None:
        """Wait for the writes in flight until the grace ends, then cancel the rest and wait
        for each to record what became of it."""
        while self._tasks:
            left = self._cut_at - time.monotonic()
            tasks = list(self._tasks.values())
            if left <= 0:
                for sending in self._sending.values():
                    sending.cancel()
                await asyncio.wait(tasks)
            else:
                await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)

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
        started = time.monotonic()
        claimed = await self._store.claim(self._owner, free, self.lease, time.time())
        for entry in claimed:
            if entry.seq in self._tasks:  # still ours, still running: never twice
                log.warning("outbox entry %s claimed again while held; left alone", entry.seq)
                continue
            self._held_from[entry.seq] = started
            self._tell(entry, "in_flight")
            task = asyncio.create_task(self._settle(entry))
            self._tasks[entry.seq] = task
            task.add_done_callback(functools.partial(self._done, entry.seq))
        return claimed

    def _done(self, seq: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(seq) is task:
            del self._tasks[seq]
            self._held_from.pop(seq, None)
        self._wake.set()
        self.progress.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            seqs = list(self._tasks)
            if not seqs:
                continue
            started = time.monotonic()
            try:
                renewed = await self._store.renew(self._owner, seqs, time.time() + self.lease)
            except Exception as exc:  # any failure: the next beat tries again
                self._renewals.failed(exc)
                continue
            self._renewals.ok()
            # Only what the store renewed: an entry taken over while this process stood
            # still (SIGSTOP, a long pause) keeps its lapsed deadline, so it is never sent.
            for seq in renewed:
                if seq in self._held_from:
                    self._held_from[seq] = max(self._held_from[seq], started)

    def _deadline(self, seq: int) -> float:
        """When this drainer's lease on ``seq`` may have lapsed, by its own clock, less the
        margin: no call for the entry runs past it."""
        return self._held_from[seq] + self.lease - self.margin

    async def _settle(self, entry: Claimed) -> None:
        if time.monotonic() >= self._cut_at:  # cut off before it began: nothing was sent
            await self._record(entry, cut_off(entry, False))
            return
        record = SentRecord()
        SENT.set(record)  # this task's context: the client notes there whether a write left
        sending = asyncio.ensure_future(self._attempt(entry, record))
        self._sending[entry.seq] = sending
        try:
            outcome = await asyncio.shield(sending)
        except asyncio.CancelledError:
            from_outside = not sending.done()
            sending.cancel()
            await asyncio.wait({sending})
            outcome = _result(sending) or cut_off(entry, record.sent)
            await self._record(entry, outcome)
            if from_outside:
                raise
            return
        finally:
            self._sending.pop(entry.seq, None)
        await self._record(entry, outcome)

    async def _record(self, entry: Claimed, outcome: Outcome) -> None:
        if outcome.state == "dead":
            self.counters.dead += 1
            log.info("outbox entry %s (%s) is dead: %s", entry.seq, entry.key, outcome.error)
        elif outcome.state == "pending" and outcome.attempted:
            self.counters.retried += 1
        for delay in (0.05, 0.2, 1.0, None):
            try:
                await self._store.finish(entry.seq, self._owner, outcome, now=time.time())
                self._tell(entry, outcome.state, outcome)
                return
            except Exception as exc:
                if delay is None:
                    log.error("outbox entry %s: outcome not recorded: %s", entry.seq, exc)
                    return  # the lease ends; the entry is looked up before it is resent
                await asyncio.sleep(delay)

    def _tell(self, entry: Claimed, state: str, outcome: Outcome | None = None) -> None:
        if self._on_event is None:
            return
        done = outcome or Outcome("pending")
        event = EntryEvent(
            entry.seq, entry.tag, entry.key, entry.op, entry.debt_id, state,
            done.followup_id, done.error, done.found, done.check,
        )  # fmt: skip
        try:
            self._on_event(event)
        except Exception:  # a listener's fault must not stop the drain
            log.exception("outbox on_event listener failed")

    async def _attempt(self, entry: Claimed, record: SentRecord) -> Outcome:
        deadline = self._deadline(entry.seq)
        client = self._client.until(deadline)
        try:
            if entry.op == "create":
                return await self._create(client, entry)
            return await self._update(client, entry)
        except GetBillError as exc:
            # The deadline passed, or a budget wait would have passed it: nothing was tried.
            lease_out = time.monotonic() >= deadline or isinstance(
                exc.__cause__, BudgetExhaustedError
            )
            limit = self._give_up_after
            return judge(entry, exc, sent=record.sent, lease_out=lease_out, give_up_after=limit)
        except Exception:  # not an API answer: a bug, or a fault of this machine
            log.exception("outbox entry %s: unexpected failure; it will be looked up", entry.seq)
            if entry.op == "create" and entry.key is None and record.sent:
                return cut_off(entry, True)
            next_try = time.time() + backoff(entry.attempts, None)
            return Outcome("pending", next_try=next_try, check=record.sent or entry.check)

    async def _create(self, client: Any, entry: Claimed) -> Outcome:
        followups = client.followups
        if entry.check and entry.key is not None:
            assert entry.debt_id is not None
            self.counters.looked_up += 1
            found = await followups.find_by_call_id(entry.debt_id, entry.key)
            if found is not None:
                self.counters.found += 1
                return Outcome("done", followup_id=found.id, found=True)
        created = await followups.create(**entry.fields)
        self._count("create")
        return Outcome("done", followup_id=created.id)

    async def _update(self, client: Any, entry: Claimed) -> Outcome:
        followups = client.followups
        if entry.target is None:
            return Outcome("dead", error={"message": "no followup id for this update"})
        if entry.check:
            self.counters.looked_up += 1
            current = await followups.get(entry.target)
            if applied(current, entry.fields):
                self.counters.found += 1
                return Outcome("done", followup_id=entry.target)
        await followups.update(entry.target, **entry.fields)
        self._count("update")
        return Outcome("done", followup_id=entry.target)

    def _count(self, op: str) -> None:
        if self.metrics is not None:
            self.metrics.wrote(op)
        self.counters.sent += 1
        self.counters.by_op[op] = self.counters.by_op.get(op, 0) + 1


def _result(sending: asyncio.Future[Outcome]) -> Outcome | None:
    """The outcome of an attempt that finished before its cancel landed, if it did."""
    if sending.cancelled() or sending.exception() is not None:
        return None
    return sending.result()
