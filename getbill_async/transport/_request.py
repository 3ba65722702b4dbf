"""What a call is: the request a resource builds, its options, and how the pipeline learns
that a request left this process (``SentAwareRequest``); and responses whose repr keeps the
server's headers out of tracebacks (``QuietResponse``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .._redact import redact_url
from ..budget import Budget, Kind, Lane
from ._retry import RetryPolicy

__all__ = [
    "SENT",
    "CallOptions",
    "CallStats",
    "PROBE",
    "Probe",
    "QuietResponse",
    "Request",
    "SentAwareRequest",
    "SentRecord",
    "default_max_wait",
    "lane_of",
    "quiet_responses",
    "track_sent",
]


@dataclass
class CallStats:
    """Counters of requests sent, retries and budget waits (per walk, or for a whole client).

    Attributes:
        requests: requests sent (each try counts).
        retries: tries repeated after a fault.
        budget_waits: requests that waited for a budget slot.
        budget_wait_seconds: the seconds they waited in all.
    """

    requests: int = 0
    retries: int = 0
    budget_waits: int = 0
    budget_wait_seconds: float = 0.0

    def add(self, other: CallStats) -> None:
        """Add ``other``'s counts to these.

        Args:
            other: the counters to add.
        """
        self.requests += other.requests
        self.retries += other.retries
        self.budget_waits += other.budget_waits
        self.budget_wait_seconds += other.budget_wait_seconds


@dataclass(frozen=True)
class CallOptions:
    """How one call is made: ``client.with_options(...)`` gives a view with other ones.

    ``max_wait``: the longest budget wait in seconds, always a number here (``math.inf``: no
    cap); the public ``None`` ("as long as it takes") is turned into ``math.inf`` where it is
    given, and the budget's own default is read once, by ``default_max_wait``.
    ``priority``: the lane every call of the view goes in (``None``: each call's own, see
    ``lane_of``). ``deadline``: an absolute ``time.monotonic()`` that no call of the view may
    pass (``None``: only ``retry.max_time`` bounds a call); a call that must run other calls
    (a reconcile lookup) hands its own deadline on to them this way.
    """

    timeout: float
    retry: RetryPolicy
    max_wait: float = math.inf
    priority: Lane | None = None
    deadline: float | None = None


def default_max_wait(budget: Budget) -> float:
    """The one place the default ``max_wait`` is resolved: the budget's own
    ``RateLimit.max_wait`` when it has one, else no cap (``math.inf``).

    Args:
        budget: the client's budget.

    Returns:
        Seconds; ``math.inf`` for no cap.
    """
    rate_limit = getattr(budget, "rate_limit", None)
    value = getattr(rate_limit, "max_wait", None)
    return math.inf if value is None else float(value)


def lane_of(request: Request, priority: Lane | None) -> Lane:
    """The one rule that puts a call in a lane: a view's ``priority`` wins; otherwise bulk
    work (``Request.bulk``: walks, exports, ``create_many``) goes in the bulk lane, and
    everything else in the interactive one.

    Args:
        request: the call's request, whose ``bulk`` says what kind of work it is.
        priority: the lane of the view it is sent through, if that view chose one.

    Returns:
        ``"interactive"`` or ``"bulk"``.
    """
    if priority is not None:
        return priority
    return "bulk" if request.bulk else "interactive"


#: Looks up whether an ambiguous write happened, within an absolute deadline: the decoded
#: answer it would have had, or None when it did not happen.
Reconcile = Callable[[float | None], Awaitable[Any]]


@dataclass(frozen=True)
class Request:
    """What a resource asks for. ``fields`` (writes) travel into ``AmbiguousWriteError``.

    Intent only, never a decision: ``bulk`` says the call is bulk work (the lane follows from
    it, see ``lane_of``); ``sent`` is told whether a try of a write left this process
    (``create_many`` reads it after a cancellation); ``reconcile`` looks up whether an
    ambiguous write happened (a create with a ``call_id``), and the pipeline runs it inside
    the call's retry loop and deadline.
    """

    method: str
    path: str  # already escaped, relative to base_url
    params: Mapping[str, str] | None = None
    # Out of the repr: a body may hold a presigned URL, and requests sit in tracebacks.
    body: bytes | None = field(default=None, repr=False)
    fields: Mapping[str, Any] | None = field(default=None, repr=False)
    bulk: bool = False
    # The path with placeholders ("/followups/{id}"): spans and metrics are named by it.
    template: str | None = None
    sent: SentRecord | None = field(default=None, repr=False, compare=False)
    reconcile: Reconcile | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> Kind:
        return "read" if self.method == "GET" else "write"

    def describe(self) -> str:
        page = self.params.get("page") if self.params else None
        return f"{self.method} {self.path}" + (f" page {page}" if page else "")


class SentRecord:
    """Whether any try of a write left this process: ``Request.sent`` carries it.

    ``create_many`` uses it: a create cancelled mid-flight is reported as ambiguous when it
    was sent, and as not sent (safe to send again) otherwise.
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


# Only for a create function given to ``CreateBatch`` directly: that function builds its own
# requests, so the batch has no request to put the record on, and the task's context is the
# one thing it shares with the pipeline. ``create_many`` passes ``Request.sent`` instead.
SENT: ContextVar[SentRecord | None] = ContextVar("getbill_sent", default=None)


class Probe:
    """One try: did it start sending, and did it get as far as writing to a connection."""

    __slots__ = ("started", "sent")

    def __init__(self) -> None:
        self.started = False
        self.sent = False


# A context variable because aiohttp builds the request object itself, from the session's
# request class, with no argument of ours reaching it: the task's context is the only way
# from the pipeline's try to ``SentAwareRequest.send``.
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


class QuietResponse(aiohttp.ClientResponse):
    """aiohttp's response, whose repr shows its URL and status but not its headers.

    aiohttp's shows every header, and a response sits in the locals of the frames that read
    it. A server can put what the request carried into a header (a ``Location`` that holds
    the token, or the client secret): a traceback formatted with its locals must not show it.
    """

    def __repr__(self) -> str:
        return f"<ClientResponse({redact_url(str(self.url))}) [{self.status}]>"


def quiet_responses(session: aiohttp.ClientSession) -> None:
    """Make ``session``'s responses a ``QuietResponse``, unless it has a class of its own."""
    if getattr(session, "_response_class", None) is aiohttp.ClientResponse:
        session._response_class = QuietResponse


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
