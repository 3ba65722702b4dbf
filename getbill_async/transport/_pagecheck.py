"""Every page of a walk checked against what was asked, in one place.

A page number pagination is only as good as the server's word, and a server (or a proxy, or
a cache in between) can answer another page than the one asked, leave a hole, or ignore
``page`` altogether. Each page is checked in order, before its items are handed out:

- its echoed ``pagination.page`` is the page asked;
- its figures add up (``total`` >= 0, ``limit`` >= 1, ``pages`` = ceil(total / limit));
- it holds as many distinct items as its own ``total`` and ``limit`` say page *n* holds (a
  page before the last is full; the last holds the rest), and never more than ``limit``: an
  id given twice on one page stands where another item should be;
- it is not made entirely of items already yielded, unless the growth of ``total`` since the
  walk began explains it (newest-first lists push every item down by one per insert, so an
  item can come back a page later only after a page's worth of inserts).

A page that fails is asked once more (a stale cache, a page caught mid-update); if the second
answer fails too, the walk raises ``PaginationError`` naming the request and the page. So a
server that ignores ``page`` costs a few requests, not the hour's budget, and a hole in the
middle ends the walk with an error, never with a silent success.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Generic, TypeVar

from .._constants import LOGGER_NAME
from ..errors import PaginationError
from ..models import Page
from ._request import CallStats

__all__ = ["PageCheck"]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)


def _figures(page: Page[T], number: int, distinct: int) -> str | None:
    """What is wrong with a page's own figures (``distinct``: how many different ids it
    holds), or None."""
    p = page.pagination
    if p.page != number:
        return f"the answer is for page {p.page}"
    if p.total < 0 or p.limit < 1:
        return f"pagination says total {p.total}, limit {p.limit}"
    pages = -(-p.total // p.limit)
    if p.pages not in (pages, max(pages, 1)):
        return f"pagination says {p.pages} pages for total {p.total} at limit {p.limit}"
    expected = min(p.limit, max(0, p.total - (number - 1) * p.limit))
    if distinct < expected:
        held = f"{len(page.data)} items"
        if distinct < len(page.data):
            held += f" ({distinct} distinct)"
        return f"{held}, where total {p.total} at limit {p.limit} says the page holds {expected}"
    if len(page.data) > p.limit:
        return f"{len(page.data)} items, more than its limit {p.limit}"
    return None


class PageCheck(Generic[T]):
    """The checks of one walk (see the module docstring); ``seen`` is the walk's window of
    ids already yielded, ``keys`` reads a page's ids."""

    __slots__ = ("what", "fetch", "calls", "keys", "seen", "first_total", "repeats")

    def __init__(
        self,
        what: str,
        fetch: Callable[[int, CallStats], Awaitable[Page[T]]],
        calls: CallStats,
        keys: Callable[[Page[T]], list[str]],
        seen: Collection[str],
    ) -> None:
        self.what, self.fetch, self.calls, self.keys, self.seen = what, fetch, calls, keys, seen
        self.first_total: int | None = None
        self.repeats = 0  # pages of items all yielded before, so far

    async def page(self, number: int, page: Page[T]) -> Page[T]:
        """``page``, the answer for page ``number``, checked; asked once more if it fails.

        Raises:
            PaginationError: the second answer fails too.
        """
        reason = self.problem(number, page)
        if reason is None:
            return self.accept(page)
        log.debug("%s page %d: %s; asking again", self.what, number, reason)
        page = await self.fetch(number, self.calls)
        again = self.problem(number, page)
        if again is not None:
            raise PaginationError(self.what, number, f"{again} (asked twice)")
        return self.accept(page)

    def problem(self, number: int, page: Page[T]) -> str | None:
        """What is wrong with ``page`` as the answer for page ``number``, or None."""
        reason = _figures(page, number, len(set(self.keys(page))))
        if reason is not None or not page.data or not self._all_seen(page):
            return reason
        first = page.pagination.total if self.first_total is None else self.first_total
        growth = max(0, page.pagination.total - first)
        if self.repeats >= -(-growth // page.pagination.limit):
            return (
                "every item on it was yielded before, and no growth of total explains it "
                "(is the server ignoring page?)"
            )
        return None

    def accept(self, page: Page[T]) -> Page[T]:
        if self.first_total is None:
            self.first_total = page.pagination.total
        if page.data and self._all_seen(page):
            self.repeats += 1
        return page

    def _all_seen(self, page: Page[T]) -> bool:
        seen = self.seen
        return all(k in seen for k in self.keys(page))
