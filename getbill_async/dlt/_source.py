"""The source: the ``followups`` (merged, incremental) and ``debts`` resources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any, Optional

import dlt
import msgspec
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from getbill_async import (
    Budget,
    ClientCredentials,
    Debt,
    Followup,
    GetBillClient,
    Page,
    PageWalk,
    RateLimit,
    RetryPolicy,
)
from getbill_async.errors import ConfigurationError, ValidationError
from getbill_async.export import sync_day, window_start
from getbill_async.support import check_int
from getbill_async.transport import walk_pages

from ._rows import columns_of, to_rows
from ._shared import BudgetFactory, SharedClient

__all__ = ["getbill_source"]

_pages = msgspec.json.Decoder(Page[dict[str, Any]])
_FOLLOWUP_COLUMNS = columns_of(Followup)
_DEBT_COLUMNS = columns_of(Debt)


def _key(item: dict[str, Any]) -> str:
    return str(item.get("id"))


def _walk(client: GetBillClient, path: str, params: dict[str, str]) -> PageWalk[dict[str, Any]]:
    """The walk of a list endpoint, items as dicts (every field the server sent)."""
    return walk_pages(
        client, path, params, _pages, _key, template=path, start_page=1, concurrency=4
    )


def _followups(shared: SharedClient, lag_days: int, page_limit: int, today: date) -> DltResource:
    @dlt.resource(
        name="followups",
        write_disposition="merge",
        primary_key="id",
        columns=_FOLLOWUP_COLUMNS,
    )
    async def followups() -> AsyncIterator[list[dict[str, Any]]]:
        state = dlt.current.resource_state()
        since = window_start(state.get("synced_through"), lag_days)
        params = {"limit": str(page_limit)}
        if since is not None:
            params["date_from"] = since
        async with shared.use() as client, _walk(client, "/followups", params) as walk:
            async for page in walk:
                if page.data:
                    yield to_rows(page.data, _FOLLOWUP_COLUMNS)
        if not walk.stats.total_changed:  # else the next run fetches the same days again
            state["synced_through"] = today.isoformat()
        state["last_date_from"] = since

    return followups


def _debts(shared: SharedClient, page_limit: int) -> DltResource:
    @dlt.resource(name="debts", write_disposition="replace", columns=_DEBT_COLUMNS)
    async def debts() -> AsyncIterator[list[dict[str, Any]]]:
        params = {"limit": str(page_limit)}
        async with shared.use() as client, _walk(client, "/debts", params) as walk:
            async for page in walk:
                if page.data:
                    yield to_rows(page.data, _DEBT_COLUMNS)

    return debts


def _credentials(
    token: str | None, client_id: str | None, client_secret: str | None
) -> str | ClientCredentials | None:
    """A token, OAuth client credentials, or None (``GetBillClient`` reads the environment)."""
    if client_id is None and client_secret is None:
        return token
    if token is not None or client_id is None or client_secret is None:
        raise ValidationError(
            "credentials: give either token, or both client_id and client_secret",
            field="credentials",
        )
    return ClientCredentials(client_id, client_secret)


def _checked_budget(rate_limit: object) -> RateLimit | Budget | None:
    """``rate_limit`` as ``GetBillClient`` takes it (None for a factory); refuses the rest."""
    if rate_limit is None or isinstance(rate_limit, (RateLimit, Budget)):
        return rate_limit
    if not callable(rate_limit):
        raise ConfigurationError(
            "rate_limit must be a RateLimit, a Budget or a callable that makes a Budget, "
            f"got {type(rate_limit).__name__}"
        )
    return None


@dlt.source(name="getbill", section="getbill", max_table_nesting=1)
def getbill_source(
    token: Optional[TSecretStrValue] = dlt.secrets.value,  # noqa: UP045 - dlt reads the hint
    client_id: Optional[str] = dlt.config.value,  # noqa: UP045
    client_secret: Optional[TSecretStrValue] = dlt.secrets.value,  # noqa: UP045
    base_url: Optional[str] = dlt.config.value,  # noqa: UP045
    rate_limit: RateLimit | Budget | BudgetFactory | None = None,
    retry: RetryPolicy | None = None,
    lag_days: int = 3,
    page_limit: int = 100,
    today: date | str | None = None,
    allow_insecure: bool = False,
) -> Iterator[DltResource]:
    """GetBill's followups (merged on ``id``, incremental) and debts (replaced each run).

    What is not passed comes from dlt's config and secrets, section ``sources.getbill``
    (``SOURCES__GETBILL__TOKEN``, ...), then from what ``GetBillClient`` reads (``GETBILL_*``).

    Args:
        token: A bearer token.
        client_id: An OAuth client id (with ``client_secret``), instead of ``token``.
        client_secret: Its secret.
        base_url: The API's base URL (default: the real API's).
        rate_limit: A ``RateLimit``, a ``Budget``, or a ``BudgetFactory`` such as
            ``lambda: RedisBudget(url, key=...)`` to share one budget with other pipelines
            and processes (made on the run's event loop, closed after the run); every
            resource of the run spends from it.
        retry: The client's ``RetryPolicy``.
        lag_days: How many days before the last run's day a run fetches again (>= 0).
        page_limit: Items per page, 1..100.
        today: The run's day (a date or ``YYYY-MM-DD``; default: today in UTC), which the next
            run's window starts from.
        allow_insecure: Allow plain http to a host other than loopback.

    Returns:
        The ``followups`` and ``debts`` resources.

    Raises:
        ValidationError: ``lag_days``, ``page_limit`` or ``today`` is invalid (no request).
        ConfigurationError: A bad ``base_url`` or ``rate_limit``.
    """
    check_int("lag_days", lag_days, 0)
    limit = check_int("page_limit", page_limit, 1, 100)
    day = sync_day(today)
    credentials = _credentials(token, client_id, client_secret)

    def make(budget: RateLimit | Budget | None) -> GetBillClient:
        return GetBillClient(
            credentials,
            base_url=base_url,
            rate_limit=budget,
            retry=retry,
            allow_insecure=allow_insecure,
        )

    make(_checked_budget(rate_limit))  # checks every option now; it sends nothing
    shared = SharedClient(make, rate_limit)
    yield _followups(shared, lag_days, limit, day)
    yield _debts(shared, limit)
