"""One try on the wire, and what a call is: the half of the pipeline that speaks aiohttp.

``Call`` holds one logical call's state (its lane, deadline, counters, token generation).
``Wire`` sends one try and reads its answer under the cap; it says whether a try that got no
answer may have reached the server (``SentAwareRequest``), the rule ambiguous writes rest on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from urllib.parse import quote_plus

import aiohttp
from yarl import URL

from .._constants import LOGGER_NAME, USER_AGENT
from .._redact import SecretHeaders, redact
from ..budget import Lane
from ..errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    DecodeError,
)
from ..telemetry import CallInfo
from ._answers import AnswerHeaders, Body, ambiguous, read_capped
from ._auth import TokenSource
from ._request import PROBE, CallOptions, CallStats, Probe, Request, lane_of
from ._retry import Retryable, should_retry

__all__ = ["Call", "Wire", "query_string"]

log = logging.getLogger(LOGGER_NAME)


# No cache for quote_plus or ClientTimeout (both were cached once): benchmarks/pipeline.py,
# medians of 5-6 runs each (--pages 30 --rounds 4 --repeats 2), SDK / hand-written, cached ->
# uncached: client CPU asyncio 1.200 -> 1.176, uvloop 1.200 -> 1.221; wall own-process asyncio
# 1.098 -> 1.126, uvloop 1.150 -> 1.103; in-process asyncio 1.146 -> 1.292, uvloop 1.168 ->
# 1.109. Runs of the same code spread by 0.1-0.25 on one ratio (this machine is shared), so no
# ratio moved beyond noise; timeit puts the two caches at ~8 us of a ~1 ms page's client CPU.
def query_string(params: Mapping[str, str]) -> str:
    """What ``urllib.parse.urlencode(params)`` gives, for string keys and values.

    Args:
        params: the query's keys and values.

    Returns:
        The encoded query, without its ``?``.
    """
    return "&".join([f"{quote_plus(k)}={quote_plus(v)}" for k, v in params.items()])


class Call:
    """One logical call through the pipeline: its tries share a deadline and counters."""

    __slots__ = (
        "request",
        "options",
        "lane",
        "counters",
        "deadline",
        "generation",
        "refreshed",
        "info",
    )

    def __init__(
        self, request: Request, options: CallOptions, counters: tuple[CallStats, ...]
    ) -> None:
        self.request = request
        self.options = options
        self.lane: Lane = lane_of(request, options.priority)
        self.counters = counters
        max_time = options.retry.max_time
        deadline = None if max_time is None else time.monotonic() + max_time
        if options.deadline is not None and (deadline is None or options.deadline < deadline):
            deadline = options.deadline  # a call made on behalf of another keeps its deadline
        self.deadline = deadline
        self.generation = 0  # of the token the last try sent
        self.refreshed = False  # one token refresh per call
        self.info: CallInfo | None = None  # what the event stream knows of it, if it listens

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


class Wire:
    """One try on the wire; the pipeline (``Pipeline``) builds on it."""

    session: aiohttp.ClientSession
    base_url: str
    auth: TokenSource
    max_response_bytes: int
    _tracks_sent: bool

    def _timeout(self, call: Call) -> tuple[aiohttp.ClientTimeout, bool]:
        """This try's timeout, and whether the call's deadline (not ``timeout``) set it."""
        total = call.options.timeout
        left = call.time_left()
        if left is None or left >= total:
            return aiohttp.ClientTimeout(total=total), False
        if left <= 0:
            raise APITimeoutError(f"{call.request.describe()}: RetryPolicy.max_time has passed")
        return aiohttp.ClientTimeout(total=left), True

    async def _exchange(
        self, call: Call, probe: Probe, send_headers: Mapping[str, str]
    ) -> tuple[int, AnswerHeaders, Body]:
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
                return resp.status, AnswerHeaders(resp.headers), body
        except DecodeError as too_large:
            if request.kind == "write":
                raise ambiguous(request, too_large) from None  # it may have been committed
            raise
        except (RuntimeError, AssertionError, AttributeError):
            # "Session is closed"; aiohttp 3.10.x fails on its missing connector instead
            if self.session.closed:
                raise ConfigurationError(
                    f"{request.describe()}: the client was closed while this call ran"
                ) from None
            raise
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
