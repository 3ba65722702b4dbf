"""Where credentials come from: one function that the client, the CLI and the dlt source share.

``resolve_credentials`` turns what a caller gave (a token, ``ClientCredentials``, or a client
id and secret with an optional token URL and scopes) and what the environment holds
(``GETBILL_TOKEN``, ``GETBILL_CLIENT_ID``, ``GETBILL_CLIENT_SECRET``, ``GETBILL_TOKEN_URL``,
``GETBILL_SCOPES``, ``GETBILL_BASE_URL``) into a bearer token or ``ClientCredentials``, by one
rule:

- what is passed wins over the environment, field by field (a ``token_url`` passed with a
  client id from the environment is used);
- a client secret goes only where the caller pointed: to ``token_url`` (or
  ``GETBILL_TOKEN_URL``) when one is given, else to ``/token`` on the host of ``base_url``
  (the API's own layout: ``https://getbill.io/token`` beside
  ``https://getbill.io/external-api/v1``). A sandbox or staging ``base_url`` never sends the
  secret to production's token endpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from yarl import URL

from .._constants import DEFAULT_BASE_URL, DEFAULT_SCOPES
from .._redact import REDACTED
from ..errors import ConfigurationError, ValidationError

__all__ = ["ClientCredentials", "check_token", "resolve_credentials", "token_url_beside"]

_SCOPE = re.compile(r"[A-Za-z0-9_.:-]+")


def check_token(token: str, where: str) -> str:
    """``token`` without surrounding whitespace; refused when empty or when it holds a
    control character (it would break the ``Authorization`` header). The token is never
    shown in the error.

    Args:
        token: the bearer token.
        where: where it came from, named in the error (``"token"``, ``"GETBILL_TOKEN"``).

    Returns:
        The token, stripped.

    Raises:
        ConfigurationError: the token is empty or holds a control character.
    """
    token = token.strip()
    if not token:
        raise ConfigurationError(f"{where} is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ConfigurationError(
            f"{where} holds a control character (a line break?): a bearer token is one line "
            "of printable characters"
        )
    return token


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth2 client credentials; the client fetches and refreshes tokens with them.

    The secret never shows in a repr or an error message.

    Attributes:
        client_id: the OAuth client's id.
        client_secret: its secret.
        scopes: the scopes asked for.
        token_url: the token endpoint (https; no ``user:password@`` part). None: ``/token``
            on the host of the client's ``base_url`` (for the real API,
            ``https://getbill.io/token``), so the secret goes nowhere else.
    """

    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    token_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(client_id={self.client_id!r}, client_secret={REDACTED!r}, "
            f"scopes={self.scopes!r}, token_url={self.token_url!r})"
        )


def token_url_beside(base_url: str) -> str:
    """The token endpoint beside an API: ``/token`` on ``base_url``'s scheme, host and port.

    Args:
        base_url: the API's base URL.

    Returns:
        The token URL (``https://getbill.io/token`` for the real API).

    Raises:
        ConfigurationError: ``base_url`` is not an http(s) URL with a host.
    """
    try:
        parsed = URL(base_url)
    except (TypeError, ValueError):
        parsed = URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError("base_url must be an http(s) URL with a host")
    return str(parsed.origin().with_path("/token"))


def _scopes(scopes: Sequence[str] | str | None, where: str) -> tuple[str, ...] | None:
    if scopes is None:
        return None
    names = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not names or not all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in names):
        raise ValidationError(
            f"{where}: scopes must be names such as 'followups:read', given as a list or "
            "separated by spaces",
            field="scopes",
        )
    return tuple(names)


def resolve_credentials(
    token: str | ClientCredentials | None = None,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_url: str | None = None,
    scopes: Sequence[str] | str | None = None,
    base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | ClientCredentials:
    """A bearer token, or ``ClientCredentials`` with their token URL and scopes settled
    (the rule: see the module docstring). Sends nothing.

    Args:
        token: a bearer token, or ``ClientCredentials``.
        client_id: an OAuth client id (with ``client_secret``), instead of ``token``.
        client_secret: its secret.
        token_url: the token endpoint (else ``GETBILL_TOKEN_URL``, else beside ``base_url``).
        scopes: a list, or one string split at spaces (else ``GETBILL_SCOPES``, else all).
        base_url: the API's base URL (else ``GETBILL_BASE_URL``, else the real API's).
        environ: the environment to read (default ``os.environ``).

    Returns:
        The token, stripped, or the client credentials.

    Raises:
        ValidationError: a token with a client id or secret, one without the other, bad scopes.
        ConfigurationError: no credentials at all, or an empty token.
    """
    env = os.environ if environ is None else environ
    base = base_url or env.get("GETBILL_BASE_URL") or DEFAULT_BASE_URL
    asked = _scopes(scopes, "scopes")
    if isinstance(token, ClientCredentials):
        if client_id is not None or client_secret is not None:
            raise ValidationError(
                "credentials: give ClientCredentials, or client_id and client_secret, not both",
                field="credentials",
            )
        url = token.token_url or token_url or env.get("GETBILL_TOKEN_URL")
        return replace(token, token_url=url or token_url_beside(base))
    if token is not None and not isinstance(token, str):
        raise ConfigurationError(
            f"token must be a bearer string or ClientCredentials, got {type(token).__name__}"
        )
    if token is not None or client_id is not None or client_secret is not None:
        if token is not None and client_id is None and client_secret is None:
            return check_token(token, "token")
        if token is not None or not client_id or not client_secret:
            message = "credentials: give either token, or both client_id and client_secret"
            raise ValidationError(message, field="credentials")
    elif env.get("GETBILL_TOKEN"):
        return check_token(env["GETBILL_TOKEN"], "GETBILL_TOKEN")
    else:
        client_id, client_secret = _from_environment(env)
    chosen = asked or _scopes(env.get("GETBILL_SCOPES") or None, "GETBILL_SCOPES")
    url = token_url or env.get("GETBILL_TOKEN_URL") or token_url_beside(base)
    return ClientCredentials(client_id, client_secret, chosen or DEFAULT_SCOPES, url)


def _from_environment(env: Mapping[str, str]) -> tuple[str, str]:
    client_id, secret = env.get("GETBILL_CLIENT_ID"), env.get("GETBILL_CLIENT_SECRET")
    if not client_id or not secret:
        raise ConfigurationError(
            "no credentials: pass token='...' or ClientCredentials(...), or set GETBILL_TOKEN, "
            "or GETBILL_CLIENT_ID and GETBILL_CLIENT_SECRET"
        )
    return client_id, secret
