"""Bearer tokens: a static one, or OAuth2 client credentials refreshed single-flight."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from .._constants import (
    DEFAULT_SCOPES,
    DEFAULT_TOKEN_URL,
    LOGGER_NAME,
    TOKEN_EXPIRY_SKEW,
    TOKEN_REFRESH_MARGIN,
    TOKEN_RETRY_LATER,
)
from .._redact import REDACTED, SecretForm, redact, redact_url
from ..errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    GetBillError,
    RateLimitError,
    ServerError,
)
from ._retry import RETRYABLE_STATUSES, Retryable, RetryPolicy, retry_after_seconds, with_retries
from ._wire import TokenAnswer

__all__ = ["ClientCredentials"]

log = logging.getLogger(LOGGER_NAME)
_token_decoder = msgspec.json.Decoder(TokenAnswer)


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth2 client credentials; the client fetches and refreshes tokens with them.

    The secret never shows in a repr or an error message.
    """

    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    token_url: str = DEFAULT_TOKEN_URL

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(client_id={self.client_id!r}, client_secret={REDACTED!r}, "
            f"scopes={self.scopes!r}, token_url={self.token_url!r})"
        )


class TokenSource:
    """Hands the pipeline a bearer token; ``refresh`` after a 401.

    ``generation`` counts the tokens fetched: an attempt notes it when it takes the token, and
    ``refresh(session, stale)`` fetches a new one only if the token of that generation is still
    the current one (another request may have refreshed it meanwhile).
    """

    can_refresh = False
    token_url: str | None = None
    generation = 0

    async def token(self, session: aiohttp.ClientSession) -> str:
        raise NotImplementedError

    async def refresh(self, session: aiohttp.ClientSession, stale: int) -> str:
        raise NotImplementedError

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be shown."""
        return ()


class StaticToken(TokenSource):
    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, session: aiohttp.ClientSession) -> str:
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
    ) -> None:
        self.credentials = credentials
        self.token_url = credentials.token_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0  # when to fetch the next token ahead of expiry
        self._valid_until = 0.0  # when this one stops being usable at all
        self._lock = asyncio.Lock()
        self.fetches = 0

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.credentials.client_secret, self._token) if s)

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._refresh_at

    async def token(self, session: aiohttp.ClientSession) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                await self._renew(session, keep_valid=True)
            assert self._token is not None
            return self._token

    async def refresh(self, session: aiohttp.ClientSession, stale: int) -> str:
        async with self._lock:
            if self.generation == stale or self._token is None:
                # The server refused this token: it is no use even while "valid".
                await self._renew(session, keep_valid=False)
            assert self._token is not None
            return self._token

    async def _renew(self, session: aiohttp.ClientSession, *, keep_valid: bool) -> None:
        try:
            await self._fetch_with_retries(session)
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

    async def _fetch_with_retries(self, session: aiohttp.ClientSession) -> None:
        max_time = self._retry.max_time
        deadline = None if max_time is None else time.monotonic() + max_time
        await with_retries(
            self._retry,
            functools.partial(self._fetch, session),
            deadline=deadline,
            on_retry=self._on_retry,
        )

    @staticmethod
    def _on_retry(tries: int, wait: float, error: GetBillError) -> None:
        log.debug("retrying the token request (try %d) in %.3fs after: %s", tries + 1, wait, error)

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
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
        where = f"POST {creds.token_url}"
        log.debug("fetching an OAuth token for client %s", creds.client_id)
        try:
            # Not redirected: a 307/308 would carry the client secret to wherever it points.
            async with session.post(
                creds.token_url, data=form, timeout=self._timeout, allow_redirects=False
            ) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except asyncio.TimeoutError:
            raise Retryable(APITimeoutError(f"{where}: no answer in time")) from None
        except aiohttp.ClientError as exc:
            text = redact(str(exc) or type(exc).__name__, *self.secrets())
            raise Retryable(APIConnectionError(f"{where}: {text}")) from None
        if status != 200:
            await self._refused(status, body, headers)
        try:
            answer = _token_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            # A cut or garbled answer: nothing was granted that we know of; ask again.
            raise Retryable(
                DecodeError(f"{where}: the answer is not the documented JSON", status=status)
            ) from None
        lifetime = answer.expires_in if answer.expires_in is not None else 3600.0
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
        self._token = answer.access_token
        self._refresh_at = started + lifetime - margin
        self._valid_until = started + lifetime - min(TOKEN_EXPIRY_SKEW, lifetime / 20)
        self.generation += 1

    async def _refused(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise what a non-200 token answer means: retry what can pass, refuse the rest."""
        where: dict[str, Any] = {
            "method": "POST",
            "path": self.credentials.token_url,
            "status": status,
        }
        # The answer could echo the form: show the status and the OAuth error code only.
        try:
            decoded = msgspec.json.decode(body, type=dict[str, object])
        except (msgspec.DecodeError, RecursionError):
            decoded = {}
        err = decoded.get("error", "")
        code = err if isinstance(err, str) and err else "no error code"
        if status == 429:
            details = decoded.get("details")
            wait = retry_after_seconds(details if isinstance(details, dict) else None, headers)
            if wait:
                # No budget covers the token endpoint: its pause is honoured here.
                await asyncio.sleep(min(wait, self._retry.cap))
            raise Retryable(
                RateLimitError(f"token request rate limited ({code})", retry_after=wait, **where)
            )
        if status in RETRYABLE_STATUSES:
            raise Retryable(ServerError(f"token endpoint failed ({code})", **where))
        if 300 <= status < 400:
            location = redact_url(headers.get("Location", "") or "nowhere")
            raise APIError(
                f"token request redirected to {location}: redirects are not followed, so that "
                "the client secret never leaves token_url's host; check token_url",
                **where,
            )
        if status in (400, 401, 403):
            raise AuthenticationError(f"token request refused ({code})", **where)
        if status >= 500:
            raise ServerError(f"token endpoint failed ({code})", **where)
        raise APIError(f"token request failed ({code})", **where)

    def __repr__(self) -> str:
        return f"OAuthTokenSource({self.credentials!r})"


def token_source(
    token: str | ClientCredentials | None, *, timeout: float, retry: RetryPolicy | None = None
) -> TokenSource:
    """The token source for ``GetBillClient(token=...)``, falling back to the environment."""
    if isinstance(token, ClientCredentials):
        return OAuthTokenSource(token, timeout=timeout, retry=retry)
    if isinstance(token, str):
        if not token.strip():
            raise ConfigurationError("token is empty")
        return StaticToken(token)
    if token is not None:
        raise ConfigurationError(
            f"token must be a bearer string or ClientCredentials, got {type(token).__name__}"
        )
    env = os.environ
    if env.get("GETBILL_TOKEN"):
        return StaticToken(env["GETBILL_TOKEN"])
    client_id, secret = env.get("GETBILL_CLIENT_ID"), env.get("GETBILL_CLIENT_SECRET")
    if client_id and secret:
        kwargs: dict[str, object] = {}
        if env.get("GETBILL_TOKEN_URL"):
            kwargs["token_url"] = env["GETBILL_TOKEN_URL"]
        if env.get("GETBILL_SCOPES"):
            kwargs["scopes"] = tuple(env["GETBILL_SCOPES"].split())
        creds = ClientCredentials(client_id, secret, **kwargs)  # type: ignore[arg-type]
        return OAuthTokenSource(creds, timeout=timeout, retry=retry)
    raise ConfigurationError(
        "no credentials: pass token='...' or ClientCredentials(...), or set GETBILL_TOKEN, "
        "or GETBILL_CLIENT_ID and GETBILL_CLIENT_SECRET"
    )
