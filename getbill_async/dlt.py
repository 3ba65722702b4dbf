"""A dlt source for GetBill: load followups and debts into any warehouse dlt can reach.

    import dlt
    from getbill_async.dlt import getbill_source

    pipeline = dlt.pipeline("getbill", destination="duckdb", dataset_name="getbill")
    pipeline.run(getbill_source())        # token from dlt's secrets, or GETBILL_TOKEN

Needs the ``dlt`` extra (``pip install 'getbill-async[dlt]'``); importing this module without
it raises ``MissingExtraError`` naming the extra.

Invariants:

- **One budget.** Every resource of one source, in one run, goes through one
  ``GetBillClient`` and so one budget: a ``RateLimit`` (a ledger in this process) or any
  ``Budget``, such as a ``RedisBudget`` that several pipelines share. dlt runs async resources
  on one event loop per run, which the client lives on.
- **followups** merges on ``id``. The first run loads everything; each later run fetches only
  the followups dated from ``lag_days`` before the last run's day (the rule of
  ``getbill sync``), so the merged table equals a full load for every followup dated in that
  window. Doubles within a walk are skipped by id (the walk remembers its last pages' ids), and
  doubles across runs are merged on ``id``. A walk during which the server's ``total`` moved
  may have missed an item that slid onto a page already read: such a run does not move the
  window on, so the next run fetches the same days again.
- **Lossless.** Items are loaded as the server sent them: a field the SDK does not know yet
  becomes a new column (dlt's schema evolution). Known timestamps are aware UTC datetimes;
  ``id``, ``debt_id``, ``call_id`` and ``status`` are text columns whatever their first values.
- **No secret in dlt's config traces or logs**: ``token`` and ``client_secret`` are dlt
  secrets, and the client's repr hides them.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timezone
from typing import Any, Optional, cast

from getbill_async._extras import require

require("dlt", extra="dlt", feature="getbill_async.dlt (the dlt source)")

import dlt  # noqa: E402
import msgspec  # noqa: E402
from dlt.common.typing import TSecretStrValue  # noqa: E402
from dlt.sources import DltResource  # noqa: E402

from getbill_async import (  # noqa: E402
    Budget,
    ClientCredentials,
    Debt,
    Followup,
    GetBillClient,
    LocalBudget,
    Page,
    PageWalk,
    RateLimit,
    RetryPolicy,
)
from getbill_async.errors import ConfigurationError, ValidationError  # noqa: E402
from getbill_async.export._sync import check_lag_days, sync_day, window_start  # noqa: E402
from getbill_async.resources import walk_pages  # noqa: E402

__all__ = ["BudgetFactory", "getbill_source"]

_pages = msgspec.json.Decoder(Page[dict[str, Any]])
_DATA_TYPES = {str: "text", int: "bigint", float: "double", bool: "bool", date: "date"}


def columns_of(model: type[msgspec.Struct]) -> dict[str, Any]:
    """dlt column hints for the documented fields of ``model``: their types, fixed up front
    so that a first run of all-null values still makes typed, nullable columns."""
    columns: dict[str, Any] = {}
    for field in msgspec.structs.fields(model):
        kinds = [t for t in typing.get_args(field.type) or (field.type,) if t is not type(None)]
        kind = kinds[0]
        if kind is datetime:
            hint = {"data_type": "timestamp", "timezone": True}
        else:
            hint = {"data_type": _DATA_TYPES.get(kind, "text")}
        columns[field.name] = {**hint, "nullable": field.name != "id"}
    return columns


def _stamp(value: Any, kind: type) -> Any:
    """A documented date or datetime as a Python value (datetimes in UTC); a value that does
    not parse is kept as it came (dlt then keeps it in a variant column, never drops it)."""
    if not isinstance(value, str):
        return value
    try:
        parsed: Any = msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return value
    if isinstance(parsed, datetime):
        if parsed.tzinfo is None:  # the docs always give an offset; a bare time is UTC
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    return parsed


def to_rows(items: list[dict[str, Any]], columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Items as dlt rows: every field kept, the documented dates and datetimes parsed."""
    stamps = {
        name: datetime if hint["data_type"] == "timestamp" else date
        for name, hint in columns.items()
        if hint["data_type"] in ("timestamp", "date")
    }
    for item in items:
        for name, kind in stamps.items():
            if name in item:
                item[name] = _stamp(item[name], kind)
    return items


BudgetFactory = Callable[[], Budget]
"""A zero-argument callable that makes a ``Budget`` (such as a ``RedisBudget``) for one run."""


class SharedClient:
    """One ``GetBillClient`` at a time for every resource of a source run, and one budget.

    dlt runs a source's async resources on one event loop per run: the first resource to
    start opens the client on it, the last to end closes it. A ``RateLimit`` becomes one
    ``LocalBudget`` per loop, kept for the whole run (a client opened again after the first
    closed spends from the same ledger). A ``Budget`` is used as it is. A ``BudgetFactory`` is
    called when the client opens, and what it made is closed with the client (a
    ``RedisBudget``'s connections belong to the run's loop).
    """

    def __init__(self, make: Callable[[RateLimit | Budget | None], GetBillClient], given: Any):
        self._make = make
        self._given = given
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: LocalBudget | None = None
        self._client: GetBillClient | None = None
        self._made: Budget | None = None  # what a BudgetFactory made for the open client
        self._users = 0

    def _budget(self) -> RateLimit | Budget | None:
        given = self._given
        if isinstance(given, Budget):
            return given
        if callable(given):
            self._made = cast(Budget, given())
            return self._made
        if self._local is None:
            self._local = LocalBudget(given)
        return self._local

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[GetBillClient]:
        """The shared client, opened on first use in this loop, closed after the last."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new run: nothing of the last one's loop is reused
            self._loop, self._local, self._client, self._users = loop, None, None, 0
        if self._client is None:
            self._client = self._make(self._budget())
        client = self._client
        self._users += 1
        try:
            yield client
        finally:
            self._users -= 1
            if self._users == 0:
                self._client = None
                await client.close()
                made, self._made = self._made, None
                closing = getattr(made, "aclose", None)
                if closing is not None:
                    await closing()


_FOLLOWUP_COLUMNS = columns_of(Followup)
_DEBT_COLUMNS = columns_of(Debt)


def _check_page_limit(page_limit: object) -> int:
    if isinstance(page_limit, bool) or not isinstance(page_limit, int):
        raise ValidationError(
            f"page_limit: must be an integer in 1..100, got {page_limit!r}", field="page_limit"
        )
    if not 1 <= page_limit <= 100:
        raise ValidationError(
            f"page_limit: must be an integer in 1..100, got {page_limit!r}", field="page_limit"
        )
    return page_limit


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
    check_lag_days(lag_days)
    limit = _check_page_limit(page_limit)
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
