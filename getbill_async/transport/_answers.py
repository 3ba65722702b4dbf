"""What an answer means: the error for a status, a body read under a cap, a checked decode.

Small functions of the answer alone, so the pipeline's flow stays readable and they are easy to
test (the property tests feed them arbitrary bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec

from .._redact import redact_url
from ..errors import (
    AmbiguousWriteError,
    APIError,
    AuthenticationError,
    DecodeError,
    GetBillError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from ._request import Request
from ._retry import Retryable, retry_after_seconds
from ._wire import ErrorEnvelope

__all__ = ["Decodes", "ambiguous", "decode", "error_for_status", "read_capped"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decodes(Protocol[T_co]):
    """What the pipeline decodes an answer with: a ``msgspec.json.Decoder``, or anything with
    its ``decode`` that raises ``msgspec.DecodeError`` on a bad body."""

    def decode(self, buf: bytes, /) -> T_co: ...


_error_decoder = msgspec.json.Decoder(ErrorEnvelope)
_IDENTITY = ("", "identity")


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


def decode(
    request: Request,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    decoder: Decodes[T],
) -> T:
    """The decoded answer; a body that is not the documented JSON is retried (reads) or makes
    the write ambiguous."""
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
        raise ambiguous(request, exc) from None


async def read_capped(resp: aiohttp.ClientResponse, request: Request, cap: int) -> bytes:
    """The body, decoded (gunzipped...), refused past ``cap`` bytes *decoded*: a small
    compressed answer can inflate a thousandfold."""
    length = resp.content_length
    if length is not None and length > cap:
        raise _too_large(resp, request, cap)
    if length is not None and resp.headers.get("Content-Encoding", "").lower() in _IDENTITY:
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > cap:
            raise _too_large(resp, request, cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(resp: aiohttp.ClientResponse, request: Request, cap: int) -> DecodeError:
    return DecodeError(
        f"{request.describe()}: answer larger than max_response_bytes={cap} (decoded)",
        status=resp.status,
    )


def ambiguous(request: Request, cause: GetBillError) -> AmbiguousWriteError:
    """The error for a write that may have happened, carrying its fields."""
    return AmbiguousWriteError(
        str(cause),
        method=request.method,
        path=request.path,
        fields=request.fields or {},
        cause=cause,
    )
