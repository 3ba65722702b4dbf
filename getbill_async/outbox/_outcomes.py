"""What an answer (or its absence) means for an entry: small pure functions the drainer asks.

- **An answer is not a fault.** A 4xx is the API's word on the write: dead, with its status
  and message, whatever the status (400/422, 403, 404, and 409, 410, 413 ... from the API, a
  proxy or a gateway), except 401 (a token fault: the pipeline already refreshed once), 408
  and 425 (the server did not act on it) and 429 (later): those are retried.
- **A write that may have landed** (sent, no usable answer) is looked up before it is sent
  again; a create without ``call_id`` cannot be looked up and is **held**, never resent.
- **Not an attempt**: a write budget that cannot be reached or is full, and a lease that ran
  out before the write was sent. The entry goes back at once and the claim does not count
  toward ``give_up_after``.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Any

import msgspec

from ..errors import (
    AmbiguousWriteError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    BudgetUnavailableError,
    GetBillError,
    RateLimitError,
)
from ..models import Followup
from ._types import Claimed, Outcome

__all__ = ["RETRIED_4XX", "applied", "backoff", "cut_off", "error_of", "judge"]

#: The 4xx answers that say "not now" rather than "no": retried.
RETRIED_4XX = frozenset({401, 408, 425, 429})
_DATETIMES = ("call_date", "scheduled_at")
_NO_KEY = "no call_id to look it up"


def error_of(exc: BaseException) -> dict[str, Any]:
    """An error as an entry keeps it: status, the API's message, field details, its kind."""
    kind = type(exc).__name__
    if isinstance(exc, APIError):
        return {"status": exc.status, "message": exc.message, "details": exc.details, "kind": kind}
    return {"status": None, "message": str(exc), "details": {}, "kind": kind}


def applied(current: Followup, fields: dict[str, Any]) -> bool:
    """Whether the followup already carries every field of an update."""
    for name, value in fields.items():
        have = getattr(current, name, msgspec.UNSET)
        if name in _DATETIMES and isinstance(value, str):
            value = msgspec.convert(value, datetime)
        if have != value:
            return False
    return True


def backoff(attempts: int, exc: BaseException | None) -> float:
    """Seconds before the next try: what a 429 or the budget said, else exponential."""
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        return float(exc.retry_after)
    if isinstance(exc, BudgetExhaustedError):
        return float(exc.retry_in)
    return min(60.0, 0.25 * 2.0 ** min(attempts, 8)) * (0.5 + random.random() / 2)


def refused(exc: GetBillError) -> bool:
    """Whether ``exc`` is the API's final word on the write (see the module docstring)."""
    if not isinstance(exc, APIError) or isinstance(exc, (AuthenticationError, RateLimitError)):
        return False
    status = exc.status
    return status is None or (400 <= status < 500 and status not in RETRIED_4XX)


def cut_off(entry: Claimed, sent: bool) -> Outcome:
    """The outcome of a write cancelled in flight (``close`` past its grace, ``abort``)."""
    if not sent:
        return Outcome("pending", check=entry.check, attempted=False)
    if entry.op == "create" and entry.key is None:
        message = f"cut off in flight after it was sent; {_NO_KEY}"
        return Outcome("held", error={"status": None, "message": message, "details": {}})
    return Outcome("pending", check=True)


def judge(
    entry: Claimed, exc: GetBillError, *, sent: bool, lease_out: bool, give_up_after: int | None
) -> Outcome:
    """The outcome of a write that raised ``exc``.

    Args:
        entry: the entry.
        exc: what the client raised.
        sent: whether any try of the write left this process.
        lease_out: the entry's lease (by this drainer's clock) ran out during the call.
        give_up_after: attempts after which a write known not to have been sent is dead.
    """
    if isinstance(exc, AmbiguousWriteError) or (sent and not isinstance(exc, APIError)):
        if entry.op == "create" and entry.key is None:
            error = {**error_of(exc), "message": f"{exc}; {_NO_KEY}"}
            return Outcome("held", error=error)
        return Outcome("pending", next_try=_later(entry, exc), check=True, error=error_of(exc))
    if refused(exc):
        return Outcome("dead", error=error_of(exc))
    if isinstance(exc, (BudgetUnavailableError, BudgetExhaustedError)) or (
        lease_out and isinstance(exc, APITimeoutError)
    ):
        wait = 0.0 if lease_out else backoff(entry.attempts, exc)
        return Outcome("pending", next_try=time.time() + wait, check=entry.check, attempted=False)
    limit = give_up_after
    if limit is not None and not entry.check and entry.attempts >= limit:
        return Outcome("dead", error=error_of(exc))
    return Outcome("pending", next_try=_later(entry, exc), check=entry.check, error=error_of(exc))


def _later(entry: Claimed, exc: BaseException) -> float:
    return time.time() + backoff(entry.attempts, exc)
