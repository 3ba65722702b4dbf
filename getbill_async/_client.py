"""``GetBillClient``: one aiohttp session, one request pipeline, the resources on top.

The session belongs to the loop it was made on, its sockets to the process. As that loop ends
(``asyncio.run``), the session is closed on it; the next loop gets a new one, under the same
budget. A child after ``fork()`` leaves the parent's alone and opens its own. Used from a
second loop while the first is open, the client raises ``EventLoopError``.
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import warnings
from collections.abc import AsyncGenerator
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from ._constants import DEFAULT_BASE_URL, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT
from .budget import LANES, Budget, BudgetStatus, Lane, LocalBudget, RateLimit
from .errors import ConfigurationError, EventLoopError
from .resources import Debts, Followups
from .support import Home, at_loop_end, check_url, forks, home, in_child, orphan
from .telemetry import Hooks, event_stream
from .transport import (
    CallOptions,
    CallStats,
    ClientCredentials,
    Decodes,
    OAuthTokenSource,
    Pipeline,
    Request,
    RetryPolicy,
    SentAwareRequest,
    TokenSource,
    default_max_wait,
    token_source,
)

__all__ = ["GetBillClient"]

T = TypeVar("T")


class _NotGiven:
    """A default that lets ``None`` be passed on purpose (``max_wait=None``: no cap)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def _changed(
    options: CallOptions, timeout: Any, max_wait: Any, retry: Any, priority: Any
) -> CallOptions:
    """``options`` with the given ones (``NOT_GIVEN``: unchanged), each checked; ``max_wait``
    None becomes ``math.inf`` here, its one public spelling of "as long as it takes"."""
    if timeout is not NOT_GIVEN:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        options = replace(options, timeout=float(timeout))
    if max_wait is not NOT_GIVEN:
        if max_wait is None:
            max_wait = math.inf
        if (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, (int, float))
            or not max_wait >= 0
        ):
            raise ConfigurationError(
                f"max_wait must be a number of seconds >= 0, or None, got {max_wait!r}"
            )
        options = replace(options, max_wait=float(max_wait))
    if retry is not NOT_GIVEN:
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        options = replace(options, retry=retry)
    if priority is not NOT_GIVEN:
        if priority not in LANES:
            raise ConfigurationError(
                f"priority: invalid value {priority!r}; allowed: {', '.join(LANES)}"
            )
        options = replace(options, priority=priority)
    return options


class GetBillClient:
    """An asyncio client for GetBill's external API.

        async with GetBillClient(token="...") as client:
            async for f in client.followups.iterate(status="delivered"):
                ...

    Args:
        token: a bearer string or ``ClientCredentials``; with neither, ``GETBILL_TOKEN`` or
            ``GETBILL_CLIENT_ID`` + ``GETBILL_CLIENT_SECRET`` from the environment.
        base_url: the API's base URL: the real API's by default, or ``GETBILL_BASE_URL`` from
            the environment (as for the ``getbill`` command) when it is set. https, unless the
            host is a loopback one or ``allow_insecure``; no ``user:password@`` part.
        rate_limit: a ``RateLimit`` (a ``LocalBudget`` is built from it) or any ``Budget``,
            such as one shared by several clients or a ``RedisBudget`` shared by a fleet.
        retry: how calls are retried (a ``RetryPolicy``).
        timeout: seconds per try.
        session: an aiohttp session to use (and not close); otherwise the client owns one,
            closed by ``close()`` or leaving ``async with``.
        max_response_bytes: the largest answer read (API and token endpoint alike).
        allow_insecure: allow plain http to a host that is not a loopback one.
        connections: the owned session's connection pool size.
        hooks: plain functions called as requests go (see ``Hooks``); with
            ``opentelemetry-api`` installed (``pip install 'getbill-async[otel]'``), spans and
            metrics go to the global providers too.

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
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure: bool = False,
        connections: int = 32,
        hooks: Hooks | None = None,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("GETBILL_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = check_url("base_url", base_url, allow_insecure).rstrip("/")
        self.retry = retry or RetryPolicy()
        self._auth: TokenSource = token_source(
            token,
            base_url=self.base_url,
            timeout=timeout,
            retry=self.retry,
            max_response_bytes=max_response_bytes,
        )
        if isinstance(self._auth, OAuthTokenSource):
            check_url("token_url", self._auth.token_url, allow_insecure)
        if rate_limit is None or isinstance(rate_limit, RateLimit):
            self.budget: Budget = LocalBudget(rate_limit)
        elif isinstance(rate_limit, Budget):
            self.budget = rate_limit
        else:
            raise ConfigurationError(
                f"rate_limit must be a RateLimit or a Budget, got {type(rate_limit).__name__}"
            )
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._options = CallOptions(
            timeout=self.timeout, retry=self.retry, max_wait=default_max_wait(self.budget)
        )
        self._root = self  # the client that owns the session; a view's is its origin
        self.max_response_bytes = max_response_bytes
        self._connections = connections
        self._session = session
        self._owns_session = session is None
        self._pipe: Pipeline | None = None
        self._home: Home = (forks(), None)  # where the session was opened
        self._sentinel: AsyncGenerator[None, None] | None = None  # closes it as its loop ends
        self._stats = CallStats()
        self._events = event_stream(hooks, self.budget, self.base_url)
        self._closed = False
        self.followups = Followups(self)
        self.debts = Debts(self)

    def with_options(
        self,
        *,
        timeout: float = NOT_GIVEN,
        max_wait: float | None = NOT_GIVEN,
        retry: RetryPolicy = NOT_GIVEN,
        priority: Lane = NOT_GIVEN,
    ) -> GetBillClient:
        """A view of this client with other call options; it shares the session, the
        credentials, the budget and the stats (closing the view closes nothing).

            lookups = client.with_options(max_wait=2, priority="interactive")
            followup = await lookups.followups.get(followup_id)   # waits <= 2 s for a slot

        Args:
            timeout: seconds per try.
            max_wait: the longest budget wait before ``BudgetExhaustedError``, in seconds
                (``None`` or ``math.inf``: as long as it takes). Not given: the budget's own
                ``RateLimit.max_wait``.
            retry: a ``RetryPolicy``; its ``max_time`` is a deadline for each whole call:
                budget waits, tries, pauses, the token refresh and reconcile lookups.
            priority: ``"interactive"`` or ``"bulk"`` for every call of the view, walks
                included (not given: each call's own lane, bulk for walks, exports and
                ``create_many``).

        Returns:
            The view.

        Raises:
            ConfigurationError: an option is not one of its allowed values.
        """
        return self._view(_changed(self._options, timeout, max_wait, retry, priority))

    def until(self, deadline: float | None) -> GetBillClient:
        """A view whose calls end by ``deadline`` (``time.monotonic()``; None: the view
        itself). A call made on behalf of another (a reconcile lookup) keeps its deadline.

        Args:
            deadline: the absolute deadline.

        Returns:
            The view.
        """
        if deadline is None:
            return self
        return self._view(replace(self._options, deadline=deadline))

    def _view(self, options: CallOptions) -> GetBillClient:
        view = copy.copy(self)
        view._options = options
        view.timeout, view.retry = options.timeout, options.retry
        view._owns_session = False
        view.followups = Followups(view)
        view.debts = Debts(view)
        return view

    async def send(
        self, request: Request, decoder: Decodes[T], stats: CallStats | None = None
    ) -> T:
        """The one way resources send: through the pipeline, with this client's options.

        Args:
            request: what to ask (method, path, params, body, lane, path template).
            decoder: turns the answer's bytes into its type.
            stats: counters to add this call's requests, retries and waits to.

        Returns:
            The decoded answer.
        """
        return await self._root._pipeline().request(request, decoder, stats, self._options)

    @property
    def lane(self) -> Lane | None:
        """The lane every call of this client goes in (``with_options(priority=...)``);
        None: each call's own (bulk for walks, exports and ``create_many``)."""
        return self._options.priority

    def in_lane(self, lane: Lane) -> GetBillClient:
        """A view of this client whose calls go in ``lane``: ``with_options(priority=lane)``.

        Args:
            lane: ``"interactive"`` or ``"bulk"``.

        Returns:
            The view (it shares everything else).
        """
        return self.with_options(priority=lane)

    def http_session(self) -> aiohttp.ClientSession:
        """The aiohttp session requests go through (made on first use)."""
        return self._root._pipeline().session

    def _pipeline(self) -> Pipeline:
        if self._root is not self:
            return self._root._pipeline()
        pipe = self._pipe
        if pipe is not None:
            if self._home == home():
                return pipe
            self._move()
        if self._closed:
            raise ConfigurationError("the client is closed")
        self._home = home()
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                request_class=SentAwareRequest,
            )
            self._sentinel = at_loop_end(self._end_session)
            in_child(self._leave_parent)  # a child after fork() drops the parent's at once
        # aiohttp silently resends GET/PUT once when a kept-alive connection drops; the
        # budget would not see that second request, so the pipeline's retries do it instead.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        pipe = self._pipe = Pipeline(
            session=self._session,
            base_url=self.base_url,
            auth=self._auth,
            budget=self.budget,
            options=self._options,
            max_response_bytes=self.max_response_bytes,
            stats=self._stats,
            events=self._events,
        )
        return pipe

    def _move(self, closing: bool = False) -> None:
        """The session was opened in the parent process or on another loop: leave it, so that
        the caller opens one here. If that loop is open, raise (or, ``closing``, have the
        session closed there when it runs next)."""
        born, loop = self._home
        forked, open_elsewhere = born != forks(), loop is not None and not loop.is_closed()
        if not forked and loop is not None and open_elsewhere and closing:
            if self._sentinel is not None:
                loop.call_soon_threadsafe(asyncio.ensure_future, self._sentinel.aclose())
            self._pipe = self._sentinel = None
        elif not self._owns_session:
            where = "the parent process" if forked else "another event loop"
            raise EventLoopError(
                f"the aiohttp session given to GetBillClient belongs to {where}: pass one "
                "made here, or let the client open its own"
            )
        elif not forked and open_elsewhere:
            raise EventLoopError(
                "this GetBillClient works on another event loop, which is still open: a client "
                "serves one loop at a time. Create the client inside the loop that uses it "
                "(async with GetBillClient() as client, in the coroutine the loop runs), or "
                "use getbill_async.sync.GetBillClient, which any thread may share"
            )
        else:
            self._leave_parent()  # a child's inheritance, or a loop closed without its end

    def _leave_parent(self) -> None:
        orphan((self._session, self._pipe, self._sentinel))
        self._pipe = self._sentinel = None
        self._session = None if self._owns_session else self._session

    async def _end_session(self) -> None:
        """Close the session on its own loop (as that loop ends, or on ``close()``)."""
        session, self._pipe, self._sentinel = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    @property
    def client_id(self) -> str | None:
        """The OAuth client's id (not a secret); None with a static token."""
        if isinstance(self._auth, OAuthTokenSource):
            return self._auth.credentials.client_id
        return None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session (created on the first request when the client owns it)."""
        return self._root._session

    @property
    def stats(self) -> CallStats:
        """Requests, retries and budget waits of this client so far (views included)."""
        return self._root._stats

    async def budget_status(self) -> BudgetStatus:
        """Reads and writes: used in the current window, remaining, when the next slot opens."""
        return await self.budget.status()

    async def close(self) -> None:
        """Close the session if the client owns it. Safe to call twice. A view (see
        ``with_options``) owns nothing: closing it closes nothing."""
        if self._root is not self:
            return
        self._closed = True
        if self._pipe is not None and self._home != home() and self._owns_session:
            self._move(closing=True)
        self._pipe = None
        sentinel = self._sentinel
        if sentinel is not None:
            await sentinel.aclose()  # closes the session
        elif self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> GetBillClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if getattr(self, "_owns_session", False) and session is not None and not session.closed:
            _warn(
                f"unclosed {self!r}: use 'async with GetBillClient(...)' or await close()",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    def __repr__(self) -> str:
        return f"GetBillClient(base_url={self.base_url!r}, budget={self.budget!r})"
