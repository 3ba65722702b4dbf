"""OAuth 2.0 client_credentials at POST /token, and bearer-token checks for the API.

Where the docs are silent: client credentials are accepted in the form body (as documented) or
as HTTP Basic (RFC 6749 section 2.3.1); a missing grant_type is `invalid_request`; an unknown
client or wrong secret is 401 `invalid_client`; no `scope` grants every scope of the client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ._data import ALL_SCOPES
from ._state import State, TokenGrant

__all__ = ["bearer_grant", "token_handler"]


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    body = msgspec.json.encode({"error": error, "error_description": description})
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="getbill-sandbox"'
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def token_handler(state: State) -> Handler:
    async def issue(request: web.Request) -> web.StreamResponse:
        state.stats.token_requests += 1
        form = await request.post()
        grant_type = form.get("grant_type")
        if not grant_type:
            return _oauth_error(400, "invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            client_id, secret = _basic_credentials(request) or (None, None)
        client = state.clients.get(client_id) if client_id is not None else None
        if (
            client is None
            or secret is None
            or not hmac.compare_digest(client.client_secret.encode(), secret.encode())
        ):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        asked = form.get("scope")
        scopes = tuple(asked.split()) if isinstance(asked, str) and asked.strip() else ()
        if not scopes:
            scopes = client.scopes
        elif any(s not in client.scopes or s not in ALL_SCOPES for s in scopes):
            return _oauth_error(400, "invalid_scope", "scope not allowed for this client")
        token = secrets.token_urlsafe(32)
        expires_at = state.clock() + state.token_lifetime
        state.tokens[token] = TokenGrant(client.client_id, frozenset(scopes), expires_at)
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": state.token_lifetime,
            "scope": " ".join(scopes),
        }
        return web.Response(
            body=msgspec.json.encode(body),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return issue


def bearer_grant(state: State, request: web.Request) -> TokenGrant | None:
    """The grant of the request's bearer token; None when missing, unknown or expired."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return state.grant(token.strip())
