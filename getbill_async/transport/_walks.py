"""Walking every page: ordered, bounded, concurrent prefetch.

After page 1 (which tells how many pages there are), up to ``concurrency`` pages are in
memory at once: the one the consumer holds plus ``concurrency - 1`` requests fetched ahead
in flight. Pages come out strictly in order. The default of 4 hides most of a request's
latency behind the consumer's work while keeping memory at a few hundred KB of pages; past
8 a single host gains little, and under the hourly budget concurrency buys nothing at all.

Page-number pagination shifts when followups arrive while a walk runs (newest come first,
so items slide to later pages). The ids of the last few pages are remembered (a bounded set,
so memory stays flat on a million-row export) and an item seen again is skipped; the walk
keeps going while the server reports more pages than it has read. ``stats`` says what
happened, including whether ``total`` moved (a deletion can slide an item onto a page already
read, which only an incremental pass can catch).

Every page is checked against what was asked before its items are handed out (``_pagecheck``:
the page number echoed, figures that add up, no hole, not a page of repeats): a page that
fails is asked once more, then the walk raises ``PaginationError`` naming the page.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from .._constants import WALK_REMEMBERED_IDS
from ..models import Page
from ..support import AsyncClosing, check_int
from ._answers import Decodes
from ._pagecheck import PageCheck
from ._request import CallStats, Request
from ._sender import Sender

__all__ = ["ItemWalk", "KeyedPage", "PageWalk", "WalkStats", "walk_pages"]

T = TypeVar("T")
Fetch = Callable[[int, CallStats], Awaitable[Page[T]]]


class KeyedPage(Page[T], Generic[T]):
    """A page that came with its items' ids (``ids[i]`` is ``data[i]``'s), decoded next to
    them: the walk skips duplicates without asking each item for its key."""

    ids: list[str]


@dataclass
class WalkStats:
    """What a walk did.

    Attributes:
        pages: pages yielded.
        items: items yielded.
        duplicates_skipped: items met again (slid across pages) and not yielded twice.
        total_at_start: the server's ``total`` on the first page.
        total_at_end: its ``total`` on the last page.
        calls: the walk's requests, retries and budget waits.
        proved: the walk ended and proved that every item which stayed on the list for the
            whole of it was yielded (only a walk with overlapping reads proves it:
            ``OverlapWalk``; a ``PageWalk`` leaves it False).
    """

    pages: int = 0
    items: int = 0
    duplicates_skipped: int = 0
    total_at_start: int | None = None
    total_at_end: int | None = None
    calls: CallStats = field(default_factory=CallStats)
    proved: bool = False

    @property
    def total_changed(self) -> bool:
        """The server's ``total`` moved during the walk: run an incremental pass to be sure."""
        return self.total_at_start != self.total_at_end

    @property
    def requests(self) -> int:
        """Tries made for the walk (each took a budget slot), retries included."""
        return self.calls.requests

    @property
    def retries(self) -> int:
        """Tries sent again after a retryable failure (429, 5xx, a reset, a timeout)."""
        return self.calls.retries

    @property
    def budget_waits(self) -> int:
        """Requests that waited for a budget slot before they were sent."""
        return self.calls.budget_waits


class PageWalk(AsyncClosing, Generic[T]):
    """``async for page in walk``: every page, in order. Also an async context manager;
    leaving it (or ``aclose()``) cancels what is in flight. Made by ``client.followups.pages``
    and its kind; each page is checked against the page asked before it is yielded.

    Args:
        fetch: fetches one page by number, adding to the given counters.
        key: an item's id (duplicates are skipped by it).
        start_page: the first page to fetch.
        concurrency: pages in flight (and held) ahead of the consumer (>= 1).
        known_ids: ids already yielded (a resumed walk's last pages), skipped if met again.
        what: the request's name in errors (``GET /followups``).
        total_before: a resumed walk's ``total`` when it first began.

    Raises:
        ValidationError: ``concurrency`` is not an integer >= 1.
    """

    def __init__(
        self,
        fetch: Fetch[T],
        key: Callable[[T], str],
        *,
        start_page: int = 1,
        concurrency: int,
        known_ids: Iterable[str] = (),
        what: str = "walk",
        total_before: int | None = None,
    ) -> None:
        check_int("concurrency", concurrency)
        self._fetch = fetch
        self._what = what  # names the request in errors: "GET /followups"
        self._total_before = total_before  # a resumed walk's total when it began
        self._key = key
        self._start = start_page
        self._concurrency = concurrency
        self.stats = WalkStats()
        self._known = set(known_ids)  # ids already handed out (a resumed export's last pages)
        self._gen: AsyncGenerator[Page[T], None] | None = None

    def __aiter__(self) -> AsyncIterator[Page[T]]:
        if self._gen is None:
            # The generator gets what it needs, never ``self``: a walk dropped after a
            # ``break`` is freed at once (no reference cycle waits for the cyclic GC), and
            # the generator's finalizer cancels the pages in flight right away.
            recent = _Recent(
                self._known, floor_pages=self._concurrency + 2, floor_items=WALK_REMEMBERED_IDS
            )
            check = PageCheck(
                self._what, self._fetch, self.stats.calls, _keys_of(self._key), recent.index
            )
            check.first_total = self._total_before
            self._gen = _walk(
                self._fetch, self._key, self._start, self._concurrency, recent, check, self.stats
            )
        return self._gen

    async def __anext__(self) -> Page[T]:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()


async def _walk(
    fetch: Fetch[T],
    key: Callable[[T], str],
    number: int,
    concurrency: int,
    recent: _Recent,
    check: PageCheck[T],
    stats: WalkStats,
) -> AsyncGenerator[Page[T], None]:
    ahead = concurrency - 1
    ahead_tasks: dict[int, asyncio.Task[Page[T]]] = {}
    page = await check.page(number, await fetch(number, stats.calls))
    stats.total_at_start = page.pagination.total
    last = page.pagination.pages
    scheduled = number
    try:
        while True:
            stats.total_at_end = page.pagination.total
            last = max(last, page.pagination.pages)
            if not page.data:
                return
            while scheduled < last and scheduled < number + ahead:
                scheduled += 1
                ahead_tasks[scheduled] = asyncio.ensure_future(fetch(scheduled, stats.calls))
            yield _fresh(page, key, recent, stats)
            if number >= last:
                return
            number += 1
            task = ahead_tasks.pop(number, None)
            if task is None:
                scheduled = max(scheduled, number)
                page = await fetch(number, stats.calls)
            else:
                page = await task
            page = await check.page(number, page)
    finally:
        for task in ahead_tasks.values():
            task.cancel()
        if ahead_tasks:
            await asyncio.gather(*ahead_tasks.values(), return_exceptions=True)


class _Recent:
    """The ids of the last pages: enough of them to recognise an item that slid back.

    Newest-first lists push every item down by one per followup created meanwhile, so an item
    read on page k can come back up to ``ceil(inserts / limit)`` pages later. The window is
    sized from the inserts seen so far (the growth of ``total``) plus two pages, and never
    smaller than ``floor_items`` ids: the growth of a sudden burst (a budget pause during
    which hundreds of followups arrived) is only seen on the first page read after it, when
    the pages it shifts must still be remembered. Memory stays bounded by the window.
    """

    __slots__ = ("pages", "index", "floor_pages", "floor_items", "serial", "first", "peak")

    def __init__(self, known: set[str], floor_pages: int, floor_items: int) -> None:
        self.pages: deque[tuple[int, list[str]]] = deque()
        self.index: dict[str, int] = {}  # id -> serial of the one page that holds it
        self.floor_pages = floor_pages
        self.floor_items = floor_items
        self.serial = 0
        self.first: int | None = None
        self.peak = 0
        if known:
            self._append(list(known))

    def add(self, ids: list[str], total: int, limit: int) -> None:
        if self.first is None:
            self.first = total
        self.peak = max(self.peak, total)
        per_page = max(1, limit)
        keep = max(
            self.floor_pages,
            -(-self.floor_items // per_page),
            -(-(self.peak - self.first) // per_page) + 2,
        )
        self._append(ids)
        while len(self.pages) > keep:
            _, old = self.pages.popleft()
            # An id is remembered by one page only: a page adds just the ids met nowhere in
            # the window (the rest are skipped), so the oldest page's ids all go.
            for key in old:
                self.index.pop(key, None)

    def _append(self, ids: list[str]) -> None:
        self.serial += 1
        self.pages.append((self.serial, ids))
        self.index.update(dict.fromkeys(ids, self.serial))


def _keys_of(key: Callable[[T], str]) -> Callable[[Page[T]], list[str]]:
    def keys(page: Page[T]) -> list[str]:
        return page.ids if isinstance(page, KeyedPage) else list(map(key, page.data))

    return keys


def _fresh(page: Page[T], key: Callable[[T], str], recent: _Recent, stats: WalkStats) -> Page[T]:
    data = page.data
    keys = page.ids if isinstance(page, KeyedPage) else list(map(key, data))
    unique = dict.fromkeys(keys)
    if len(unique) == len(keys) and recent.index.keys().isdisjoint(keys):
        kept, kept_keys = data, keys  # the usual page: nothing met before, no loop in Python
    else:
        kept, kept_keys, seen = [], [], recent.index
        unique = {}
        for item, k in zip(data, keys, strict=True):
            if k in unique or k in seen:
                stats.duplicates_skipped += 1
                continue
            unique[k] = None
            kept.append(item)
            kept_keys.append(k)
    recent.add(kept_keys, page.pagination.total, page.pagination.limit)
    stats.pages += 1
    stats.items += len(kept)
    if kept is data:
        return page
    if isinstance(page, KeyedPage):
        return KeyedPage(data=kept, pagination=page.pagination, ids=kept_keys)
    return Page(data=kept, pagination=page.pagination)


class ItemWalk(AsyncClosing, Generic[T]):
    """``async for item in walk``: every item of every page, in order, once.

    A plain iterator over the page walk, not a second generator: when a caller breaks out
    and drops the walk, one generator is finalized and its in-flight pages are cancelled.

    Args:
        pages: the page walk whose items it yields (its ``stats`` are this walk's).
    """

    def __init__(self, pages: PageWalk[T]) -> None:
        self.pages = pages
        self._items: Iterator[T] = iter(())

    @property
    def stats(self) -> WalkStats:
        return self.pages.stats

    def __aiter__(self) -> ItemWalk[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            item = next(self._items, _END)
            if item is not _END:
                return cast(T, item)
            page = await self.pages.__anext__()
            self._items = iter(page.data)

    async def aclose(self) -> None:
        await self.pages.aclose()


_END = object()


def walk_pages(
    client: Sender,
    path: str,
    params: dict[str, str],
    decoder: Decodes[Page[T]],
    key: Callable[[T], str],
    *,
    template: str | None,
    start_page: int,
    concurrency: int,
    known_ids: Iterable[str] = (),
    total_before: int | None = None,
    bulk: bool = True,
) -> PageWalk[T]:
    """A ``PageWalk`` over a list endpoint: ``params`` (checked) with each page's number.

    Each page is checked against what was asked (see ``_pagecheck``): a wrong echo, a hole or
    a page of repeats is asked once more, then raises ``PaginationError`` naming the page.
    ``total_before``: a resumed walk's ``total`` when it first began (repeats that its growth
    explains are allowed).

    ``bulk``: the walk is bulk work (the default: a walk reads everything), so it runs in the
    bulk lane unless the client's view says otherwise (``Request.bulk``, ``lane_of``); a walk
    that answers someone waiting (a reconcile lookup) passes False.
    ``template``: the path with placeholders (``/followups/debt/{debt_id}``) that names the
    walk's spans and metrics; None names them by the method alone.
    """

    async def fetch(number: int, stats: CallStats) -> Page[T]:
        request = Request(
            "GET", path, params={**params, "page": str(number)}, bulk=bulk, template=template
        )
        return await client.send(request, decoder, stats)

    return PageWalk(
        fetch,
        key,
        start_page=start_page,
        concurrency=concurrency,
        known_ids=known_ids,
        what=f"GET {path}",
        total_before=total_before,
    )
