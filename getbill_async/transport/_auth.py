"""Bearer tokens: a static one, or OAuth2 client credentials refreshed single-flight."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping

import aiohttp
import msgspec

from .._constants import (
    DEFAULT_MAX_RESPONSE_BYTES,
    LOGGER_NAME,
    TOKEN_EXPIRY_SKEW,
    TOKEN_REFRESH_MARGIN,
    TOKEN_RETRY_LATER,
)
from .._redact import SecretForm, redact
from ..errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    GetBillError,
    RateLimitError,
)
from ._answers import AnswerHeaders, Body, error_for_status, read_capped
from ._credentials import ClientCredentials, resolve_credentials
from ._request import Request
from ._retry import Retryable, RetryPolicy, should_retry, with_retries
from ._wire import TokenAnswer

__all__ = ["OAuthTokenSource", "StaticToken", "TokenSource", "token_source"]

log = logging.getLogger(LOGGER_NAME)
#: How many of the last tokens stay secrets after a refresh (answers in flight may echo them).
_TOKENS_REMEMBERED = 16
_token_decoder = msgspec.json.Decoder(TokenAnswer)


class TokenSource:
    """Hands the pipeline a bearer token; ``refresh`` after a 401.

    ``generation`` counts the tokens fetched: an attempt notes it when it takes the token, and
    ``refresh(session, stale)`` fetches a new one only if the token of that generation is still
    the current one (another request may have refreshed it meanwhile).
    """

    can_refresh = False
    token_url: str | None = None
    generation = 0

    async def token(self, session: aiohttp.ClientSession, *, deadline: float | None = None) -> str:
        """The bearer token to send; ``deadline`` (``time.monotonic()``) bounds any fetch."""
        raise NotImplementedError

    async def refresh(
        self, session: aiohttp.ClientSession, stale: int, *, deadline: float | None = None
    ) -> str:
        """A new token if generation ``stale`` is still the current one, within ``deadline``."""
        raise NotImplementedError

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be shown."""
        return ()


class StaticToken(TokenSource):
    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, session: aiohttp.ClientSession, *, deadline: float | None = None) -> str:
        return self._token

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def __repr__(self) -> str:
        return "StaticToken([REDACTED])"


class OAuthTokenSource(TokenSource):
    """Fetches a token on first use, again shortly before it expires and once after a 401.

    However many requests need a token at once, one token request is in flight: the others
    wait on the same lock and take its result. The token request retries like a read (429,
    5xx, resets, timeouts, with the client's ``RetryPolicy``). A refresh made ahead of expiry
    that still fails leaves the current token in use while it is valid, and is tried again a
    little later: one blip of the token endpoint does not end a ten-hour job.
    """

    can_refresh = True

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        timeout: float,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if credentials.token_url is None:
            raise ConfigurationError("token_url: not settled (see resolve_credentials)")
        self.credentials = credentials
        self.max_response_bytes = max_response_bytes
        self.token_url: str = credentials.token_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._token: str | None = None
        # The last tokens handed out: a request sent with one can be answered after another
        # request refreshed it, and the answer can echo the token it carried.
        self._issued: deque[str] = deque(maxlen=_TOKENS_REMEMBERED)
        self._refresh_at = 0.0  # when to fetch the next token ahead of expiry
        self._valid_until = 0.0  # when this one stops being usable at all
        self._lock = asyncio.Lock()
        self.fetches = 0

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.credentials.client_secret, *self._issued) if s)

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._refresh_at

    async def token(self, session: aiohttp.ClientSession, *, deadline: float | None = None) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                await self._renew(session, deadline, keep_valid=True)
            assert self._token is not None
            return self._token

    async def refresh(
        self, session: aiohttp.ClientSession, stale: int, *, deadline: float | None = None
    ) -> str:
        async with self._lock:
            if self.generation == stale or self._token is None:
                # The server refused this token: it is no use even while "valid".
                await self._renew(session, deadline, keep_valid=False)
            assert self._token is not None
            return self._token

    async def _renew(
        self, session: aiohttp.ClientSession, deadline: float | None, *, keep_valid: bool
    ) -> None:
        try:
            await self._fetch_with_retries(session, deadline)
        except GetBillError as exc:
            now = self._clock()
            if not (keep_valid and self._token is not None and now < self._valid_until):
                raise
            left = self._valid_until - now
            later = min(TOKEN_RETRY_LATER, left / 2)
            self._refresh_at = now + later
            log.warning(
                "token refresh failed (%s); the current token stays valid for %.0fs: "
                "using it and trying again in %.0fs",
                exc,
                left,
                later,
            )

    async def _fetch_with_retries(
        self, session: aiohttp.ClientSession, deadline: float | None
    ) -> None:
        """The token request, retried like a read, within the asking call's deadline (and
        the policy's ``max_time``, whichever ends first)."""
        max_time = self._retry.max_time
        own = None if max_time is None else time.monotonic() + max_time
        if deadline is None or (own is not None and own < deadline):
            deadline = own
        await with_retries(
            self._retry,
            functools.partial(self._fetch, session, deadline),
            deadline=deadline,
            on_retry=self._on_retry,
        )

    @staticmethod
    def _on_retry(tries: int, wait: float, error: GetBillError) -> None:
        log.debug("retrying the token request (try %d) in %.3fs after: %s", tries + 1, wait, error)

    async def _fetch(self, session: aiohttp.ClientSession, deadline: float | None) -> None:
        creds = self.credentials
        form = SecretForm(
            grant_type="client_credentials",
            client_id=creds.client_id,
            client_secret=creds.client_secret,
        )
        if creds.scopes:
            form["scope"] = " ".join(creds.scopes)
        started = self._clock()
        self.fetches += 1
        request = Request("POST", self.token_url)
        log.debug("fetching an OAuth token for client %s", creds.client_id)
        status, headers, body = await self._exchange(session, request, form, deadline)
        if status != 200:
            await self._refused(status, body, headers, request)
        try:
            answer = _token_decoder.decode(body.data)
        except (msgspec.DecodeError, RecursionError):
            # A cut or garbled answer: nothing was granted that we know of; ask again.
            raise Retryable(
                DecodeError(
                    f"{request.describe()}: the answer is not the documented JSON", status=status
                )
            ) from None
        # The token stays in ``answer`` (whose repr hides it), never in a local of its own: a
        # traceback formatted with its locals must not show even a token refused here.
        if not _fits_a_header(answer.access_token):
            raise AuthenticationError(
                "the token endpoint answered a token with whitespace or control characters "
                "(a line break?), which no Authorization header can carry",
                status=status,
                method="POST",
                path=self.token_url,
            )
        lifetime = answer.expires_in if answer.expires_in is not None else 3600.0
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
        self._token = answer.access_token
        self._issued.append(answer.access_token)
        self._refresh_at = started + lifetime - margin
        self._valid_until = started + lifetime - min(TOKEN_EXPIRY_SKEW, lifetime / 20)
        self.generation += 1

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: Request,
        form: SecretForm,
        deadline: float | None,
    ) -> tuple[int, Mapping[str, str], Body]:
        """One token request on the wire: status, headers and the body read under the cap."""
        where = request.describe()
        timeout = self._timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise APITimeoutError(f"{where}: RetryPolicy.max_time has passed")
            if timeout.total is None or left < timeout.total:
                timeout = aiohttp.ClientTimeout(total=left)
        try:
            # Not redirected: a 307/308 would carry the client secret to wherever it points.
            async with session.post(
                request.path, data=form, timeout=timeout, allow_redirects=False
            ) as resp:
                body = await read_capped(resp, request, self.max_response_bytes)
                return resp.status, AnswerHeaders(resp.headers), body
        except asyncio.TimeoutError:
            raise Retryable(APITimeoutError(f"{where}: no answer in time")) from None
        except RuntimeError:
            if session.closed:
                raise ConfigurationError(f"{where}: the client was closed meanwhile") from None
            raise
        except aiohttp.ClientError as exc:
            text = redact(str(exc) or type(exc).__name__, *self.secrets())
            raise Retryable(APIConnectionError(f"{where}: {text}")) from None

    async def _refused(
        self, status: int, body: Body, headers: Mapping[str, str], request: Request
    ) -> None:
        """Raise what a non-200 token answer means: retry what can pass (as for a read),
        refuse the rest. The same status map as the API's answers, redacted the same way."""
        error = error_for_status(
            status, body, request, headers, self.secrets(), token_endpoint=True
        )
        if not should_retry("read", status, True):
            raise error
        if isinstance(error, RateLimitError) and error.retry_after:
            # No budget covers the token endpoint: its pause is honoured here.
            await asyncio.sleep(min(error.retry_after, self._retry.cap))
        raise Retryable(error)

    def __repr__(self) -> str:
        return f"OAuthTokenSource({self.credentials!r})"


def _fits_a_header(token: str) -> bool:
    """Whether ``token`` can go in an Authorization header: no surrounding whitespace, no
    control character."""
    return token == token.strip() and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in token)


def token_source(
    token: str | ClientCredentials | None,
    *,
    base_url: str | None = None,
    timeout: float,
    retry: RetryPolicy | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> TokenSource:
    """The token source for ``GetBillClient(token=...)``: the credentials settled by
    ``resolve_credentials`` (what is given, then the environment).

    Args:
        token: a bearer string, ``ClientCredentials``, or None (the environment's).
        base_url: the API's base URL (a token URL not given is ``/token`` on its host).
        timeout: seconds per token request.
        retry: how token requests are retried.
        max_response_bytes: the largest token answer read.

    Returns:
        The token source.

    Raises:
        ConfigurationError: no usable credentials.
    """
    resolved = resolve_credentials(token, base_url=base_url)
    if isinstance(resolved, str):
        return StaticToken(resolved)
    return OAuthTokenSource(
        resolved, timeout=timeout, retry=retry, max_response_bytes=max_response_bytes
    )
