"""``client.debts``: read debts, one or page by page (scope ``debts:read``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import msgspec

from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT
from ..models import Debt, Page
from ..support import check_id, page_params
from ..transport import CallStats, ItemEnvelope, ItemWalk, PageWalk, Request, walk_pages

if TYPE_CHECKING:
    from ..transport import Sender

__all__ = ["Debts"]

_page_decoder = msgspec.json.Decoder(Page[Debt])
_item_decoder = msgspec.json.Decoder(ItemEnvelope[Debt])


def _id_of(debt: Debt) -> str:
    return debt.id


def _params(page: object, limit: object, status: object) -> dict[str, str]:
    params = page_params(page, limit)
    if status is not None:
        # An open set (companies add their own statuses): any non-empty string is sent as is.
        params["status"] = check_id("status", status)
    return params


class Debts:
    """The debts endpoints (read side)::

    debt = await client.debts.get(followup.debt_id)
    async for debt in client.debts.iterate(status="pending"):
        ...
    """

    def __init__(self, client: Sender) -> None:
        self._client = client

    async def get(self, debt_id: str) -> Debt:
        """``GET /debts/{id}``: one debt.

        Args:
            debt_id: its id.

        Returns:
            The debt.

        Raises:
            NotFoundError: there is none with that id.
            ValidationError: ``debt_id`` is not a non-empty string (no request is sent).
        """
        path = f"/debts/{quote(check_id('debt_id', debt_id), safe='')}"
        request = Request("GET", path, template="/debts/{id}")
        answer = await self._client.send(request, _item_decoder)
        return answer.data

    async def list(
        self,
        *,
        page: int = 1,
        limit: int = 20,
        status: str | None = None,
        stats: CallStats | None = None,
    ) -> Page[Debt]:
        """One page of ``GET /debts`` (newest first), optionally of one ``status``.

        Args:
            page: the page number, from 1.
            limit: items per page, 1 to 100.
            status: only debts with this status (an open set: any non-empty string).
            stats: counters to add this request to.

        Returns:
            The page: ``data`` and ``pagination``.

        Raises:
            ValidationError: a bad setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        request = Request("GET", "/debts", params=_params(page, limit, status), template="/debts")
        return await self._client.send(request, _page_decoder, stats)

    def pages(
        self,
        *,
        limit: int = DEFAULT_PAGE_LIMIT,
        concurrency: int = DEFAULT_CONCURRENCY,
        start_page: int = 1,
        status: str | None = None,
    ) -> PageWalk[Debt]:
        """Every page of ``GET /debts`` in order, fetching ``concurrency`` ahead.

        Args:
            limit: items per page, 1 to 100.
            concurrency: pages in flight (and held) ahead of the consumer.
            start_page: the first page to fetch.
            status: only debts with this status (an open set: any non-empty string).

        Returns:
            The walk (an async iterator of pages; ``async with`` closes what is in flight).

        Raises:
            ValidationError: a bad setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        params = _params(start_page, limit, status)
        return walk_pages(
            self._client,
            "/debts",
            params,
            _page_decoder,
            _id_of,
            template="/debts",
            start_page=start_page,
            concurrency=concurrency,
        )

    def iterate(
        self,
        *,
        limit: int = DEFAULT_PAGE_LIMIT,
        concurrency: int = DEFAULT_CONCURRENCY,
        start_page: int = 1,
        status: str | None = None,
    ) -> ItemWalk[Debt]:
        """Every debt of every page, in order, each once: ``async for debt in ...``.

        Args:
            limit: items per page, 1 to 100.
            concurrency: pages in flight (and held) ahead of the consumer.
            start_page: the first page to fetch.
            status: only debts with this status (an open set: any non-empty string).

        Returns:
            The walk of debts.

        Raises:
            ValidationError: a bad setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        return ItemWalk(
            self.pages(limit=limit, concurrency=concurrency, start_page=start_page, status=status)
        )
