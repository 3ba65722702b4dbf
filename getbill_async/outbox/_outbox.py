"""``Outbox``: durable, merging, budget-aware followup writes for a service.

    async with GetBillClient() as client, Outbox(client, "outbox.db") as outbox:
        await outbox.create(debt_id=debt, type="call", status="in_progress", call_id="dlr-81")
        await outbox.update("dlr-81", status="deal_found", duration_ms=182_000)
        await outbox.join()

Invariants: ``create()``/``update()`` check their fields with the SDK's own rules before
anything is stored (bad input costs nothing and is never enqueued), and return only once the
entry is committed; no entry is ever dropped (a full outbox waits or raises); per key, writes
reach the server in the order they were enqueued. See ``_store`` for the merge rules and
``_drain`` for how entries are sent and settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ..errors import ValidationError
from ..models import FollowupCreate, FollowupUpdate
from ..support import available, build_create, build_update, check_id
from ._drain import Drainer, wait_event
from ._eta import eta_seconds
from ._sqlite_store import SQLiteStore
from ._store import Enqueued, Store, StoreFull
from ._types import DeadEntry, EntryEvent, OutboxFullError, OutboxStatus, OutboxStoreError
from ._verify_api import Selector, Verifying

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["Outbox", "store_for"]

DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_PENDING = 100_000
DEFAULT_RETENTION = 7 * 86_400.0
_WHEN_FULL = ("wait", "raise")
_encode = msgspec.json.Encoder().encode


def _bad(field: str, reason: str, allowed: tuple[str, ...] | None = None) -> ValidationError:
    text = f"{field}: {reason}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    return ValidationError(text, field=field, allowed=allowed, details={field: [reason]})


def _positive(field: str, value: object, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "an integer" if integer else "a number"
        raise _bad(field, f"must be {kind} > 0, got {value!r}")


def store_for(store: str | os.PathLike[str] | Store, name: str | None) -> Store:
    """The store behind ``store``: a SQLite file, a Redis outbox, or a store given as is."""
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        if text.startswith(("redis://", "rediss://", "unix://")):
            from ._redis_store import RedisStore  # needs the redis extra

            return RedisStore(text, name=name or "default")
        return SQLiteStore(text)
    return store


class Outbox(Verifying):
    """The durable path between a service and the write budget.

    Args:
        client: the ``GetBillClient`` that sends the writes (its bulk lane is used).
        store: a SQLite file path, or a ``redis://`` URL (with ``name``).
        drain: run a drainer in this process (``False``: only enqueue).
        concurrency: writes in flight at once, at most.
        max_pending: entries waiting or in flight, at most; then ``when_full`` applies.
        when_full: ``"wait"`` until there is room, or ``"raise"`` ``OutboxFullError``.
        lease: seconds a drainer holds an entry without renewing it; after that, another
            drainer may take it (and looks it up before sending it again).
        retention: seconds done entries are kept before they are pruned.
        name: the outbox's name in a Redis store (several outboxes may share one Redis).
        poll: seconds between looks for entries enqueued by other processes.
        on_event: called (on the event loop, so briefly) with an ``EntryEvent`` whenever
            this process's drainer claims an entry or records its outcome.
        give_up_after: attempts after which a write known not to have been sent (a 429,
            a token fault, a write not sent) is dead instead of retried (None: never; a
            write whose outcome is unknown is always looked up, never given up, and a
            wait for the write budget never counts).

    Raises:
        ValidationError: an option out of range (the error names it).
        OutboxStoreError: (on open) the file is not an outbox; it is left untouched.
    """

    def __init__(
        self,
        client: GetBillClient,
        store: str | os.PathLike[str] | Store,
        *,
        drain: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_pending: int = DEFAULT_MAX_PENDING,
        when_full: Literal["wait", "raise"] = "wait",
        lease: float = 30.0,
        retention: float = DEFAULT_RETENTION,
        name: str | None = None,
        poll: float = 0.5,
        on_event: Callable[[EntryEvent], None] | None = None,
        give_up_after: int | None = None,
    ) -> None:
        _positive("concurrency", concurrency, integer=True)
        _positive("max_pending", max_pending, integer=True)
        for field, value in (("lease", lease), ("retention", retention), ("poll", poll)):
            _positive(field, value)
        if when_full not in _WHEN_FULL:
            raise _bad("when_full", f"invalid value {when_full!r}", _WHEN_FULL)
        self._client = client
        self._store = store_for(store, name)
        self._drain = drain
        self._max_pending = max_pending
        self._when_full = when_full
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._drainer = Drainer(
            client.with_options(priority="bulk"),
            self._store,
            owner=self.owner,
            concurrency=concurrency,
            lease=lease,
            retention=retention,
            poll=min(poll, lease / 4),
            on_event=on_event,
            give_up_after=give_up_after,
        )
        self._task: asyncio.Task[None] | None = None
        self._open = False
        if available("opentelemetry"):
            from ._metrics import instruments_for

            label = name or os.path.basename(getattr(self._store, "path", "") or "outbox")
            self._drainer.metrics = instruments_for(label)

    def __repr__(self) -> str:
        where = getattr(self._store, "path", None) or getattr(self._store, "where", "store")
        return f"Outbox({where!r}, drain={self._drain})"

    @property
    def drainer(self) -> Drainer:
        """This process's drainer (its ``counters`` say what it sent and looked up)."""
        return self._drainer

    async def open(self) -> None:
        """Open the store and, with ``drain=True``, start draining. ``async with`` calls it.

        Raises:
            OutboxStoreError: the file is not an outbox database (it is left untouched).
        """
        await self._store.open()
        self._open = True
        if self._drain:
            self._task = asyncio.create_task(self._drainer.run())

    async def close(self, grace: float = 10.0) -> None:
        """Stop draining and close the store.

        Args:
            grace: seconds the writes in flight get to finish.
        """
        if not self._open:
            return
        self._open = False
        task, self._task = self._task, None
        if task is not None:
            await self._drainer.stop(grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._store.close()

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def create(self, item: FollowupCreate | None = None, /, **fields: Any) -> None:
        """Enqueue ``POST /followups``; return once the entry is durable.

        ``create(FollowupCreate(...))`` or ``create(debt_id=..., type=..., call_id=...)``.
        A create for a ``call_id`` already in the outbox does nothing (a producer that
        restarts may replay its last calls). Without ``call_id`` the create is accepted but
        can never be looked up: after a crash mid-send it is held, not resent.

        Args:
            item: a ``FollowupCreate``, or None to build one from ``fields``.
            **fields: the followup's fields (``debt_id`` and ``type`` required).

        Raises:
            ValidationError: a bad field (named, with the allowed values); nothing enqueued.
            OutboxFullError: the outbox is full and ``when_full="raise"``.
        """
        body = build_create(item, fields)
        await self._enqueue(
            self._store.enqueue_create, body.call_id, body.debt_id, _encode(body).decode()
        )

    async def create_tagged(self, tag: str, item: FollowupCreate, *, check: bool = False) -> bool:
        """Enqueue a create named by ``tag`` (e.g. the line of an input file); return once
        durable. A tag already in the outbox makes it a no-op, so a caller that feeds the
        same file again enqueues each row once. Tagged creates are unique by tag, not by
        ``call_id`` (one ``call_id`` may be used on two debts), and are not bounded by
        ``max_pending`` (their source is). SQLite stores only.

        Args:
            tag: the caller's name for the entry, unique in this outbox.
            item: the create.
            check: look it up by ``call_id`` before sending (it may exist already).

        Returns:
            True if it was added, False if the tag was already there.

        Raises:
            ValidationError: a bad field; nothing enqueued.
            OutboxStoreError: the store is not a SQLite file.
        """
        store = self._sqlite()
        body = build_create(item, {})
        if not self._open:
            raise RuntimeError("the outbox is not open: use `async with Outbox(...)` or open()")
        text = _encode(body).decode()
        added = await store.enqueue_tagged(
            tag, body.call_id, body.debt_id, text, time.time(), check=check
        )
        self._drainer.wake()
        return added == "added"

    async def tagged(self) -> list[EntryEvent]:
        """Every tagged entry with its state and outcome, in the order enqueued (SQLite only).

        Returns:
            One ``EntryEvent`` per tagged entry (``found`` is not kept: always False).
        """
        return await self._sqlite().tagged()

    async def reclaim(self) -> None:
        """Take back now the entries in flight whose drainer is gone (its lease ended, or its
        process on this machine no longer runs), as the next claim would: a create with a
        ``call_id`` is looked up before it is sent again, one without is held (SQLite only).
        """
        await self._sqlite().reclaim(time.time())

    def _sqlite(self) -> SQLiteStore:
        if not isinstance(self._store, SQLiteStore):
            raise OutboxStoreError("tagged entries need a SQLite outbox file")
        return self._store

    async def update(self, key: str, item: FollowupUpdate | None = None, /, **fields: Any) -> None:
        """Enqueue ``PUT /followups/{id}``; return once the entry is durable.

        ``key`` is the ``call_id`` the followup was created with through this outbox, or a
        followup id. A pending create of the key absorbs the update; pending updates merge
        (later fields win); an update of a create in flight waits for its outcome.

        Args:
            key: a ``call_id`` created through this outbox, or a followup id.
            item: a ``FollowupUpdate``, or None to build one from ``fields``.
            **fields: the fields to change.

        Raises:
            ValidationError: a bad key or field (named); nothing enqueued.
            OutboxFullError: the outbox is full and ``when_full="raise"``.
        """
        check_id("key", key)
        data = msgspec.to_builtins(build_update(item, fields))
        await self._enqueue(self._store.enqueue_update, key, data)

    async def _enqueue(self, put: Callable[..., Awaitable[Enqueued]], *args: Any) -> None:
        """``put(*args, now, max_pending)`` until the store has room (or raise when full)."""
        if not self._open:
            raise RuntimeError("the outbox is not open: use `async with Outbox(...)` or open()")
        while True:
            try:
                await put(*args, time.time(), self._max_pending)
            except StoreFull:
                if self._when_full == "raise":
                    raise OutboxFullError(self._max_pending) from None
                await self._wait_for_progress(0.25)
                continue
            self._drainer.wake()
            return

    async def _wait_for_progress(self, seconds: float) -> None:
        progress = self._drainer.progress
        progress.clear()
        await wait_event(progress, seconds)

    async def status(self) -> OutboxStatus:
        """Counts by state, writes saved by merging, the oldest entry's age and an ETA.

        Returns:
            An ``OutboxStatus``; ``eta`` comes from the client's write budget.
        """
        counts = await self._store.counts()
        backlog = counts.pending + counts.in_flight
        try:
            eta = eta_seconds(backlog, (await self._client.budget_status()).writes)
        except Exception:  # a status must not fail because the budget store did
            eta = None
        oldest = counts.oldest_enqueued
        return OutboxStatus(
            pending=counts.pending,
            in_flight=counts.in_flight,
            done=counts.done,
            dead=counts.dead,
            held=counts.held,
            merged=counts.merged,
            oldest_age=None if oldest is None else max(0.0, time.time() - oldest),
            eta=eta,
            unkeyed=counts.unkeyed,
        )

    async def join(self, timeout: float | None = None) -> None:
        """Wait until nothing is pending or in flight (dead and held entries do not count).

        Args:
            timeout: seconds to wait at most (None: as long as it takes).

        Raises:
            TimeoutError: the backlog was not drained within ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            counts = await self._store.counts()
            if counts.pending + counts.in_flight == 0:
                return
            if deadline is not None and time.monotonic() >= deadline:
                left = counts.pending + counts.in_flight
                raise TimeoutError(f"outbox not drained within {timeout}s: {left} entries left")
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            await self._wait_for_progress(wait)

    async def dead(self) -> list[DeadEntry]:
        """The dead entries (refused for good) and held ones (for a person), oldest first.

        Returns:
            ``DeadEntry`` items with the API's status, message and field details.
        """
        return await self._store.dead_entries()

    async def requeue(self, *selectors: Selector, held: bool = False) -> int:
        """Send dead entries again, after a fix: all of them, or those named by key
        (``call_id`` or followup id) or by entry id (``DeadEntry.id``). Given a verify's
        ``report.missing`` (``DeliveryFinding`` items), send those followups again instead:
        each is looked up by its ``call_id`` first, so it is created once.

        Args:
            *selectors: keys (str) and entry ids (int); none: every dead entry.
            held: also resend held entries (a person checked they never reached the server).

        Returns:
            How many entries went back to pending.
        """
        if any(not isinstance(s, (str, int)) for s in selectors):
            return await self._resend(selectors)
        keys = [s for s in selectors if isinstance(s, str)]
        ids = [s for s in selectors if isinstance(s, int) and not isinstance(s, bool)]
        if len(keys) + len(ids) != len(selectors):
            raise _bad("selectors", "must be call_ids (str) or entry ids (int)")
        count = await self._store.requeue(keys, ids, held)
        self._drainer.wake()
        return count
