"""What an answer means: the error for a status, a body read under a cap, a checked decode.

Small functions of the answer alone, so the pipeline's flow stays readable and they are easy to
test (the property tests feed them arbitrary bytes). The API's answers and the token endpoint's
go through the same ones: one capped reader, one status-to-error map, one redaction of the
server's words (a server may echo a secret it was sent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec

from .._redact import REDACTED, redact, redact_url
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

__all__ = [
    "AnswerHeaders",
    "Body",
    "Decodes",
    "ambiguous",
    "decode",
    "error_for_status",
    "read_capped",
    "unusable_for_write",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decodes(Protocol[T_co]):
    """What the pipeline decodes an answer with: a ``msgspec.json.Decoder``, or anything with
    its ``decode`` that raises ``msgspec.DecodeError`` on a bad body."""

    def decode(self, buf: bytes, /) -> T_co: ...


class Body:
    """An answer's bytes, whose repr shows only their length.

    Bodies sit in the locals of the frames that read and decode them, and a page can hold
    presigned URLs: a traceback formatted with its locals must not show their signatures.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<answer body, {len(self.data)} bytes>"


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers (looked up without regard to case), whose repr shows only their
    names.

    They sit in the locals of the frames that read them, and a server can echo what the
    request carried (a ``Location`` that holds the token, an OAuth error with the client
    secret): a traceback formatted with its locals must not show it.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        return self._headers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)

    def __repr__(self) -> str:
        return f"<answer headers: {', '.join(self._headers)}>"


_IDENTITY = ("", "identity")
_error_decoder = msgspec.json.Decoder(dict[str, Any])
#: What each error status means; anything else in 4xx is a plain ``APIError``.
_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: ValidationError,
    429: RateLimitError,
}


def _raw(body: Body | bytes) -> bytes:
    return body.data if isinstance(body, Body) else body


def _start(body: Body | bytes, secrets: tuple[str, ...]) -> bytes:
    """The first bytes of ``body``, for an error message, with the client's secrets out."""
    start = _raw(body)[:120]
    for secret in secrets:
        if secret and len(secret) >= 4:
            start = start.replace(secret.encode(), REDACTED.encode())
    return start


def _envelope(body: Body | bytes) -> tuple[str | None, int | str | None, dict[str, Any] | None]:
    """Message, code and details of an error answer: the API's envelope (``message``,
    ``code``, ``details``) or OAuth's (``error``, ``error_description``). The message is
    None when the body is not JSON, empty when the JSON has none."""
    try:
        env = _error_decoder.decode(_raw(body))
    except (msgspec.DecodeError, RecursionError):
        return None, None, None
    message = env.get("message") or env.get("error_description")
    code = env.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        error = env.get("error")
        code = error if isinstance(error, str) and error else None
    details = env.get("details")
    return (
        message if isinstance(message, str) else "",
        code,
        details if isinstance(details, dict) else None,
    )


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, *secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def error_for_status(
    status: int,
    body: Body | bytes,
    request: Request,
    headers: Mapping[str, str],
    secrets: tuple[str, ...] = (),
    *,
    token_endpoint: bool = False,
) -> APIError:
    """The exception for an error answer, from the documented envelope where there is one.

    Args:
        status: the answer's status (not 2xx).
        body: the answer's body.
        request: what was asked.
        headers: the answer's headers.
        secrets: strings the client sent that must not show (``TokenSource.secrets()``):
            every word of the server's in the error is redacted with them.
        token_endpoint: the answer is the token endpoint's: a 400 or 403 there means the
            credentials were refused (``AuthenticationError``).

    Returns:
        The error to raise (or to retry on).
    """
    kw: dict[str, Any] = dict(status=status, method=request.method, path=request.path)
    if 300 <= status < 400:
        location = redact(headers.get("Location", "") or "nowhere", *secrets)
        what, secret, url = (
            ("token request ", "the client secret never leaves", "token_url")
            if token_endpoint
            else ("", "credentials never leave", "base_url")
        )
        message = (
            f"{what}redirected to {location}: redirects are not followed, so that {secret} "
            f"{url}'s host; check {url}"
        )
        return APIError(message, **kw)
    said, code, details = _envelope(body)
    if token_endpoint:  # an OAuth answer may echo the form: its code says enough
        message = f"({code or 'no error code'})"
    elif said is None:
        message = f"HTTP {status}, body starts {redact_url(repr(_raw(body)[:80]))}"
    else:
        message = said or f"HTTP {status}"
    message = redact(message, *secrets)
    details = _scrub(details, secrets)
    kw.update(code=code, details=details)
    if token_endpoint:
        return _token_error(status, message, details, headers, kw)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after_seconds(details, headers), **kw)
    if status >= 500:
        return ServerError(message, **kw)
    return _BY_STATUS.get(status, APIError)(message, **kw)


def _token_error(
    status: int,
    code: str,
    details: dict[str, Any] | None,
    headers: Mapping[str, str],
    kw: dict[str, Any],
) -> APIError:
    if status in (400, 401, 403):
        return AuthenticationError(f"token request refused {code}", **kw)
    if status == 429:
        wait = retry_after_seconds(details, headers)
        return RateLimitError(f"token request rate limited {code}", retry_after=wait, **kw)
    if status >= 500:
        return ServerError(f"token endpoint failed {code}", **kw)
    return APIError(f"token request failed {code}", **kw)


def unusable_for_write(request: Request, error: GetBillError) -> AmbiguousWriteError | None:
    """The rule for writes: any answer that is not a usable 2xx (too big, undecodable,
    truncated, a redirect, a 5xx) leaves the write's outcome unknown. Only a 4xx says the
    server refused it (a 429 is retried before that).

    Args:
        request: the write.
        error: what its answer meant.

    Returns:
        The ``AmbiguousWriteError`` to raise, or None when ``error`` is a clear refusal.
    """
    status = getattr(error, "status", None)
    if isinstance(status, int) and 400 <= status < 500:
        return None
    return ambiguous(request, error)


def decode(
    request: Request,
    status: int,
    headers: Mapping[str, str],
    body: Body | bytes,
    decoder: Decodes[T],
    secrets: Callable[[], tuple[str, ...]] = tuple,
) -> T:
    """The decoded answer; a body that is not the documented JSON is retried (reads) or makes
    the write ambiguous.

    Args:
        request: what was asked.
        status: the answer's (2xx) status.
        headers: the answer's headers.
        body: the answer's body.
        decoder: what turns it into its type.
        secrets: the client's secrets (``TokenSource.secrets``), asked only when the body is
            refused: its start, shown in the error, is redacted with them.

    Returns:
        The decoded answer.

    Raises:
        Retryable: a read whose answer is not the documented JSON.
        AmbiguousWriteError: a write whose answer is not the documented JSON.
    """
    content_type = headers.get("Content-Type", "")
    try:
        if "json" not in content_type:
            raise DecodeError(
                f"{request.describe()}: expected JSON, got {content_type or 'no content type'}",
                status=status,
                body=_start(body, secrets()),
            )
        try:
            return decoder.decode(_raw(body))
        except (msgspec.DecodeError, RecursionError) as exc:
            raise DecodeError(
                f"{request.describe()}: answer is not the documented JSON ({exc})",
                status=status,
                body=_start(body, secrets()),
            ) from None
    except DecodeError as exc:
        if request.kind == "read":
            raise Retryable(exc) from None
        raise ambiguous(request, exc) from None


async def read_capped(resp: aiohttp.ClientResponse, request: Request, cap: int) -> Body:
    """The body, decoded (gunzipped...), refused past ``cap`` bytes *decoded*: a small
    compressed answer can inflate a thousandfold. The API's answers and the token
    endpoint's alike.

    Args:
        resp: the answer being read.
        request: what was asked (named in the error).
        cap: the most bytes accepted (``max_response_bytes``).

    Returns:
        The body.

    Raises:
        DecodeError: the body is larger than ``cap``.
    """
    length = resp.content_length
    if length is not None and length > cap:
        raise _too_large(resp, request, cap)
    if length is not None and resp.headers.get("Content-Encoding", "").lower() in _IDENTITY:
        return Body(await resp.read())
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > cap:
            chunks.clear()  # the frame's locals show in tracebacks: hold nothing read
            raise _too_large(resp, request, cap)
        chunks.append(chunk)
    return Body(b"".join(chunks))


def _too_large(resp: aiohttp.ClientResponse, request: Request, cap: int) -> DecodeError:
    return DecodeError(
        f"{request.describe()}: answer larger than max_response_bytes={cap} (decoded)",
        status=resp.status,
    )


def ambiguous(request: Request, cause: GetBillError) -> AmbiguousWriteError:
    """The error for a write that may have happened, carrying its fields.

    Args:
        request: the write.
        cause: the failure that left its outcome unknown.

    Returns:
        The error, with ``cause`` attached.
    """
    return AmbiguousWriteError(
        str(cause),
        method=request.method,
        path=request.path,
        fields=request.fields or {},
        cause=cause,
    )
