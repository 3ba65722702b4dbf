"""The one request path: budget → auth → send → classify → retry → decode.

Resources say *what* to ask (method, path, params, body, decoder); only this module knows
*how*. Retry decisions are small pure functions, so they are easy to read and to test.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote_plus

import aiohttp
import backoff
import msgspec
from yarl import URL

from ._auth import TokenSource
from ._budget import Budget, Kind, Outcome
from ._constants import LOGGER_NAME, USER_AGENT
from ._events import CallInfo, EventStream
from ._redact import SecretHeaders, redact, redact_url
from ._retry import RetryPolicy, retry_after_seconds, should_retry
from .errors import (
    AmbiguousWriteError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    DecodeError,
    GetBillError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .models import _ErrorEnvelope

__all__ = ["CallStats", "Pipeline", "RetryPolicy"]

T = TypeVar("T")
log = logging.getLogger(LOGGER_NAME)
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope)
# Outcomes without an answer are the same every time: shared, not built per request.
_NOT_SENT = Outcome(sent=False)
_NO_ANSWER = Outcome(sent=True)
# Query keys and values repeat (page numbers, limits, statuses): quote each once.
_quote = functools.lru_cache(maxsize=1024)(quote_plus)


def query_string(params: Mapping[str, str]) -> str:
    """What ``urllib.parse.urlencode(params)`` gives, for string keys and values."""
    return "&".join([f"{_quote(k)}={_quote(v)}" for k, v in params.items()])


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


class _Retry(Exception):
    """Internal: a failure worth another try; ``error`` is what the caller sees at the end."""

    def __init__(self, error: GetBillError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Request:
    """What a resource asks for. ``fields`` (writes) travel into ``AmbiguousWriteError``."""

    method: str
    path: str  # already escaped, relative to base_url
    params: Mapping[str, str] | None = None
    # Out of the repr: a body may hold a presigned URL, and requests sit in tracebacks.
    body: bytes | None = field(default=None, repr=False)
    fields: Mapping[str, Any] | None = field(default=None, repr=False)
    # The path with placeholders ("/followups/{id}"): spans and metrics are named by it.
    template: str | None = None

    @property
    def kind(self) -> Kind:
        return "read" if self.method == "GET" else "write"

    def describe(self) -> str:
        page = self.params.get("page") if self.params else None
        return f"{self.method} {self.path}" + (f" page {page}" if page else "")


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
    """Sends every request of one client. Not public: resources call ``request``."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: TokenSource,
        budget: Budget,
        retry: RetryPolicy,
        timeout: float,
        max_response_bytes: int,
        stats: CallStats | None = None,
        events: EventStream | None = None,
    ) -> None:
        self.session = session
        self.events = events
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.budget = budget
        self.retry = retry
        self.max_response_bytes = max_response_bytes
        self.stats = stats if stats is not None else CallStats()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._header_cache: tuple[str, dict[str, str], dict[str, str]] | None = None

    async def _with_retries(
        self,
        request: Request,
        decoder: msgspec.json.Decoder[T],
        counters: tuple[CallStats, ...],
        call: CallInfo | None,
    ) -> T:
        """The first try bare, then backoff's loop only if it failed.

        Nearly every call succeeds at once, and backoff's bookkeeping (its state, handler
        lists and async generator) costs more per call than the rest of the pipeline's own
        work; it is set up on the first failure instead. That failure is replayed as the
        loop's first try and ``max_time`` is shortened by the time it took, so tries, waits
        and bounds are what decorating ``_attempt`` itself would give.
        """
        started = time.monotonic()
        try:
            return await self._attempt(request, decoder, counters, call)
        except _Retry as failed:
            first = failed
        return await self._retry_loop(first, started)(request, decoder, counters, call)

    def _retry_loop(
        self, first: _Retry, started: float
    ) -> Callable[
        [Request, msgspec.json.Decoder[T], tuple[CallStats, ...], CallInfo | None], Awaitable[T]
    ]:
        pending = [first]

        async def attempt(
            request: Request,
            decoder: msgspec.json.Decoder[T],
            counters: tuple[CallStats, ...],
            call: CallInfo | None,
        ) -> T:
            if pending:
                raise pending.pop()
            return await self._attempt(request, decoder, counters, call)

        policy = self.retry
        max_time = policy.max_time
        if max_time is not None:
            max_time -= time.monotonic() - started
        return backoff.on_exception(
            backoff.expo,
            _Retry,
            max_tries=policy.max_tries,
            max_time=max_time,
            jitter=backoff.full_jitter,
            on_backoff=self._on_backoff,
            logger=None,
            factor=policy.base,
            max_value=policy.cap,
        )(attempt)

    async def request(
        self, request: Request, decoder: msgspec.json.Decoder[T], stats: CallStats | None = None
    ) -> T:
        """Send ``request`` with budget, auth and retries; the decoded answer."""
        counters = (self.stats,) if stats is None else (self.stats, stats)
        events = self.events
        if events is None:
            return await self._call(request, decoder, counters, None)
        call = events.start_call(
            request.method, request.template, request.path, request.kind, "interactive"
        )
        if call is None:
            return await self._call(request, decoder, counters, None)
        try:
            answer = await self._call(request, decoder, counters, call)
        except BaseException as failed:
            if isinstance(failed, AmbiguousWriteError):
                events.ambiguous_write(call, failed)
            events.end_call(call, failed)
            raise
        events.end_call(call, None)
        return answer

    async def _call(
        self,
        request: Request,
        decoder: msgspec.json.Decoder[T],
        counters: tuple[CallStats, ...],
        call: CallInfo | None,
    ) -> T:
        try:
            try:
                return await self._with_retries(request, decoder, counters, call)
            except AuthenticationError as exc:
                if not self.auth.can_refresh or exc.path == self.auth.token_url:
                    raise  # a static token, or the token endpoint itself said no
                # One refresh per call: a token revoked or expired early gets a second chance.
                await self.auth.refresh(self.session, self._current_token())
                return await self._with_retries(request, decoder, counters, call)
        except _Retry as gave_up:
            raise gave_up.error from None

    def _current_token(self) -> str:
        return self._header_cache[0] if self._header_cache else ""

    def _headers(self, token: str, has_body: bool) -> dict[str, str]:
        cache = self._header_cache
        if cache is None or cache[0] != token:
            base = SecretHeaders(Authorization=f"Bearer {token}", Accept="application/json")
            base["User-Agent"] = USER_AGENT
            with_body = SecretHeaders(base, **{"Content-Type": "application/json"})
            cache = (token, base, with_body)
            self._header_cache = cache
        return cache[2] if has_body else cache[1]

    def _on_backoff(self, details: Any) -> None:
        for stats in details["args"][2]:
            stats.retries += 1
        request: Request = details["args"][0]
        error = details.get("exception")
        call: CallInfo | None = details["args"][3]
        if call is not None and call.last is not None:
            EventStream.retrying(call.last, details["wait"])
        log.debug(
            "retrying %s (try %d) in %.3fs after: %s",
            request.describe(),
            details["tries"] + 1,
            details["wait"],
            error.error if isinstance(error, _Retry) else error,
        )

    async def _attempt(
        self,
        request: Request,
        decoder: msgspec.json.Decoder[T],
        counters: tuple[CallStats, ...],
        call: CallInfo | None,
    ) -> T:
        kind = request.kind
        slot = await self.budget.acquire(kind)
        for stats in counters:
            stats.requests += 1
            if slot.waited > 0:
                stats.budget_waits += 1
                stats.budget_wait_seconds += slot.waited
        outcome = _NOT_SENT
        attempt = None
        if call is not None:
            EventStream.budget_waited(call, slot.waited)
            attempt = EventStream.start_attempt(call)
        status: int | None = None
        headers: Mapping[str, str] | None = None
        try:
            # No local holds the token: tracebacks shown with their locals stay clean.
            send_headers = self._headers(
                await self.auth.token(self.session), request.body is not None
            )
            url = self.base_url + request.path
            if request.params:
                url += "?" + query_string(request.params)
            outcome = _NO_ANSWER
            try:
                async with self.session.request(
                    request.method,
                    URL(url, encoded=True),
                    data=request.body,
                    headers=send_headers,
                    timeout=self._timeout,
                    # The API documents no redirect; following one could carry the token
                    # or a write's body to another host.
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    headers = resp.headers
                    body = await self._read(resp, request)
            except aiohttp.ClientConnectorError as exc:
                # The connection never opened: nothing reached the server.
                outcome = _NOT_SENT
                raise self._no_answer(
                    request, APIConnectionError(self._say(exc, request)), False
                ) from None
            except asyncio.TimeoutError:
                raise self._no_answer(
                    request, APITimeoutError(f"{request.describe()}: no answer in time"), True
                ) from None
            except aiohttp.ClientError as exc:
                raise self._no_answer(
                    request, APIConnectionError(self._say(exc, request)), True
                ) from None
            error = (
                None if 200 <= status < 300 else error_for_status(status, body, request, headers)
            )
            outcome = Outcome(
                status=status,
                headers=headers,
                retry_after=error.retry_after if isinstance(error, RateLimitError) else None,
                sent=True,
            )
        except BaseException as failed:
            if attempt is not None:
                cause = failed.error if isinstance(failed, _Retry) else failed
                EventStream.end_attempt(attempt, status, cause, headers)
            raise
        finally:
            await self.budget.release(slot, outcome)
        if attempt is not None:
            EventStream.end_attempt(attempt, status, error, headers)
        if error is not None:
            self._log(request, status)
            if should_retry(kind, status, True):
                raise _Retry(error)
            if kind == "write" and status >= 500:
                raise self._ambiguous(request, error)
            raise error
        self._log(request, status)
        return self._decode(request, status, headers, body, decoder)

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
                raise _Retry(exc) from None
            raise self._ambiguous(request, exc) from None

    async def _read(self, resp: aiohttp.ClientResponse, request: Request) -> bytes:
        cap = self.max_response_bytes
        length = resp.content_length
        if length is not None and length <= cap:
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        if length is None:
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > cap:
                    break
                chunks.append(chunk)
        if length is not None or size > cap:
            raise DecodeError(
                f"{request.describe()}: answer larger than max_response_bytes={cap}",
                status=resp.status,
            )
        return b"".join(chunks)

    def _no_answer(self, request: Request, error: APIConnectionError, sent: bool) -> Exception:
        if should_retry(request.kind, None, sent):
            return _Retry(error)
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
