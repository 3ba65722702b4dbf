"""What a call is: the request a resource builds, its options, and how the pipeline learns
that a request left this process (``SentAwareRequest``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..budget import Kind, Lane
from ._retry import RetryPolicy

__all__ = [
    "SENT",
    "CallOptions",
    "CallStats",
    "PROBE",
    "Probe",
    "Request",
    "SentAwareRequest",
    "SentRecord",
    "track_sent",
]


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


@dataclass(frozen=True)
class CallOptions:
    """How one call is made: ``client.with_options(...)`` gives a view with other ones.

    ``max_wait``: the longest budget wait (``None``: the budget's own ``RateLimit.max_wait``;
    ``math.inf``: no cap). ``priority``: the lane (``None``: the call's own, bulk for walks,
    exports and ``create_many``, interactive for single calls).
    """

    timeout: float
    retry: RetryPolicy
    max_wait: float | None = None
    priority: Lane | None = None


@dataclass(frozen=True)
class Request:
    """What a resource asks for. ``fields`` (writes) travel into ``AmbiguousWriteError``."""

    method: str
    path: str  # already escaped, relative to base_url
    params: Mapping[str, str] | None = None
    # Out of the repr: a body may hold a presigned URL, and requests sit in tracebacks.
    body: bytes | None = field(default=None, repr=False)
    fields: Mapping[str, Any] | None = field(default=None, repr=False)
    lane: Lane = "interactive"
    # The path with placeholders ("/followups/{id}"): spans and metrics are named by it.
    template: str | None = None

    @property
    def kind(self) -> Kind:
        return "read" if self.method == "GET" else "write"

    def describe(self) -> str:
        page = self.params.get("page") if self.params else None
        return f"{self.method} {self.path}" + (f" page {page}" if page else "")


class SentRecord:
    """Set as ``SENT`` around a write to learn whether any of its tries left this process.

    ``create_many`` uses it: a create cancelled mid-flight is reported as ambiguous when it
    was sent, and as not sent (safe to send again) otherwise.
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


SENT: ContextVar[SentRecord | None] = ContextVar("getbill_sent", default=None)


class Probe:
    """One try: did it start sending, and did it get as far as writing to a connection."""

    __slots__ = ("started", "sent")

    def __init__(self) -> None:
        self.started = False
        self.sent = False


PROBE: ContextVar[Probe | None] = ContextVar("getbill_probe", default=None)


class SentAwareRequest(aiohttp.ClientRequest):
    """aiohttp's request, noting when it starts writing to a connection it was given.

    Until then (connecting, waiting for a pooled connection) nothing can have reached the
    server. aiohttp's ``on_request_headers_sent`` trace says the same a little later, but a
    trace costs a dozen awaits on every request; this costs a context-variable read.
    """

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        probe = PROBE.get()
        if probe is not None:
            probe.sent = True
        return await super().send(conn)


def track_sent(session: aiohttp.ClientSession) -> bool:
    """Make ``session`` note sent requests; False when that cannot be known."""
    request_class = getattr(session, "_request_class", None)
    if isinstance(request_class, type) and issubclass(request_class, SentAwareRequest):
        return True
    if request_class is aiohttp.ClientRequest:
        # A session made by the caller, with aiohttp's own request class: use ours.
        session._request_class = SentAwareRequest
        return True
    return False  # a custom request class: count every started try as sent (the safe side)
