"""The one request path: budget → auth → send → classify → retry → decode.

Resources say *what* to ask (method, path, params, body, decoder, lane); only this module knows
*how*. Retry decisions are small pure functions (``_retry``), and every call runs the same
backoff loop, the token request included.

Two rules that long jobs rely on:

- **Sent means sent.** The session's request class (``SentAwareRequest``) notes when a request
  starts writing to a connection. One that never did (a connect timeout, a wait for a pooled
  connection) holds no budget slot and is not an ambiguous write: it is simply tried again.
- **A deadline is a deadline.** ``RetryPolicy.max_time`` bounds the whole call: budget waits,
  tries and the pauses between them. A budget wait that would pass it is cut off at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import quote_plus

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .._constants import LOGGER_NAME, USER_AGENT
from .._redact import SecretHeaders, redact
from ..budget import Budget, Lane, Outcome, Slot
from ..errors import (
    AmbiguousWriteError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    GetBillError,
    RateLimitError,
)
from ..telemetry import CallInfo, EventStream
from ._answers import Decodes, ambiguous, decode, error_for_status, read_capped
from ._auth import TokenSource
from ._request import (
    PROBE,
    SENT,
    CallOptions,
    CallStats,
    Probe,
    Request,
    SentAwareRequest,
    SentRecord,
    track_sent,
)
from ._retry import Retryable, RetryPolicy, should_retry, with_retries

__all__ = [
    "SENT",
    "CallOptions",
    "CallStats",
    "Pipeline",
    "Request",
    "RetryPolicy",
    "SentAwareRequest",
    "SentRecord",
    "error_for_status",
]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)
_NOT_SENT = Outcome(sent=False)
_NO_ANSWER = Outcome(sent=True)


# Kept because make bench shows it: urlencode quotes every key and value afresh, a tenth of
# the SDK's own CPU per page; keys and values repeat (page numbers, limits, statuses).
_quote = functools.lru_cache(maxsize=1024)(quote_plus)


@functools.lru_cache(maxsize=64)
def _timeout_of(total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total)  # frozen: one per value serves every try


def query_string(params: Mapping[str, str]) -> str:
    """What ``urllib.parse.urlencode(params)`` gives, for string keys and values."""
    return "&".join([f"{_quote(k)}={_quote(v)}" for k, v in params.items()])


class _Call:
    """One logical call through the pipeline: its tries share a deadline and counters."""

    __slots__ = ("request", "options", "lane", "counters", "deadline", "generation", "info")

    def __init__(
        self, request: Request, options: CallOptions, counters: tuple[CallStats, ...]
    ) -> None:
        self.request = request
        self.options = options
        self.lane: Lane = options.priority or request.lane
        self.counters = counters
        max_time = options.retry.max_time
        self.deadline = None if max_time is None else time.monotonic() + max_time
        self.generation = 0  # of the token the last try sent
        self.info: CallInfo | None = None  # what the event stream knows of it, if it listens

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


class Pipeline:
    """Sends every request of one client. Not public: resources call ``client._request``."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: TokenSource,
        budget: Budget,
        options: CallOptions,
        max_response_bytes: int,
        stats: CallStats | None = None,
        events: EventStream | None = None,
    ) -> None:
        self.session = session
        self.events = events
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.budget = budget
        self.options = options
        self.max_response_bytes = max_response_bytes
        self.stats = stats if stats is not None else CallStats()
        self._tracks_sent = track_sent(session)
        rate_limit = getattr(budget, "rate_limit", None)
        self._budget_max_wait: float | None = getattr(rate_limit, "max_wait", None)

    async def request(
        self,
        request: Request,
        decoder: Decodes[T],
        stats: CallStats | None = None,
        options: CallOptions | None = None,
    ) -> T:
        """Send ``request`` with budget, auth and retries; the decoded answer."""
        counters = (self.stats,) if stats is None else (self.stats, stats)
        call = _Call(request, options or self.options, counters)
        events = self.events
        info = None
        if events is not None:
            info = call.info = events.start_call(
                request.method, request.template, request.path, request.kind, call.lane
            )
        if info is None:
            return await self._send(call, decoder)
        try:
            answer = await self._send(call, decoder)
        except BaseException as failed:
            if isinstance(failed, AmbiguousWriteError):
                EventStream.ambiguous_write(info, failed)
            EventStream.end_call(info, failed)
            raise
        EventStream.end_call(info, None)
        return answer

    async def _send(self, call: _Call, decoder: Decodes[T]) -> T:
        """The call's tries, and once more after a token refresh when the API said 401."""
        try:
            return await self._tries(call, decoder)
        except AuthenticationError as exc:
            if not self.auth.can_refresh or exc.path == self.auth.token_url:
                raise  # a static token, or the token endpoint itself said no
            # One refresh per call: a token revoked or expired early gets a second chance.
            # Refreshed only if the token this call sent is still the current one.
            await self.auth.refresh(self.session, call.generation)
            return await self._tries(call, decoder)

    async def _tries(self, call: _Call, decoder: Decodes[T]) -> T:
        return await with_retries(
            call.options.retry,
            functools.partial(
                self._attempt if call.info is None else self._observed, call, decoder
            ),
            deadline=call.deadline,
            on_retry=functools.partial(self._on_retry, call),
        )

    async def _observed(self, call: _Call, decoder: Decodes[T]) -> T:
        """``_attempt``, with its end reported to the event stream (it reports the start)."""
        assert call.info is not None
        try:
            answer = await self._attempt(call, decoder)
        except BaseException as failed:
            attempt = call.info.last
            if attempt is not None and not attempt.ended:
                cause: BaseException = failed.error if isinstance(failed, Retryable) else failed
                if isinstance(cause, AmbiguousWriteError) and cause.cause is not None:
                    cause = cause.cause
                EventStream.end_attempt(attempt, cause)
            raise
        if call.info.last is not None:
            EventStream.end_attempt(call.info.last, None)
        return answer

    def _on_retry(self, call: _Call, tries: int, wait: float, error: GetBillError) -> None:
        if call.info is not None and call.info.last is not None:
            EventStream.retrying(call.info.last, wait)
        for stats in call.counters:
            stats.retries += 1
        log.debug(
            "retrying %s (try %d) in %.3fs after: %s",
            call.request.describe(),
            tries + 1,
            wait,
            error,
        )

    async def _acquire(self, call: _Call) -> Slot:
        """A budget slot for this try, waiting no longer than the call's deadline allows."""
        request = call.request
        max_wait = call.options.max_wait
        left = call.time_left()
        cut_by_deadline = False
        if left is not None:
            own = self._budget_max_wait if max_wait is None else max_wait
            if own is None or own > left:
                max_wait, cut_by_deadline = max(0.0, left), True
        try:
            slot = await self.budget.acquire(request.kind, lane=call.lane, max_wait=max_wait)
        except BudgetExhaustedError as exc:
            if not cut_by_deadline:
                raise
            raise APITimeoutError(
                f"{request.describe()}: RetryPolicy.max_time would pass while waiting {exc.waiting}"
            ) from exc
        for stats in call.counters:
            stats.requests += 1
            if slot.waited > 0:
                stats.budget_waits += 1
                stats.budget_wait_seconds += slot.waited
        if call.info is not None:
            EventStream.budget_waited(call.info, slot.waited)
            EventStream.start_attempt(call.info)
        return slot

    def _timeout(self, call: _Call) -> tuple[aiohttp.ClientTimeout, bool]:
        """This try's timeout, and whether the call's deadline (not ``timeout``) set it."""
        total = call.options.timeout
        left = call.time_left()
        if left is None or left >= total:
            return _timeout_of(total), False
        if left <= 0:
            raise APITimeoutError(f"{call.request.describe()}: RetryPolicy.max_time has passed")
        return aiohttp.ClientTimeout(total=left), True

    async def _attempt(self, call: _Call, decoder: Decodes[T]) -> T:
        request = call.request
        slot = await self._acquire(call)
        probe = Probe()
        answered: Outcome | None = None
        try:
            # No local holds the bare token (SecretHeaders hides it in reprs): tracebacks
            # shown with their locals stay clean.
            send_headers = self._headers(
                await self.auth.token(self.session), request.body is not None
            )
            call.generation = self.auth.generation
            status, headers, body = await self._exchange(call, probe, send_headers)
            error_answer = (
                None if 200 <= status < 300 else error_for_status(status, body, request, headers)
            )
            answered = Outcome(
                status=status,
                headers=headers,
                retry_after=(
                    error_answer.retry_after if isinstance(error_answer, RateLimitError) else None
                ),
                sent=True,
            )
        finally:
            sent = answered is not None or self._sent(probe)
            if sent and request.kind == "write":
                record = SENT.get()
                if record is not None:
                    record.sent = True
            await self.budget.release(slot, answered or (_NO_ANSWER if sent else _NOT_SENT))
        self._log(request, status)
        if error_answer is not None:
            if should_retry(slot.kind, status, True):
                raise Retryable(error_answer)
            if request.kind == "write" and status >= 500:
                raise ambiguous(request, error_answer)
            raise error_answer
        return decode(request, status, headers, body, decoder)

    async def _exchange(
        self, call: _Call, probe: Probe, send_headers: Mapping[str, str]
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One try on the wire: the answer's status, headers and (capped) body, or the
        ``_no_answer`` error that says whether the try may have reached the server."""
        request = call.request
        timeout, by_deadline = self._timeout(call)
        url = self.base_url + request.path
        if request.params:
            url += "?" + query_string(request.params)
        probe.started = True
        probe_token = PROBE.set(probe)
        try:
            async with self.session.request(
                request.method,
                URL(url, encoded=True),
                data=request.body,
                headers=send_headers,
                timeout=timeout,
                # The API documents no redirect; following one could carry the token
                # or a write's body to another host.
                allow_redirects=False,
            ) as resp:
                if call.info is not None and call.info.last is not None:
                    call.info.last.answered(resp.status, resp.headers)
                body = await read_capped(resp, request, self.max_response_bytes)
                return resp.status, resp.headers, body
        except aiohttp.ClientConnectorError as exc:
            # The connection never opened: nothing reached the server.
            probe.sent = False
            error: APIConnectionError = APIConnectionError(self._say(exc, request))
            raise self._no_answer(request, error, False) from None
        except asyncio.TimeoutError:
            sent = self._sent(probe)
            if by_deadline:
                why = "RetryPolicy.max_time ran out during the try"
            elif sent:
                why = "no answer in time"
            else:
                why = "timed out before it was sent (connecting, or waiting for a connection)"
            error = APITimeoutError(f"{request.describe()}: {why}")
            raise self._no_answer(request, error, sent) from None
        except aiohttp.ClientError as exc:
            error = APIConnectionError(self._say(exc, request))
            raise self._no_answer(request, error, self._sent(probe)) from None
        finally:
            PROBE.reset(probe_token)

    def _sent(self, probe: Probe) -> bool:
        """Whether a try that got no answer may have reached the server."""
        if self._tracks_sent:
            return probe.sent
        return probe.started  # without the trace, anything past the start may have left

    @staticmethod
    def _headers(token: str, has_body: bool) -> SecretHeaders:
        headers = SecretHeaders(
            Authorization=f"Bearer {token}", Accept="application/json", **{"User-Agent": USER_AGENT}
        )
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _no_answer(self, request: Request, error: APIConnectionError, sent: bool) -> Exception:
        if should_retry(request.kind, None, sent):
            return Retryable(error)
        return ambiguous(request, error)

    def _say(self, exc: BaseException, request: Request) -> str:
        return (
            f"{request.describe()}: {redact(str(exc) or type(exc).__name__, *self.auth.secrets())}"
        )

    def _log(self, request: Request, status: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %d", request.describe(), status)
