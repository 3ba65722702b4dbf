"""The one request path: budget → auth → send → classify → retry → decode.

Resources say *what* to ask (method, path, params, body, decoder, lane); only this module knows
*how*. Retry decisions are small pure functions (``_retry``), and every call runs the same
backoff loop, the token request included.

Two rules that long jobs rely on:

- **Sent means sent.** aiohttp's ``on_request_headers_sent`` trace tells whether a request left.
  One that never did (a connect timeout, a wait for a pooled connection) holds no budget slot
  and is not an ambiguous write: it is simply tried again.
- **A deadline is a deadline.** ``RetryPolicy.max_time`` bounds the whole call: budget waits,
  tries and the pauses between them. A budget wait that would pass it is cut off at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import msgspec
from yarl import URL

from ._auth import TokenSource
from ._budget import Budget, Kind, Lane, Outcome, Slot
from ._constants import LOGGER_NAME, USER_AGENT
from ._events import CallInfo, EventStream
from ._redact import SecretHeaders, redact, redact_url
from ._retry import Retryable, RetryPolicy, retry_after_seconds, should_retry, with_retries
from .errors import (
    AmbiguousWriteError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    DecodeError,
    GetBillError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .models import _ErrorEnvelope

__all__ = ["CallOptions", "CallStats", "Pipeline", "Request", "RetryPolicy", "SentRecord"]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)
_NOT_SENT = Outcome(sent=False)
_NO_ANSWER = Outcome(sent=True)
_IDENTITY = ("", "identity")


@dataclass
class CallStats:
    """Counters of requests sent, retries and budget waits (per walk, or for a whole client)."""

    requests: int = 0
    retries: int = 0
    budget_waits: int = 0
    budget_wait_seconds: float = 0.0

    def add(self, other: CallStats) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.budget_waits += other.budget_waits
        self.budget_wait_seconds += other.budget_wait_seconds


@dataclass(frozen=True)
class CallOptions:
    """How one call is made: ``client.with_options(...)`` gives a view with other ones.

    ``max_wait``: the longest budget wait (``None``: the budget's own ``RateLimit.max_wait``;
    ``math.inf``: no cap). ``priority``: the lane (``None``: the call's own, bulk for walks,
    exports and ``create_many``, interactive for single calls).
    """

    timeout: float
    retry: RetryPolicy
    max_wait: float | None = None
    priority: Lane | None = None


@dataclass(frozen=True)
class Request:
    """What a resource asks for. ``fields`` (writes) travel into ``AmbiguousWriteError``."""

    method: str
    path: str  # already escaped, relative to base_url
    params: Mapping[str, str] | None = None
    # Out of the repr: a body may hold a presigned URL, and requests sit in tracebacks.
    body: bytes | None = field(default=None, repr=False)
    fields: Mapping[str, Any] | None = field(default=None, repr=False)
    lane: Lane = "interactive"
    # The path with placeholders ("/followups/{id}"): spans and metrics are named by it.
    template: str | None = None

    @property
    def kind(self) -> Kind:
        return "read" if self.method == "GET" else "write"

    def describe(self) -> str:
        page = self.params.get("page") if self.params else None
        return f"{self.method} {self.path}" + (f" page {page}" if page else "")


class SentRecord:
    """Set as ``SENT`` around a write to learn whether any of its tries left this process.

    ``create_many`` uses it: a create cancelled mid-flight is reported as ambiguous when it
    was sent, and as not sent (safe to send again) otherwise.
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


SENT: ContextVar[SentRecord | None] = ContextVar("getbill_sent", default=None)


class _Probe:
    """One try: did it start sending, and did it get as far as writing to a connection."""

    __slots__ = ("started", "sent")

    def __init__(self) -> None:
        self.started = False
        self.sent = False


_PROBE: ContextVar[_Probe | None] = ContextVar("getbill_probe", default=None)


class SentAwareRequest(aiohttp.ClientRequest):
    """aiohttp's request, noting when it starts writing to a connection it was given.

    Until then (connecting, waiting for a pooled connection) nothing can have reached the
    server. aiohttp's ``on_request_headers_sent`` trace says the same a little later, but a
    trace costs a dozen awaits on every request; this costs a context-variable read.
    """

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        probe = _PROBE.get()
        if probe is not None:
            probe.sent = True
        return await super().send(conn)


def _track_sent(session: aiohttp.ClientSession) -> bool:
    """Make ``session`` note sent requests; False when that cannot be known."""
    request_class = getattr(session, "_request_class", None)
    if isinstance(request_class, type) and issubclass(request_class, SentAwareRequest):
        return True
    if request_class is aiohttp.ClientRequest:
        # A session made by the caller, with aiohttp's own request class: use ours.
        session._request_class = SentAwareRequest
        return True
    return False  # a custom request class: count every started try as sent (the safe side)


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


def error_for_status(
    status: int, body: bytes, request: Request, headers: Mapping[str, str]
) -> APIError:
    """The exception for an error answer, from the documented envelope where there is one."""
    if 300 <= status < 400:
        location = redact_url(headers.get("Location", "") or "nowhere")
        message = (
            f"redirected to {location}: redirects are not followed, so that credentials never "
            "leave base_url's host; check base_url"
        )
        return APIError(message, status=status, method=request.method, path=request.path)
    try:
        env = _error_decoder.decode(body)
        message, code, details = env.message or f"HTTP {status}", env.code, env.details
    except (msgspec.DecodeError, RecursionError):
        message = f"HTTP {status}, body starts {redact_url(repr(body[:80]))}"
        code, details = None, None
    kw: dict[str, Any] = dict(
        status=status, code=code, details=details, method=request.method, path=request.path
    )
    if status == 401:
        return AuthenticationError(message, **kw)
    if status == 403:
        return PermissionDeniedError(message, **kw)
    if status == 404:
        return NotFoundError(message, **kw)
    if status in (400, 422):
        return ValidationError(message, **kw)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after_seconds(details, headers), **kw)
    if status >= 500:
        return ServerError(message, **kw)
    return APIError(message, **kw)


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
        self._tracks_sent = _track_sent(session)
        rate_limit = getattr(budget, "rate_limit", None)
        self._budget_max_wait: float | None = getattr(rate_limit, "max_wait", None)

    async def request(
        self,
        request: Request,
        decoder: msgspec.json.Decoder[T],
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

    async def _send(self, call: _Call, decoder: msgspec.json.Decoder[T]) -> T:
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

    async def _tries(self, call: _Call, decoder: msgspec.json.Decoder[T]) -> T:
        return await with_retries(
            call.options.retry,
            functools.partial(
                self._attempt if call.info is None else self._observed, call, decoder
            ),
            deadline=call.deadline,
            on_retry=functools.partial(self._on_retry, call),
        )

    async def _observed(self, call: _Call, decoder: msgspec.json.Decoder[T]) -> T:
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
                f"{request.describe()}: RetryPolicy.max_time would pass while waiting "
                f"{exc.retry_in:.1f}s for a {exc.kind} budget slot"
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
            return aiohttp.ClientTimeout(total=total), False
        if left <= 0:
            raise APITimeoutError(f"{call.request.describe()}: RetryPolicy.max_time has passed")
        return aiohttp.ClientTimeout(total=left), True

    async def _attempt(self, call: _Call, decoder: msgspec.json.Decoder[T]) -> T:
        request = call.request
        slot = await self._acquire(call)
        probe = _Probe()
        answered: Outcome | None = None
        try:
            timeout, by_deadline = self._timeout(call)
            # No local holds the bare token (SecretHeaders hides it in reprs): tracebacks
            # shown with their locals stay clean.
            send_headers = self._headers(
                await self.auth.token(self.session), request.body is not None
            )
            call.generation = self.auth.generation
            url = self.base_url + request.path
            if request.params:
                url += "?" + urlencode(request.params)
            probe.started = True
            probe_token = _PROBE.set(probe)
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
                    status = resp.status
                    headers = resp.headers
                    if call.info is not None and call.info.last is not None:
                        call.info.last.answered(status, headers)
                    body = await self._read(resp, request)
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
                _PROBE.reset(probe_token)
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
                raise self._ambiguous(request, error_answer)
            raise error_answer
        return self._decode(request, status, headers, body, decoder)

    def _sent(self, probe: _Probe) -> bool:
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

    def _decode(
        self,
        request: Request,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        decoder: msgspec.json.Decoder[T],
    ) -> T:
        content_type = headers.get("Content-Type", "")
        try:
            if "json" not in content_type:
                raise DecodeError(
                    f"{request.describe()}: expected JSON, got {content_type or 'no content type'}",
                    status=status,
                    body=body,
                )
            try:
                return decoder.decode(body)
            except (msgspec.DecodeError, RecursionError) as exc:
                raise DecodeError(
                    f"{request.describe()}: answer is not the documented JSON ({exc})",
                    status=status,
                    body=body,
                ) from None
        except DecodeError as exc:
            if request.kind == "read":
                raise Retryable(exc) from None
            raise self._ambiguous(request, exc) from None

    async def _read(self, resp: aiohttp.ClientResponse, request: Request) -> bytes:
        """The body, decoded (gunzipped...), refused past ``max_response_bytes`` *decoded*:
        a small compressed answer can inflate a thousandfold."""
        cap = self.max_response_bytes
        length = resp.content_length
        if length is not None and length > cap:
            raise self._too_large(resp, request)
        if length is not None and resp.headers.get("Content-Encoding", "").lower() in _IDENTITY:
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > cap:
                raise self._too_large(resp, request)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, resp: aiohttp.ClientResponse, request: Request) -> DecodeError:
        return DecodeError(
            f"{request.describe()}: answer larger than max_response_bytes="
            f"{self.max_response_bytes} (decoded)",
            status=resp.status,
        )

    def _no_answer(self, request: Request, error: APIConnectionError, sent: bool) -> Exception:
        if should_retry(request.kind, None, sent):
            return Retryable(error)
        return self._ambiguous(request, error)

    def _ambiguous(self, request: Request, cause: GetBillError) -> AmbiguousWriteError:
        return AmbiguousWriteError(
            str(cause),
            method=request.method,
            path=request.path,
            fields=request.fields or {},
            cause=cause,
        )

    def _say(self, exc: BaseException, request: Request) -> str:
        return (
            f"{request.describe()}: {redact(str(exc) or type(exc).__name__, *self.auth.secrets())}"
        )

    def _log(self, request: Request, status: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %d", request.describe(), status)
