"""Retry decisions: small pure functions, easy to read and to test; and the pauses.

What may be tried again without risking a second write, how long a 429 asks to wait,
``Backoff`` (the pauses between tries, shared by every loop on the request path), and
``with_retries``: the token endpoint's loop. API calls have theirs in the pipeline, where the
call's deadline bounds the token refresh and the reconcile lookups as well.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import backoff

from ..budget import Kind
from ..errors import ConfigurationError, GetBillError

T = TypeVar("T")

__all__ = [
    "MAX_RETRY_AFTER",
    "RETRYABLE_STATUSES",
    "Backoff",
    "RetryPolicy",
    "Retryable",
    "with_retries",
    "retry_after_seconds",
    "should_retry",
]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The longest pause a 429 may ask for; a larger or non-finite value (a broken proxy, a
#: ``Retry-After: inf``) would freeze the budget for good, so it is treated as unknown.
MAX_RETRY_AFTER = 86_400.0


@dataclass(frozen=True)
class RetryPolicy:
    """How the pipeline retries: exponential backoff with full jitter.

        RetryPolicy(max_tries=5, max_time=60)

    Attributes:
        max_tries: the tries of one call (1: never retry).
        max_time: the seconds one call may take in all: budget waits, tries, pauses, a token
            refresh and reconcile lookups (``None``: no bound but ``max_tries``).
        base: the first wait's bound; the n-th wait is drawn from
            ``[0, min(cap, base * 2**n)]``.
        cap: the longest wait between two tries.
        reconcile: after an ambiguous create that carries a ``call_id``, look for it among
            the debt's followups before trying again.

    Raises:
        ConfigurationError: a value out of range; the message names it.
    """

    max_tries: int = 8
    max_time: float | None = None
    base: float = 0.25
    cap: float = 20.0
    reconcile: bool = True

    def __post_init__(self) -> None:
        tries = self.max_tries
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise ConfigurationError(
                f"RetryPolicy.max_tries must be an integer >= 1, got {tries!r}"
            )
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigurationError(
                f"RetryPolicy.max_time must be > 0 or None, got {self.max_time!r}"
            )


def retry_after_seconds(
    details: Mapping[str, Any] | None, headers: Mapping[str, str], now: float | None = None
) -> float | None:
    """A 429's wait: ``details.retry_after``, else ``Retry-After``, else ``X-RateLimit-Reset``."""
    value = (details or {}).get("retry_after")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        if value <= MAX_RETRY_AFTER:
            return float(value)
        value = None  # absurd: look at the headers instead
    for name in ("Retry-After", "X-RateLimit-Reset"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            number = float(raw)
        except ValueError:
            continue
        if name == "X-RateLimit-Reset":
            number -= now if now is not None else time.time()
        if 0 <= number <= MAX_RETRY_AFTER and math.isfinite(number):
            return number
    return None


def should_retry(kind: Kind, status: int | None, sent: bool) -> bool:
    """Whether a failed try may be repeated without risking a second write.

    ``status`` None: no answer (``sent`` says whether the request may have left).
    """
    if status == 429:
        return True  # refused before acting, for reads and writes alike
    if kind == "read":
        return status is None or status in RETRYABLE_STATUSES
    return status is None and not sent


class Retryable(Exception):
    """A failed try worth another; ``error`` is what the caller sees when the tries run out."""

    def __init__(self, error: GetBillError) -> None:
        super().__init__(str(error))
        self.error = error


class Backoff:
    """The pauses of one call: backoff's exponential sequence with full jitter, drawn only
    after a failure (nothing is computed when the first try succeeds)."""

    __slots__ = ("_policy", "_waits")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._waits: Iterator[float] | None = None

    def pause(self, left: float | None) -> float:
        """The next pause, cut to ``left`` (seconds before the deadline; None: no deadline).

        Args:
            left: what is left of the call's deadline.

        Returns:
            Seconds to sleep before the next try.
        """
        if self._waits is None:
            self._waits = backoff.expo(factor=self._policy.base, max_value=self._policy.cap)
            next(self._waits)  # the generator's first value only primes it
        wait: float = backoff.full_jitter(next(self._waits))
        return wait if left is None else min(wait, left)


async def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    deadline: float | None = None,
    on_retry: Callable[[int, float, GetBillError], None] | None = None,
) -> T:
    """``attempt()`` until it returns, or raises anything but ``Retryable``, or the tries or
    the time run out (then that try's error). The token endpoint's loop.

    Args:
        policy: bounds the tries, and shapes the pauses.
        attempt: one try.
        deadline: ``time.monotonic()`` past which no try starts and no pause runs.
        on_retry: told of each retry (tries so far, the pause, the error).

    Returns:
        What ``attempt()`` returned.

    Raises:
        GetBillError: the last try's error, once the tries or the time ran out.
    """
    tries = 0
    pauses = Backoff(policy)
    while True:
        tries += 1
        try:
            return await attempt()
        except Retryable as failed:
            left = None if deadline is None else deadline - time.monotonic()
            if tries >= policy.max_tries or (left is not None and left <= 0):
                raise failed.error from None
            wait = pauses.pause(left)
            if on_retry is not None:
                on_retry(tries, wait, failed.error)
        await asyncio.sleep(wait)
