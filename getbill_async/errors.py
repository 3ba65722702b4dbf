"""The SDK's one exception tree.

```
GetBillError
 ├── ConfigurationError          a bad setting (credentials, base URL, RateLimit, RetryPolicy):
 │                               nothing was sent; also a ValueError
 ├── APIError                    the server answered with an error status
 │    ├── AuthenticationError    401
 │    ├── PermissionDeniedError  403 (a missing scope)
 │    ├── NotFoundError          404
 │    ├── ValidationError        400 / 422, or raised before sending (status None)
 │    ├── RateLimitError         429
 │    └── ServerError            5xx
 ├── APIConnectionError          no usable answer: refused, reset, dropped
 │    └── APITimeoutError        no answer within the timeout
 ├── DecodeError                 an answer that is not the documented JSON
 │    └── PaginationError        a list's page that contradicts what was asked
 ├── AmbiguousWriteError         a write that may or may not have happened
 ├── WriteNotSentError           a write stopped before it left: it did not happen
 ├── BudgetExhaustedError        the rate budget would make a request wait too long
 ├── BudgetUnavailableError      a shared budget's store cannot be reached
 ├── FileInUseError              another process is writing the same output file
 ├── EventLoopError              a call its event loop or thread cannot serve (it would
 │                               deadlock, or another open loop holds the client); a RuntimeError
 └── MissingExtraError           a feature's optional dependency is not installed
```

No message or repr here ever contains a token, a client secret or a presigned URL's signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._redact import redact_url

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AmbiguousWriteError",
    "AuthenticationError",
    "BudgetExhaustedError",
    "BudgetUnavailableError",
    "ConfigurationError",
    "DecodeError",
    "EventLoopError",
    "FileInUseError",
    "GetBillError",
    "MissingExtraError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ValidationError",
    "WriteNotSentError",
]


class GetBillError(Exception):
    """Base of every error the SDK raises."""


class ConfigurationError(GetBillError, ValueError):
    """A setting is wrong: no credentials, an insecure base URL, a ``RateLimit`` or
    ``RetryPolicy`` out of range. Nothing was sent.

    It is a ``ValueError`` too, so code that caught the ``ValueError`` these settings raised
    before keeps working.
    """


class APIError(GetBillError):
    """The API answered with an error status.

    ``status`` is the HTTP status (``None`` for a check made before sending), ``code`` the
    envelope's ``code``, ``details`` its per-field messages, ``method`` and ``path`` what was
    being done.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        details: Mapping[str, Any] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        status = f"{self.status} " if self.status is not None else ""
        text = f"{where}{status}{self.message}"
        parts = []
        for field, value in self.details.items():
            if isinstance(value, (list, tuple)):
                value = "; ".join(str(v) for v in value)
            part = f"{field}: {value}"
            if part not in text:  # a check made here already says it: say it once
                parts.append(part)
        if parts:
            text += " (" + ", ".join(parts) + ")"
        return text


class AuthenticationError(APIError):
    """401: the token is missing, invalid or expired (after one refresh)."""


class PermissionDeniedError(APIError):
    """403: the token lacks a scope."""


class NotFoundError(APIError):
    """404: no such followup or debt."""


class ValidationError(APIError):
    """400/422 from the server, or bad input caught before any request was sent.

    ``field`` names the offending field (the first one when the server lists several) and
    ``allowed`` the values it accepts, where there is such a list.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        allowed: tuple[str, ...] | None = None,
        status: int | None = None,
        code: int | None = None,
        details: Mapping[str, Any] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        if field is None and details:
            field = next(iter(details))
        self.field = field
        self.allowed = allowed
        super().__init__(
            message, status=status, code=code, details=details, method=method, path=path
        )


class RateLimitError(APIError):
    """429: over the server's budget; ``retry_after`` is the server's wait in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(APIError):
    """5xx: the server failed."""


class APIConnectionError(GetBillError):
    """No usable answer: the connection was refused, reset or dropped."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class DecodeError(GetBillError):
    """An answer that is not the documented JSON (truncated, HTML from a proxy...)."""

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        self.status = status
        self.body_start = body[:120]
        # The start of a body can hold a presigned URL: its signature is not shown.
        shown = redact_url(repr(self.body_start))
        super().__init__(f"{message} (status {status}, body starts {shown})")


class PaginationError(DecodeError):
    """A page of a list that contradicts what was asked, twice in a row: another page number
    echoed, fewer items than ``total`` says the page holds, pagination figures that do not add
    up, or items all yielded before (a server that ignores ``page``).

    ``what`` is the request (``GET /followups``), ``page`` the page number asked, ``reason``
    what was wrong with the answer.
    """

    def __init__(self, what: str, page: int, reason: str) -> None:
        self.what, self.page, self.reason = what, page, reason
        self.status = 200
        self.body_start = b""
        GetBillError.__init__(self, f"{what} page {page}: {reason}")


class FileInUseError(GetBillError):
    """Another process holds the output file's lock (an export or a log writing it now)."""


class AmbiguousWriteError(GetBillError):
    """A create or update failed after it was sent: it may or may not have happened.

    ``fields`` are the request's fields, so the caller can check and decide; ``cause`` is the
    failure that made it ambiguous.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        fields: Mapping[str, Any],
        cause: BaseException | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.fields = dict(fields)
        self.cause = cause
        where = f"{method} {path}"
        # The cause's own message usually says what was being done already.
        said = message if message.startswith(where) else f"{where}: {message}"
        super().__init__(
            f"{said}; the write may have happened "
            f"(fields: {', '.join(sorted(self.fields)) or 'none'})"
        )


class WriteNotSentError(GetBillError):
    """A write stopped (cancelled, or a failure on this side) before any of its tries left
    this process: it did not happen, and it is safe to send again."""


class BudgetExhaustedError(GetBillError):
    """The rate budget has no slot within ``max_wait``; ``retry_in`` says when one opens."""

    def __init__(self, kind: str, retry_in: float, max_wait: float, *, cold: bool = False) -> None:
        self.kind = kind
        self.retry_in = retry_in
        self.max_wait = max_wait
        self.cold = cold  # no estimate: the class waits for the first answer of a cold start
        when = "cold, waiting for the first answer" if cold else f"next slot in {retry_in:.1f}s"
        super().__init__(f"{kind} budget exhausted: {when}, over max_wait {max_wait:g}s")

    @property
    def waiting(self) -> str:
        """What the request waited for, in words (for messages)."""
        if self.cold:
            return f"a {self.kind} budget slot (cold, waiting for the first answer)"
        return f"{self.retry_in:.1f}s for a {self.kind} budget slot"


class BudgetUnavailableError(GetBillError):
    """A shared budget's store (Redis) cannot be reached."""


class EventLoopError(GetBillError, RuntimeError):
    """A call that its event loop or thread cannot serve, refused before it could hang or
    fail on a dead loop: a blocking call of ``getbill_async.sync`` made on that face's own
    loop thread (it would wait for itself), or an async client, session or budget used from
    an event loop while the loop it works on is still open elsewhere. The message says what
    to do instead. It is a ``RuntimeError`` too, like asyncio's own loop errors.
    """


class MissingExtraError(GetBillError, ImportError):
    """A feature was asked for whose optional dependency is not installed.

    The message is one line that names the extra to install, e.g.
    ``RedisBudget needs redis, which is not installed: pip install 'getbill-async[redis]'``.
    It is an ``ImportError`` too, so ``except ImportError`` keeps working.
    """
