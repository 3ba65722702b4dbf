"""The blocking ``GetBillClient``: the async client, driven on the sync face's loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from .. import GetBillClient as AsyncClient
from .._constants import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT
from ..budget import Budget, Lane, RateLimit
from ..resources import Debts as AsyncDebts
from ..resources import Followups as AsyncFollowups
from ..support import Closing
from ..telemetry import Hooks
from ..transport import CallStats, ClientCredentials, RetryPolicy
from ._portal import Portal, portal
from ._proxy import Face, Method, batching, blocking, walking

__all__ = ["Debts", "Followups", "GetBillClient"]

P = ParamSpec("P")


class Followups(Face[AsyncFollowups]):
    """``client.followups``, blocking: the async methods with the same parameters, each
    waiting for what the async one returns; walks and ``create_many`` are plain iterators."""

    list = blocking(AsyncFollowups.list)
    pages = walking(AsyncFollowups.pages)
    iterate = walking(AsyncFollowups.iterate)
    list_for_debt = blocking(AsyncFollowups.list_for_debt)
    iterate_for_debt = walking(AsyncFollowups.iterate_for_debt)
    get = blocking(AsyncFollowups.get)
    create = blocking(AsyncFollowups.create)
    create_many = batching(AsyncFollowups.create_many)
    update = blocking(AsyncFollowups.update)
    find_by_call_id = blocking(AsyncFollowups.find_by_call_id)
    debt_of = blocking(AsyncFollowups.debt_of)
    download_media = blocking(AsyncFollowups.download_media)
    export = blocking(AsyncFollowups.export)
    sync = blocking(AsyncFollowups.sync)
    plan_export = blocking(AsyncFollowups.plan_export)


class Debts(Face[AsyncDebts]):
    """``client.debts``, blocking (see ``Followups``)."""

    get = blocking(AsyncDebts.get)
    list = blocking(AsyncDebts.list)
    pages = walking(AsyncDebts.pages)
    iterate = walking(AsyncDebts.iterate)


def _view(face: Face[Any], target: AsyncClient) -> GetBillClient:
    return GetBillClient._over(target, face._portal)


def viewing(
    method: Callable[Concatenate[Any, P], AsyncClient],
) -> Method[P, GetBillClient]:
    """The async ``method`` that returns a view of the client, returning a sync view."""
    return Method(method.__name__, _view)


class GetBillClient(Closing, Face[AsyncClient]):
    """A blocking client for GetBill's external API, for code that does not use asyncio
    (scripts, threads, Django, Celery, notebooks).

        from getbill_async.sync import GetBillClient

        with GetBillClient() as client:
            page = client.followups.list(limit=10)
            for followup in client.followups.iterate(status="delivered"):
                ...

    The same arguments as ``getbill_async.GetBillClient`` (but ``session``: the connections
    belong to the sync face's own event loop), the same methods, each waiting for what the
    async one returns, and the same errors. It is that async client, run on one event loop
    per process on a daemon thread: one client may be shared by any number of threads, with
    one connection pool and one budget between them; it works inside a running event loop (a
    notebook) and in a child after ``fork()`` (with its own connections there). What is not
    closed is closed at interpreter exit.

    Raises:
        ConfigurationError: a setting is not one of its allowed values, or no credentials.
    """

    def __init__(
        self,
        token: str | ClientCredentials | None = None,
        *,
        base_url: str | None = None,
        rate_limit: RateLimit | Budget | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure: bool = False,
        connections: int = 32,
        hooks: Hooks | None = None,
    ) -> None:
        target = AsyncClient(
            token,
            base_url=base_url,
            rate_limit=rate_limit,
            retry=retry,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
            allow_insecure=allow_insecure,
            connections=connections,
            hooks=hooks,
        )
        self._setup(target, portal(), root=True)
        self._portal.keep(self, target.close)

    def _setup(self, target: AsyncClient, portal: Portal, *, root: bool) -> None:
        super().__init__(target, portal)
        self._root = root
        self._closed = False
        self.followups = Followups(target.followups, portal)
        self.debts = Debts(target.debts, portal)

    @classmethod
    def _over(cls, target: AsyncClient, portal: Portal) -> GetBillClient:
        view = cls.__new__(cls)
        view._setup(target, portal, root=False)
        return view

    budget_status = blocking(AsyncClient.budget_status)
    with_options = viewing(AsyncClient.with_options)
    in_lane = viewing(AsyncClient.in_lane)
    until = viewing(AsyncClient.until)

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self._target.base_url

    @property
    def client_id(self) -> str | None:
        """The OAuth client's id (not a secret); None with a static token."""
        return self._target.client_id

    @property
    def budget(self) -> Budget:
        """The rate budget every call of this client (and its views) goes through."""
        return self._target.budget

    @property
    def retry(self) -> RetryPolicy:
        """How calls are retried."""
        return self._target.retry

    @property
    def timeout(self) -> float:
        """Seconds per try."""
        return self._target.timeout

    @property
    def lane(self) -> Lane | None:
        """The lane every call of this client goes in (None: each call's own)."""
        return self._target.lane

    @property
    def stats(self) -> CallStats:
        """Requests, retries and budget waits of this client so far (views included)."""
        return self._target.stats

    @property
    def async_client(self) -> AsyncClient:
        """The async client underneath, for code running on the sync face's loop (hooks)."""
        return self._target

    def close(self) -> None:
        """Close the connections (a view closes nothing). Safe to call twice."""
        if not self._root or self._closed:
            return
        self._closed = True
        self._portal.release(self)
        self._portal.run(self._target.close())

    def __del__(self) -> None:
        # Dropped unclosed: closed in the background on the loop, quietly (the loop is ours).
        if getattr(self, "_root", False) and not self._closed:
            self._closed = True
            self._portal.release(self)
            self._portal.spawn(self._target.close())

    def __repr__(self) -> str:
        return f"sync.GetBillClient(base_url={self.base_url!r}, budget={self.budget!r})"
