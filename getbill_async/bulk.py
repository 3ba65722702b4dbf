"""Many creates at once: bounded concurrency, bounded memory, results as they complete.

    async for result in client.followups.create_many(calls, concurrency=16):
        if result.error: print(result.index, result.error)

The input may be any iterable or async iterable (a generator over a huge file, a queue):
it is read only as fast as slots free up, so memory stays flat whatever its size. Each
create goes through the pipeline like a single one: the write budget, retries, and the
ambiguous-write rules (a ``call_id`` makes a create safe to reconcile).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass
from typing import Any

from ._validate import fail
from .errors import GetBillError
from .models import Followup, FollowupCreate

__all__ = ["CreateResult", "create_many"]

Item = FollowupCreate | Mapping[str, Any]


@dataclass(frozen=True)
class CreateResult:
    """One input's outcome: ``index`` is its position in the input (from 0)."""

    index: int
    followup: Followup | None
    error: GetBillError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def _aiter(items: Iterable[Item] | AsyncIterable[Item]) -> AsyncGenerator[Item, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def create_many(
    create: Callable[..., Awaitable[Followup]],
    items: Iterable[Item] | AsyncIterable[Item],
    *,
    concurrency: int = 8,
) -> AsyncIterator[CreateResult]:
    """Run ``create`` over ``items`` with at most ``concurrency`` in flight; yield each
    ``CreateResult`` as it completes. Leaving the loop early cancels what is in flight."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise fail("concurrency", f"must be an integer >= 1, got {concurrency!r}")

    async def one(index: int, item: Item) -> CreateResult:
        try:
            if isinstance(item, FollowupCreate):
                made = await create(item)
            else:
                made = await create(**item)
        except GetBillError as exc:
            return CreateResult(index, None, exc)
        return CreateResult(index, made)

    source = _aiter(items)
    running: set[asyncio.Task[CreateResult]] = set()
    index = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < concurrency:
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                running.add(asyncio.ensure_future(one(index, item)))
                index += 1
            if not running:
                return
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: t.result().index):
                yield task.result()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await source.aclose()
