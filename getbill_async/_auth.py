"""Bearer tokens: a static one, or OAuth2 client credentials refreshed single-flight."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import msgspec

from ._constants import DEFAULT_SCOPES, DEFAULT_TOKEN_URL, LOGGER_NAME, TOKEN_REFRESH_MARGIN
from ._redact import REDACTED, SecretForm, redact
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    DecodeError,
)
from .models import _TokenAnswer

__all__ = ["ClientCredentials"]

log = logging.getLogger(LOGGER_NAME)
_token_decoder = msgspec.json.Decoder(_TokenAnswer)


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
    """Hands the pipeline a bearer token; ``refresh`` after a 401."""

    can_refresh = False
    token_url: str | None = None

    async def token(self, session: aiohttp.ClientSession) -> str:
        raise NotImplementedError

    async def refresh(self, session: aiohttp.ClientSession, stale: str) -> str:
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
    wait on the same lock and take its result.
    """

    can_refresh = True

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.token_url = credentials.token_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.credentials.client_secret, self._token) if s)

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def token(self, session: aiohttp.ClientSession) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                await self._fetch(session)
            assert self._token is not None
            return self._token

    async def refresh(self, session: aiohttp.ClientSession, stale: str) -> str:
        async with self._lock:
            if self._token == stale or self._token is None:
                await self._fetch(session)
            assert self._token is not None
            return self._token

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
        log.debug("fetching an OAuth token for client %s", creds.client_id)
        try:
            # Not redirected: a 307/308 would carry the client secret to wherever it points.
            async with session.post(
                creds.token_url, data=form, timeout=self._timeout, allow_redirects=False
            ) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.TimeoutError as exc:
            raise APITimeoutError(f"POST {creds.token_url}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            text = redact(str(exc), *self.secrets())
            raise APIConnectionError(f"POST {creds.token_url}: {text}") from None
        if status != 200:
            # The answer could echo the form; show the status and OAuth error code only.
            try:
                err = msgspec.json.decode(body, type=dict[str, object]).get("error", "")
            except msgspec.DecodeError:
                err = ""
            raise AuthenticationError(
                f"token request refused ({err or 'no error code'})",
                status=status,
                method="POST",
                path=creds.token_url,
            )
        try:
            answer = _token_decoder.decode(body)
        except msgspec.DecodeError:
            raise DecodeError("token answer is not the documented JSON", status=status) from None
        lifetime = answer.expires_in if answer.expires_in is not None else 3600.0
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
        self._token = answer.access_token
        self._expires_at = started + lifetime - margin

    def __repr__(self) -> str:
        return f"OAuthTokenSource({self.credentials!r})"


def token_source(token: str | ClientCredentials | None, *, timeout: float) -> TokenSource:
    """The token source for ``GetBillClient(token=...)``, falling back to the environment."""
    if isinstance(token, ClientCredentials):
        return OAuthTokenSource(token, timeout=timeout)
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
        return OAuthTokenSource(creds, timeout=timeout)
    raise ConfigurationError(
        "no credentials: pass token='...' or ClientCredentials(...), or set GETBILL_TOKEN, "
        "or GETBILL_CLIENT_ID and GETBILL_CLIENT_SECRET"
    )
