"""Many creates at once: bounded concurrency, bounded memory, every create accounted for.

    async with client.followups.create_many(calls, concurrency=16) as batch:
        async for result in batch:
            if result.error: print(result.index, result.error)

The input may be any iterable or async iterable (a generator over a huge file, a queue):
it is read only as fast as slots free up, so memory stays flat whatever its size. Each
create goes through the pipeline like a single one: the write budget, retries, and the
ambiguous-write rules (a ``call_id`` makes a create safe to reconcile).

No create that was sent goes unreported. A create's exception, whatever it is, becomes that
input's result. ``batch.stop()`` stops taking input and lets what is in flight finish (the
loop then ends). Leaving the loop early, or cancelling it, cancels what is in flight:
``batch.unreported`` then holds a result for each create whose result was not yielded,
``AmbiguousWriteError`` for one that had been sent, ``WriteNotSentError`` for one that had
not (safe to send again).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._constants import LOGGER_NAME
from .errors import AmbiguousWriteError, GetBillError, WriteNotSentError
from .models import Followup, FollowupCreate
from .support import AsyncClosing, check_int
from .transport import SENT, SentRecord

__all__ = ["CreateBatch", "CreateResult"]

Item = FollowupCreate | Mapping[str, Any]
log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class CreateResult:
    """One input's outcome.

    Attributes:
        index: the input's position (from 0).
        followup: the followup created (or found by its ``call_id``), None on an error.
        error: why not: invalid input, a refusal, ``AmbiguousWriteError`` (it may exist) or
            ``WriteNotSentError`` (safe to send again).
    """

    index: int
    followup: Followup | None
    error: GetBillError | None = None

    @property
    def ok(self) -> bool:
        """Whether the create succeeded."""
        return self.error is None


def _fields(item: Item) -> Mapping[str, Any]:
    if isinstance(item, FollowupCreate):
        return {f: getattr(item, f) for f in item.__struct_fields__}
    return item


class CreateBatch(AsyncClosing):
    """``async for result in batch``: a ``CreateResult`` per input, as each completes.

    Use it in ``async with`` (or call ``aclose()``) so that leaving early cancels what is in
    flight and fills ``unreported``; see the module's docstring.

    Args:
        create: the create to run per input (``client.followups.create``, or a function of
            yours around it), called as ``create(item)`` or ``create(**mapping)``.
        items: the inputs: ``FollowupCreate``s or mappings, from any iterable or async
            iterable (read only as fast as slots free up).
        concurrency: creates in flight at once (an integer >= 1).

    Raises:
        ValidationError: ``concurrency`` is not an integer >= 1.
    """

    def __init__(
        self,
        create: Callable[..., Awaitable[Followup]],
        items: Iterable[Item] | AsyncIterable[Item],
        *,
        concurrency: int = 8,
    ) -> None:
        check_int("concurrency", concurrency)
        self._create = create
        self._sends: Callable[[Item, SentRecord], Awaitable[Followup]] | None = None
        self._source: AsyncIterator[Item] | None = None
        self._items = items
        self._concurrency = concurrency
        self._running: dict[asyncio.Task[CreateResult], tuple[int, Item, SentRecord]] = {}
        self._ready: deque[CreateResult] = deque()
        self._next_index = 0
        self._stopped = False
        self._exhausted = False
        self._source_error: BaseException | None = None
        self._closed = False
        self.unreported: list[CreateResult] = []

    @classmethod
    def tracking(
        cls,
        create: Callable[[Item, SentRecord], Awaitable[Followup]],
        items: Iterable[Item] | AsyncIterable[Item],
        *,
        concurrency: int = 8,
    ) -> CreateBatch:
        """A batch whose ``create(item, sent)`` puts ``sent`` on its request (``Request.sent``)
        so that the pipeline tells it whether the create left: ``create_many``'s way.

        Args:
            create: makes one followup from an input, telling the record.
            items: the inputs.
            concurrency: creates in flight at once.

        Returns:
            The batch.
        """
        batch = cls(create, items, concurrency=concurrency)
        batch._sends = create
        return batch

    @property
    def in_flight(self) -> int:
        """Creates started and not yet finished."""
        return len(self._running)

    @property
    def taken(self) -> int:
        """Inputs taken so far (each has, or will have, a result)."""
        return self._next_index

    def stop(self) -> None:
        """Take no more input; the loop ends once the creates in flight have finished."""
        self._stopped = True

    def __aiter__(self) -> CreateBatch:
        return self

    async def __anext__(self) -> CreateResult:
        while not self._ready:
            await self._fill()
            if not self._running:
                await self._close_source()
                if self._source_error is not None:
                    error, self._source_error = self._source_error, None
                    raise error
                raise StopAsyncIteration
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: self._running[t][0]):
                del self._running[task]
                self._ready.append(task.result())
        return self._ready.popleft()

    async def _fill(self) -> None:
        while not (self._stopped or self._exhausted) and len(self._running) < self._concurrency:
            if self._source is None:
                self._source = _aiter(self._items)
            try:
                item = await self._source.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return
            except Exception as exc:  # the input failed: finish what is in flight, then raise
                self._exhausted = True
                self._source_error = exc
                return
            index, record = self._next_index, SentRecord()
            self._next_index += 1
            task = asyncio.ensure_future(self._one(index, item, record))
            self._running[task] = (index, item, record)

    async def _one(self, index: int, item: Item, record: SentRecord) -> CreateResult:
        try:
            if self._sends is not None:
                made = await self._sends(item, record)
            else:
                # A create function given directly builds its own requests: the batch has no
                # request to put the record on, so it rides in this task's own context,
                # where the pipeline marks writes that left.
                SENT.set(record)
                if isinstance(item, FollowupCreate):
                    made = await self._create(item)
                else:
                    made = await self._create(**item)
        except GetBillError as exc:
            return CreateResult(index, None, exc)
        except Exception as exc:  # any failure is this input's result, not the stream's end
            return CreateResult(index, None, _unfinished(item, record, exc))
        return CreateResult(index, made)

    async def aclose(self) -> None:
        """Cancel what is in flight; each create whose result was not yielded goes to
        ``unreported`` (ambiguous when it had been sent). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stopped = True
        running = dict(self._running)
        self._running.clear()
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        unreported = list(self._ready)
        self._ready.clear()
        for task, (index, item, record) in running.items():
            if task.cancelled():
                unreported.append(CreateResult(index, None, _unfinished(item, record, None)))
            else:
                unreported.append(task.result())
        self.unreported.extend(sorted(unreported, key=lambda r: r.index))
        if self.unreported:
            log.debug("create_many closed with %d results unreported", len(self.unreported))
        await self._close_source()

    async def _close_source(self) -> None:
        source, self._source = self._source, None
        closer = getattr(source, "aclose", None)
        if closer is not None:
            await closer()

    def __del__(self) -> None:
        running = getattr(self, "_running", None)
        if running:
            indexes = sorted(index for index, _, _ in running.values())
            log.warning(
                "create_many dropped with %d creates in flight (inputs %s): those sent may "
                "exist; use 'async with' or aclose() to get their results",
                len(indexes),
                indexes[:20],
            )
            for task in running:
                task.cancel()


def _unfinished(item: Item, record: SentRecord, cause: BaseException | None) -> GetBillError:
    why = "cancelled" if cause is None else f"stopped by {type(cause).__name__}: {cause}"
    if record.sent:
        return AmbiguousWriteError(
            f"{why} after it was sent", method="POST", path="/followups", fields=_fields(item)
        )
    error = WriteNotSentError(f"POST /followups: {why} before it was sent; safe to send again")
    error.__cause__ = cause
    return error


async def _aiter(items: Iterable[Item] | AsyncIterable[Item]) -> AsyncIterator[Item]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
