"""The source: the ``followups`` (merged, incremental) and ``debts`` resources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any, List, Optional, Union  # noqa: UP035 - dlt reads the hints

import dlt
import msgspec
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from getbill_async import (
    Budget,
    ClientCredentials,
    Debt,
    GetBillClient,
    Page,
    PageWalk,
    RateLimit,
    RetryPolicy,
)
from getbill_async.errors import ConfigurationError
from getbill_async.export import sync_day
from getbill_async.support import check_int
from getbill_async.transport import resolve_credentials, walk_pages

from ._followups import followups_resource
from ._rows import columns_of, to_rows
from ._shared import BudgetFactory, SharedClient

__all__ = ["getbill_source"]

_pages = msgspec.json.Decoder(Page[dict[str, Any]])
_DEBT_COLUMNS = columns_of(Debt)


def _key(item: dict[str, Any]) -> str:
    return str(item.get("id"))


def _walk(client: GetBillClient, path: str, params: dict[str, str]) -> PageWalk[dict[str, Any]]:
    """The walk of a list endpoint, items as dicts (every field the server sent)."""
    return walk_pages(
        client, path, params, _pages, _key, template=path, start_page=1, concurrency=4
    )


def _debts(shared: SharedClient, page_limit: int) -> DltResource:
    @dlt.resource(name="debts", write_disposition="replace", columns=_DEBT_COLUMNS)
    async def debts() -> AsyncIterator[list[dict[str, Any]]]:
        params = {"limit": str(page_limit)}
        async with shared.use() as client, _walk(client, "/debts", params) as walk:
            async for page in walk:
                if page.data:
                    yield to_rows(page.data, _DEBT_COLUMNS)

    return debts


def _checked_budget(rate_limit: object) -> RateLimit | None:
    """``rate_limit`` as ``GetBillClient`` takes it (None for a factory); refuses the rest.

    A ``Budget`` instance is refused: its locks and connections belong to the event loop it
    first ran on, and dlt runs each run on a loop of its own, so a second run in the same
    process would fail deep inside it. A factory makes one per run.
    """
    if rate_limit is None or isinstance(rate_limit, RateLimit):
        return rate_limit
    if isinstance(rate_limit, Budget):
        raise ConfigurationError(
            f"rate_limit: a {type(rate_limit).__name__} instance belongs to the event loop it "
            "first runs on, and dlt runs each run on a new one; pass a BudgetFactory instead, "
            f"a callable that makes one per run: rate_limit=lambda: {type(rate_limit).__name__}"
            "(...)"
        )
    if not callable(rate_limit):
        raise ConfigurationError(
            "rate_limit must be a RateLimit or a BudgetFactory (a callable that makes a "
            f"Budget, such as lambda: RedisBudget(...)), got {type(rate_limit).__name__}"
        )
    return None


def _shared_client(
    credentials: str | ClientCredentials,
    rate_limit: RateLimit | BudgetFactory | None,
    **options: Any,
) -> SharedClient:
    """The run's one client, made (and so checked: a bad option sends nothing) up front."""
    checked = _checked_budget(rate_limit)

    def make(budget: RateLimit | Budget | None) -> GetBillClient:
        return GetBillClient(credentials, rate_limit=budget, **options)

    make(checked)
    return SharedClient(make, rate_limit)


@dlt.source(name="getbill", section="getbill", max_table_nesting=1)
def getbill_source(
    token: Optional[TSecretStrValue] = dlt.secrets.value,  # noqa: UP045 - dlt reads the hint
    client_id: Optional[str] = dlt.config.value,  # noqa: UP045
    client_secret: Optional[TSecretStrValue] = dlt.secrets.value,  # noqa: UP045
    base_url: Optional[str] = dlt.config.value,  # noqa: UP045
    token_url: Optional[str] = dlt.config.value,  # noqa: UP045
    scopes: Optional[Union[str, List[str]]] = dlt.config.value,  # noqa: UP006, UP007, UP045
    rate_limit: RateLimit | BudgetFactory | None = None,
    retry: RetryPolicy | None = None,
    lag_days: int = 3,
    page_limit: int = 100,
    today: date | str | None = None,
    full_every: int | None = None,
    allow_insecure: bool = False,
) -> Iterator[DltResource]:
    """GetBill's followups (merged on ``id``, incremental, swept) and debts (replaced).

    What is not passed comes from dlt's config and secrets (section ``sources.getbill``),
    then from the environment by the rule ``GetBillClient`` and the ``getbill`` command
    follow (``transport.resolve_credentials``): a client secret goes to ``token_url``
    (``GETBILL_TOKEN_URL``), or else to ``/token`` on the host of ``base_url``, never elsewhere.

    Args:
        token: A bearer token.
        client_id: An OAuth client id (with ``client_secret``), instead of ``token``.
        client_secret: Its secret.
        base_url: The API's base URL (default: ``GETBILL_BASE_URL``, else the real API's).
        token_url: The OAuth token endpoint (default: ``GETBILL_TOKEN_URL``).
        scopes: OAuth scopes, a list or one string (default: ``GETBILL_SCOPES``, else all).
        rate_limit: A ``RateLimit``, or a ``BudgetFactory`` (``lambda: RedisBudget(...)``)
            called on each run's event loop; a ``Budget`` instance is refused.
        retry: The client's ``RetryPolicy``.
        lag_days: How many days before the last run's day a run fetches again (>= 0).
        page_limit: The largest page, 1..100.
        today: The run's day (a date or ``YYYY-MM-DD``; default: today in UTC).
        full_every: Sweep every followup when this many days (>= 1) have passed since the
            last sweep, deleting rows gone from the server (None: the first run only).
        allow_insecure: Allow plain http to a host other than loopback.

    Returns:
        The ``followups`` and ``debts`` resources.

    Raises:
        ValidationError: A bad ``lag_days``, ``page_limit``, ``today``, ``full_every``,
            ``scopes`` or mix of credentials (no request).
        ConfigurationError: A bad ``base_url``, ``token_url`` or ``rate_limit``; none.
    """
    check_int("lag_days", lag_days, 0)
    limit = check_int("page_limit", page_limit, 1, 100)
    if full_every is not None:
        check_int("full_every", full_every, 1)
    day = sync_day(today)
    creds = resolve_credentials(
        token, client_id=client_id, client_secret=client_secret, token_url=token_url,
        scopes=scopes, base_url=base_url,
    )  # fmt: skip
    options = {"base_url": base_url, "retry": retry, "allow_insecure": allow_insecure}
    shared = _shared_client(creds, rate_limit, **options)
    yield followups_resource(shared, lag_days, limit, day, full_every)
    yield _debts(shared, limit)
