"""Retry decisions: small pure functions, easy to read and to test.

What may be tried again without risking a second write, and how long a 429 asks to wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._budget import Kind

__all__ = [
    "MAX_RETRY_AFTER",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
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

    ``max_tries`` bounds the tries of one call (1: never retry); ``max_time`` bounds its
    seconds, budget waits included (``None``: no bound but ``max_tries``); the n-th wait is
    drawn from ``[0, min(cap, base * 2**n)]``. ``reconcile``: after an ambiguous create that
    carries a ``call_id``, look for it among the debt's followups before trying again.
    """

    max_tries: int = 8
    max_time: float | None = None
    base: float = 0.25
    cap: float = 20.0
    reconcile: bool = True

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError(f"RetryPolicy.max_tries must be >= 1, got {self.max_tries!r}")
        if self.max_time is not None and self.max_time <= 0:
            raise ValueError(f"RetryPolicy.max_time must be > 0 or None, got {self.max_time!r}")


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
