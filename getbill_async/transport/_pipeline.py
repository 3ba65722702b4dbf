"""The one request path: budget → auth → send → classify → retry → decode.

Resources say *what* to ask (method, path, params, body, decoder, intent); only this module
knows *how*. Retry decisions are small pure functions (``_retry``). A call runs one loop,
named by concern, one frame each:

    request                      the call's events
    _send_handling_retries       the loop: tries, backoff pauses, reconcile lookups
    _send_handling_auth          one try, and once more after a token refresh on a 401
    _attempt / _observed         budget slot, token, the exchange, the slot's release
    _exchange                    one try on the wire

Three rules that long jobs rely on:

- **Sent means sent.** The session's request class (``SentAwareRequest``) notes when a request
  starts writing to a connection. One that never did (a connect timeout, a wait for a pooled
  connection) holds no budget slot and is not an ambiguous write: it is simply tried again.
- **A deadline is a deadline.** ``RetryPolicy.max_time`` (or a view's ``deadline``) bounds the
  whole call: budget waits, tries, the pauses between them, the token refresh and the reconcile
  lookups (they run with the call's deadline, not a fresh one). A budget wait that would pass
  it is cut off at once.
- **A write without a usable 2xx is ambiguous** (too big, undecodable, cut, a redirect, a 5xx,
  no answer after sending): reconciled by the request's ``reconcile`` when it has one, else
  ``AmbiguousWriteError``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar, cast

import aiohttp

from .._constants import LOGGER_NAME
from ..budget import Budget, Outcome, Slot
from ..errors import (
    AmbiguousWriteError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    GetBillError,
    RateLimitError,
)
from ..telemetry import EventStream
from ._answers import (
    Decodes,
    decode,
    error_for_status,
    unusable_for_write,
)
from ._auth import TokenSource
from ._exchange import Call, Wire
from ._request import (
    SENT,
    CallOptions,
    CallStats,
    Probe,
    Request,
    quiet_responses,
    track_sent,
)
from ._retry import Backoff, Retryable, should_retry

__all__ = ["Pipeline"]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)
_NOT_SENT = Outcome(sent=False)
_NO_ANSWER = Outcome(sent=True)
_ABSENT = object()  # a reconcile lookup found nothing: the write did not happen


class Pipeline(Wire):
    """Sends every request of one client. Not public: resources call ``client.send``."""

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
        quiet_responses(session)

    async def request(
        self,
        request: Request,
        decoder: Decodes[T],
        stats: CallStats | None = None,
        options: CallOptions | None = None,
    ) -> T:
        """Send ``request`` with budget, auth and retries; the decoded answer.

        Args:
            request: what to ask.
            decoder: turns the answer's bytes into its type.
            stats: counters to add this call's requests, retries and waits to.
            options: the view's call options (the client's by default).

        Returns:
            The decoded answer (or, for a reconciled write, what the lookup found).
        """
        counters = (self.stats,) if stats is None else (self.stats, stats)
        call = Call(request, options or self.options, counters)
        events = self.events
        info = None
        if events is not None:
            info = call.info = events.start_call(
                request.method, request.template, request.path, request.kind, call.lane
            )
        if info is None:
            return await self._send_handling_retries(call, decoder)
        try:
            answer = await self._send_handling_retries(call, decoder)
        except BaseException as failed:
            EventStream.end_call(info, failed)
            raise
        EventStream.end_call(info, None)
        return answer

    async def _send_handling_retries(self, call: Call, decoder: Decodes[T]) -> T:
        """The call's one loop: a try; after a retryable failure a backoff pause; after an
        ambiguous write a lookup (``Request.reconcile``) and, if it did not happen, a resend.
        Tries, pauses and lookups all count against the same ``max_tries`` and deadline."""
        policy = call.options.retry
        pauses = Backoff(policy)
        tries = 0
        while True:
            tries += 1
            try:
                return await self._send_handling_auth(call, decoder)
            except Retryable as failed:
                left = call.time_left()
                if tries >= policy.max_tries or (left is not None and left <= 0):
                    raise failed.error from None
                wait = pauses.pause(left)
                self._on_retry(call, tries, wait, failed.error)
            except AmbiguousWriteError as unknown:
                if call.info is not None:
                    EventStream.ambiguous_write(call.info, unknown)
                found = await self._reconcile(call, unknown)
                if found is not _ABSENT:
                    return cast(T, found)
                left = call.time_left()
                if tries >= policy.max_tries or (left is not None and left <= 0):
                    raise
                log.debug(
                    "%s: not found after an ambiguous try, sending again", call.request.describe()
                )
                continue
            await asyncio.sleep(wait)

    async def _reconcile(self, call: Call, unknown: AmbiguousWriteError) -> Any:
        """What the request's lookup found, ``_ABSENT`` when the write did not happen; raises
        ``unknown`` when the write cannot be looked up (or the policy says not to)."""
        lookup = call.request.reconcile
        if lookup is None or not call.options.retry.reconcile:
            raise unknown
        log.debug("reconciling an ambiguous %s", call.request.describe())
        try:
            found = await lookup(call.deadline)
        except GetBillError as lookup_failed:
            raise AmbiguousWriteError(
                f"{unknown.cause}; looking it up failed too ({lookup_failed})",
                method=unknown.method,
                path=unknown.path,
                fields=unknown.fields,
                cause=unknown.cause,
            ) from lookup_failed
        if found is None:
            return _ABSENT
        log.debug("%s had happened: found by its lookup", call.request.describe())
        return found

    async def _send_handling_auth(self, call: Call, decoder: Decodes[T]) -> T:
        """One try, and once more at once after a token refresh when the API said 401 (once
        per call: a token revoked or expired early gets a second chance)."""
        send = self._attempt if call.info is None else self._observed
        try:
            return await send(call, decoder)
        except AuthenticationError as exc:
            auth = self.auth
            if call.refreshed or not auth.can_refresh or exc.path == auth.token_url:
                raise  # a static token, a second 401, or the token endpoint itself said no
            call.refreshed = True
            # Refreshed only if the token this call sent is still the current one.
            await auth.refresh(self.session, call.generation, deadline=call.deadline)
            return await send(call, decoder)

    async def _observed(self, call: Call, decoder: Decodes[T]) -> T:
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

    def _on_retry(self, call: Call, tries: int, wait: float, error: GetBillError) -> None:
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

    async def _acquire(self, call: Call) -> Slot:
        """A budget slot for this try, waiting no longer than the call's deadline allows."""
        request = call.request
        max_wait = call.options.max_wait
        left = call.time_left()
        cut_by_deadline = left is not None and left < max_wait
        if cut_by_deadline:
            assert left is not None
            max_wait = max(0.0, left)
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

    async def _attempt(self, call: Call, decoder: Decodes[T]) -> T:
        request = call.request
        slot = await self._acquire(call)
        probe = Probe()
        answered: Outcome | None = None
        try:
            # No local holds the bare token (SecretHeaders hides it in reprs): tracebacks
            # shown with their locals stay clean.
            send_headers = self._headers(
                await self.auth.token(self.session, deadline=call.deadline),
                request.body is not None,
            )
            call.generation = self.auth.generation
            status, headers, body = await self._exchange(call, probe, send_headers)
            error_answer = (
                None
                if 200 <= status < 300
                else error_for_status(status, body, request, headers, self.auth.secrets())
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
                record = request.sent or SENT.get()
                if record is not None:
                    record.sent = True
            await self.budget.release(slot, answered or (_NO_ANSWER if sent else _NOT_SENT))
        self._log(request, status)
        if error_answer is not None:
            if should_retry(slot.kind, status, True):
                raise Retryable(error_answer)
            if request.kind == "write":
                raise unusable_for_write(request, error_answer) or error_answer
            raise error_answer
        return decode(request, status, headers, body, decoder, self.auth.secrets)
