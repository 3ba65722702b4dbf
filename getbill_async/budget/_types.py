"""The budget's vocabulary, shared by the local ledger and the Redis one: what a request asks
for (a class and a lane), what comes back (an outcome), the rules both ledgers apply to it
(header parsing, the cold start, the bulk lane's cap) and what a status reports."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from .._constants import DEFAULT_READS, DEFAULT_WINDOW, DEFAULT_WRITES, LOGGER_NAME
from ..errors import ConfigurationError

__all__ = [
    "Budget",
    "BudgetStatus",
    "ClassStatus",
    "Clock",
    "Kind",
    "LANES",
    "Lane",
    "MAX_HEADER_SECONDS",
    "MonotonicClock",
    "Outcome",
    "RateLimit",
    "Slot",
    "bulk_cap",
    "check_lane",
    "ends_cold_start",
    "parse_headers",
]

Kind = Literal["read", "write"]
#: Who is asking: a person waiting on an answer, or a bulk job (walks, exports, create_many).
#: Waiting interactive requests go ahead of waiting bulk ones, and ``RateLimit.reserve`` keeps a
#: share of every window that bulk work may not take.
Lane = Literal["interactive", "bulk"]
LANES: tuple[Lane, ...] = ("interactive", "bulk")


@dataclass(frozen=True)
class RateLimit:
    """The budget a client keeps: ``reads`` and ``writes`` per sliding ``window`` seconds.

        RateLimit(reads=1000, writes=500, window=3600, reserve=0.2)

    Attributes:
        reads: reads per window (an integer >= 1).
        writes: writes per window (an integer >= 1).
        window: the sliding window, in seconds (finite, > 0).
        max_wait: a request that would wait longer than this for a slot raises
            ``BudgetExhaustedError`` at once (``None``: wait as long as it takes, for batch
            work).
        pace: spread requests evenly (one per ``window / limit`` seconds) instead of letting a
            burst through; off by default, see the README for the measurements behind that.
        reserve: the share of each limit that bulk requests may not take (0 <= reserve < 1):
            bulk work is admitted while fewer than ``limit x (1 - reserve)`` slots are taken,
            so interactive calls find room even while an export runs (0: no reserve).

    Raises:
        ConfigurationError: a value out of range; the message names it.
    """

    reads: int = DEFAULT_READS
    writes: int = DEFAULT_WRITES
    window: float = DEFAULT_WINDOW
    max_wait: float | None = None
    pace: bool = False
    reserve: float = 0.0

    def __post_init__(self) -> None:
        for name in ("reads", "writes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"RateLimit.{name} must be an integer >= 1, got {value!r}")
        window = self.window
        if isinstance(window, bool) or not isinstance(window, (int, float)):
            raise ConfigurationError(
                f"RateLimit.window must be a number of seconds, got {window!r}"
            )
        if not (window > 0 and math.isfinite(window)):
            raise ConfigurationError(
                f"RateLimit.window must be > 0 seconds and finite, got {window!r}"
            )
        if self.max_wait is not None and not self.max_wait >= 0:
            raise ConfigurationError(
                f"RateLimit.max_wait must be >= 0 or None, got {self.max_wait!r}"
            )
        reserve = self.reserve
        if (
            isinstance(reserve, bool)
            or not isinstance(reserve, (int, float))
            or not 0 <= reserve < 1
        ):
            raise ConfigurationError(
                "RateLimit.reserve must be a number >= 0 and < 1 (the share of each limit "
                f"kept for interactive calls), got {reserve!r}"
            )

    def limit(self, kind: Kind) -> int:
        """The limit of one class.

        Args:
            kind: ``read`` or ``write``.

        Returns:
            ``reads`` or ``writes``.
        """
        return self.reads if kind == "read" else self.writes


def bulk_cap(limit: int, reserve: float) -> int:
    """How many slots may be taken when a bulk request is admitted: ``limit x (1 - reserve)``,
    rounded up, so bulk work always gets at least one (the Lua scripts use the same formula)."""
    # The epsilon keeps 40 x 0.8 = 32.000000000000004 from rounding up to 33.
    return max(1, math.ceil(limit * (1.0 - reserve) - 1e-9))


def check_lane(lane: str) -> None:
    if lane not in LANES:
        raise ConfigurationError(f"lane must be 'interactive' or 'bulk', got {lane!r}")


class Clock(Protocol):
    """Time as the budget sees it; tests inject a fake one instead of sleeping."""

    def now(self) -> float:
        """Seconds on a clock that never goes back: slots free at ``now() + window``."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch: to read the server's ``X-RateLimit-Reset``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time.

        Args:
            seconds: how long.
        """
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wall(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``.

        Args:
            seconds: how long.
        """
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Slot:
    """A taken slot: hand it back with ``release`` when the answer came (or the try gave up).

    Attributes:
        kind: ``read`` or ``write``.
        waited: the seconds the request waited for it.
        token: the budget's own handle (the Redis one uses it).
        taken_at: when it was taken, on the budget's clock (the request reached the server
            after it).
        lane: the lane it was taken in.
    """

    kind: Kind
    waited: float = 0.0
    token: str = ""  # a budget's own handle (the Redis one uses it)
    taken_at: float = 0.0  # on the budget's clock: the request reached the server after it
    lane: Lane = "interactive"


@dataclass(frozen=True)
class Outcome:
    """What came back of a request.

    Attributes:
        status: the answer's status (None: no answer).
        headers: the answer's headers (their ``X-RateLimit-*`` correct the count).
        retry_after: a 429's wait, in seconds.
        sent: False when the request never left (no connection, no token): it holds no slot.
    """

    status: int | None = None
    headers: Mapping[str, str] | None = None
    retry_after: float | None = None
    sent: bool = True


@dataclass(frozen=True)
class ClassStatus:
    """One class's budget as the ledger sees it.

    Attributes:
        limit: requests per window.
        window: the window, in seconds.
        used: slots counted in the window now.
        in_flight: requests sent and not answered yet.
        remaining: slots free now.
        next_slot_in: seconds until a request could be admitted (0: now).
        blocked_for: seconds left of a server-imposed pause (a 429).
        cold: no answer from the server has been seen yet, so requests of this class go one
            at a time ("cold, waiting for the first answer").
        reserved: slots the bulk lane may not take.
        lanes: the slots taken (counted and in flight) by ``interactive`` and ``bulk``
            requests, and by ``other`` programs that the server's headers revealed.
    """

    limit: int
    window: float
    used: int
    in_flight: int
    remaining: int
    next_slot_in: float  # seconds until a request could be admitted (0: now)
    blocked_for: float  # seconds left of a server-imposed pause (429)
    cold: bool = False
    reserved: int = 0
    lanes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetStatus:
    """Both classes' budgets.

    Attributes:
        reads: GET requests.
        writes: POST and PUT requests.
    """

    reads: ClassStatus
    writes: ClassStatus


@runtime_checkable
class Budget(Protocol):
    """What the request pipeline needs from a budget.

    ``acquire``'s ``lane`` says who asks (see ``Lane``); ``max_wait``, when given, replaces the
    budget's own ``RateLimit.max_wait`` for this one request (``math.inf``: no cap).
    """

    async def acquire(
        self, kind: Kind, *, lane: Lane = "interactive", max_wait: float | None = None
    ) -> Slot:
        """A slot for one request of ``kind``, once the window has room for it.

        Args:
            kind: ``read`` or ``write``.
            lane: ``interactive`` or ``bulk`` (bulk leaves the reserve to interactive calls).
            max_wait: the longest wait in seconds (``None`` or ``math.inf``: no cap; the
                pipeline always passes the call's own, resolved once).

        Returns:
            The slot, to hand back with ``release``.

        Raises:
            BudgetExhaustedError: the wait would pass ``max_wait``.
            BudgetUnavailableError: a shared budget's store cannot be reached.
        """
        ...

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        """Hand ``slot`` back with what came of its request.

        Args:
            slot: the slot ``acquire`` gave.
            outcome: counted if the request was sent, freed at once if it never left; the
                answer's ``X-RateLimit-*`` headers correct the count, a 429 pauses the class.
        """
        ...

    async def status(self) -> BudgetStatus:
        """What each class has used, has left and waits for, as this budget sees it now."""
        ...


#: The widest sane span of the ``X-RateLimit-*`` times: a window over a day, or a Reset more than
#: a day away, is a unit mistake (milliseconds) or a broken proxy, and believing it could
#: freeze the budget for good.
MAX_HEADER_SECONDS = 86_400.0
#: The largest count believed in ``X-RateLimit-Limit`` / ``-Remaining``.
_MAX_COUNT = 1e9
#: Each header's sane range (low, high, whether ``low`` itself is allowed), and its words.
_RANGES: dict[str, tuple[float, float, bool, str]] = {
    "X-RateLimit-Limit": (0.0, _MAX_COUNT, True, "a count from 0 to 10^9"),
    "X-RateLimit-Remaining": (0.0, _MAX_COUNT, True, "a count from 0 to 10^9"),
    "X-RateLimit-Window": (0.0, MAX_HEADER_SECONDS, False, "seconds, > 0 and <= 86400"),
    "X-RateLimit-Reset": (
        -MAX_HEADER_SECONDS,
        MAX_HEADER_SECONDS,
        True,
        "a Unix time within a day of now",
    ),
}
log = logging.getLogger(LOGGER_NAME)


def parse_headers(
    headers: Mapping[str, str] | None,
    *,
    warned: set[str] | None = None,
    wall: float | None = None,
) -> tuple[int | None, int | None, float | None]:
    """``(limit, remaining, window)`` from the ``X-RateLimit-*`` headers, where present and sane.

    A value outside its sane range (not a number, negative, not finite, a window over a day, a
    count over 10^9) is left out, as if the header were absent.

    Args:
        headers: an answer's headers (``None``: no answer).
        warned: the headers already warned about; a value left out is logged as a warning
            once per header name, which is then added here (``None``: no warning).
        wall: the wall clock now, to check ``X-RateLimit-Reset`` (``None``: not checked; it
            is never returned, only warned about when more than a day away).

    Returns:
        The limit, the remaining count and the window, each ``None`` where absent or insane.
    """
    if not headers:
        return None, None, None
    limit, remaining, window = (
        _header_number(headers, name, warned)
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Window")
    )
    if wall is not None and warned is not None:
        _header_number(headers, "X-RateLimit-Reset", warned, offset=wall)
    return (
        int(limit) if limit is not None else None,
        int(remaining) if remaining is not None else None,
        window,
    )


def _header_number(
    headers: Mapping[str, str], name: str, warned: set[str] | None, offset: float = 0.0
) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    low, high, closed, words = _RANGES[name]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    shifted = value - offset
    above = low <= shifted if closed else low < shifted
    if math.isfinite(value) and above and shifted <= high:
        return value
    if warned is not None and name not in warned:
        warned.add(name)
        log.warning(
            "ignoring %s: %.40r is not %s (warned once; later values are checked quietly)",
            name,
            raw,
            words,
        )
    return None


def ends_cold_start(outcome: Outcome) -> bool:
    """Whether this answer ends a class's cold start (one request at a time until then).

    The docs say every answer carries ``X-RateLimit-*``, and the first one tells what other
    programs spent. An answer without them also ends it, so a server (or a test double) that
    never sends them is not served one request at a time forever, except a 401 (sent before
    the server knows the client, so it counts nothing) and a 5xx (it may come from a proxy in
    front of the API): those prove nothing about the window. No answer proves nothing either.
    """
    if outcome.status is None:
        return False
    if parse_headers(outcome.headers)[1] is not None:
        return True
    return outcome.status < 500 and outcome.status != 401
