"""The read side of ``client.followups``: one page, every page (a walk), one followup."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import quote

import msgspec

from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT
from ..models import Followup, FollowupStatus, FollowupType, Page
from ..support import check_id, list_params, page_params
from ..transport import CallStats, ItemEnvelope, ItemWalk, PageWalk, Request, walk_pages

if TYPE_CHECKING:
    from ..transport import Sender

__all__ = ["FollowupReads"]

_page_decoder = msgspec.json.Decoder(Page[Followup])
_FOR_DEBT = "/followups/debt/{debt_id}"
_item_decoder = msgspec.json.Decoder(ItemEnvelope[Followup])


def _id_of(followup: Followup) -> str:
    return followup.id


def _path_id(field: str, value: object) -> str:
    return quote(check_id(field, value), safe="")


class FollowupReads:
    """``GET /followups``, ``GET /followups/debt/{debt_id}`` and ``GET /followups/{id}``
    (mixed into ``Followups``)."""

    _client: Sender

    async def list(
        self,
        *,
        page: int = 1,
        limit: int = 20,
        status: FollowupStatus | str | None = None,
        type: FollowupType | str | None = None,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        debt_id: str | None = None,
        stats: CallStats | None = None,
    ) -> Page[Followup]:
        """One page of ``GET /followups`` (newest first), filtered.

        Args:
            page: the page number, from 1.
            limit: items per page, 1 to 100.
            status: only this status (``FollowupStatus`` or its value).
            type: only this type (``FollowupType`` or its value).
            date_from: only followups from this day on (a ``date`` or ``"YYYY-MM-DD"``).
            date_to: only followups up to this day, inclusive.
            debt_id: only this debt's followups.
            stats: counters to add this request to (a walk's own, say).

        Returns:
            The page: ``data`` and ``pagination`` (``page``, ``pages``, ``total``).

        Raises:
            ValidationError: a bad filter or page setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        params = list_params(
            page=page,
            limit=limit,
            status=status,
            type=type,
            date_from=date_from,
            date_to=date_to,
            debt_id=debt_id,
        )
        return await self._client.send(
            Request("GET", "/followups", params=params, template="/followups"),
            _page_decoder,
            stats,
        )

    def pages(
        self,
        *,
        limit: int = DEFAULT_PAGE_LIMIT,
        concurrency: int = DEFAULT_CONCURRENCY,
        start_page: int = 1,
        status: FollowupStatus | str | None = None,
        type: FollowupType | str | None = None,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        debt_id: str | None = None,
        known_ids: Iterable[str] = (),
    ) -> PageWalk[Followup]:
        """Every page of ``GET /followups`` in order, fetching ``concurrency`` ahead.

            async with client.followups.pages(status="delivered") as walk:
                async for page in walk:
                    ...

        The walk's ``stats`` tell what happened (pages, duplicates skipped, whether ``total``
        moved). Walks run in the bulk lane unless the client's options say otherwise.

        Args:
            limit: items per page, 1 to 100.
            concurrency: pages in flight (and held) ahead of the consumer.
            start_page: the first page to fetch.
            status: only this status (``FollowupStatus`` or its value).
            type: only this type (``FollowupType`` or its value).
            date_from: only followups from this day on (a ``date`` or ``"YYYY-MM-DD"``).
            date_to: only followups up to this day, inclusive.
            debt_id: only this debt's followups.
            known_ids: ids already seen (a resumed walk's last pages), skipped if met again.

        Returns:
            The walk (an async iterator of pages; ``async with`` closes what is in flight).

        Raises:
            ValidationError: a bad filter or page setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        params = list_params(
            page=start_page,
            limit=limit,
            status=status,
            type=type,
            date_from=date_from,
            date_to=date_to,
            debt_id=debt_id,
        )
        return self._walk("/followups", "/followups", params, start_page, concurrency, known_ids)

    def iterate(
        self,
        *,
        limit: int = DEFAULT_PAGE_LIMIT,
        concurrency: int = DEFAULT_CONCURRENCY,
        start_page: int = 1,
        status: FollowupStatus | str | None = None,
        type: FollowupType | str | None = None,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        debt_id: str | None = None,
    ) -> ItemWalk[Followup]:
        """Every followup of every page, in order, each once: ``async for f in ...``.

        Args:
            limit: items per page, 1 to 100.
            concurrency: pages in flight (and held) ahead of the consumer.
            start_page: the first page to fetch.
            status: only this status (``FollowupStatus`` or its value).
            type: only this type (``FollowupType`` or its value).
            date_from: only followups from this day on (a ``date`` or ``"YYYY-MM-DD"``).
            date_to: only followups up to this day, inclusive.
            debt_id: only this debt's followups.

        Returns:
            The walk of items (``stats`` as for ``pages``).

        Raises:
            ValidationError: a bad filter or page setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        return ItemWalk(
            self.pages(
                limit=limit,
                concurrency=concurrency,
                start_page=start_page,
                status=status,
                type=type,
                date_from=date_from,
                date_to=date_to,
                debt_id=debt_id,
            )
        )

    async def list_for_debt(
        self, debt_id: str, *, page: int = 1, limit: int = 20
    ) -> Page[Followup]:
        """One page of ``GET /followups/debt/{debt_id}``.

        Args:
            debt_id: the debt.
            page: the page number, from 1.
            limit: items per page, 1 to 100.

        Returns:
            The page of that debt's followups.

        Raises:
            ValidationError: a bad filter or page setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        path = f"/followups/debt/{_path_id('debt_id', debt_id)}"
        return await self._client.send(
            Request("GET", path, params=page_params(page, limit), template=_FOR_DEBT),
            _page_decoder,
        )

    def iterate_for_debt(
        self,
        debt_id: str,
        *,
        limit: int = DEFAULT_PAGE_LIMIT,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> ItemWalk[Followup]:
        """Every followup of one debt (``GET /followups/debt/{debt_id}``), in order.

        Args:
            debt_id: the debt.
            limit: items per page, 1 to 100.
            concurrency: pages in flight (and held) ahead of the consumer.

        Returns:
            The walk of that debt's followups.

        Raises:
            ValidationError: a bad filter or page setting (no request is sent).
            GetBillError: the API failed past the retries (see ``getbill_async.errors``).
        """
        path = f"/followups/debt/{_path_id('debt_id', debt_id)}"
        return ItemWalk(self._walk(path, _FOR_DEBT, page_params(1, limit), 1, concurrency))

    def _walk(
        self,
        path: str,
        template: str,
        params: dict[str, str],
        start_page: int,
        concurrency: int,
        known_ids: Iterable[str] = (),
        *,
        bulk: bool = True,
    ) -> PageWalk[Followup]:
        return walk_pages(
            self._client,
            path,
            params,
            _page_decoder,
            _id_of,
            template=template,
            start_page=start_page,
            concurrency=concurrency,
            known_ids=known_ids,
            bulk=bulk,
        )

    async def get(self, followup_id: str) -> Followup:
        """``GET /followups/{id}``: one followup.

        Args:
            followup_id: its id.

        Returns:
            The followup.

        Raises:
            NotFoundError: there is none with that id.
            ValidationError: ``followup_id`` is not a non-empty string (no request is sent).
        """
        path = f"/followups/{_path_id('followup_id', followup_id)}"
        request = Request("GET", path, template="/followups/{id}")
        answer = await self._client.send(request, _item_decoder)
        return answer.data
