"""What to ask the API: one module per resource, and the walk they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from .._answers import Decodes
from .._pagination import PageWalk
from .._request import CallStats, Request
from ..models import Page

if TYPE_CHECKING:
    from .._client import GetBillClient

T = TypeVar("T")


def walk_pages(
    client: GetBillClient,
    path: str,
    params: dict[str, str],
    decoder: Decodes[Page[T]],
    key: Callable[[T], str],
    *,
    template: str | None,
    start_page: int,
    concurrency: int,
    known_ids: Iterable[str] = (),
) -> PageWalk[T]:
    """A ``PageWalk`` over a list endpoint: ``params`` (checked) with each page's number.

    Walks are bulk work: they run in the bulk lane unless the client's options say otherwise.
    ``template``: the path with placeholders (``/followups/debt/{debt_id}``) that names the
    walk's spans and metrics; None names them by the method alone.
    """

    async def fetch(number: int, stats: CallStats) -> Page[T]:
        request = Request(
            "GET", path, params={**params, "page": str(number)}, lane="bulk", template=template
        )
        return await client._request(request, decoder, stats)

    return PageWalk(fetch, key, start_page=start_page, concurrency=concurrency, known_ids=known_ids)
