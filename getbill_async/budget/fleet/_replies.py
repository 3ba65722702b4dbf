"""How to read the answers of the budget's Lua scripts (``_lua``), and how to build their
arguments."""

from __future__ import annotations

from ...errors import BudgetExhaustedError
from .._types import ClassStatus, Kind, Outcome, ends_cold_start, parse_headers

__all__ = ["ANSWER", "BEHIND", "COLD", "KNOWN", "class_status", "release_args", "sleep_for", "text"]

# Why a refused acquire waits (see ACQUIRE): known, an answer in flight, the cold start's first
# answer, interactive requests ahead. The last two have no estimate: only max_wait bounds them.
KNOWN, ANSWER, COLD, BEHIND = 0, 1, 2, 3


def sleep_for(
    kind: Kind, why: int, wait: float, waited: float, max_wait: float | None, window: float
) -> float:
    """How long to sleep, as ACQUIRE said why it refused; raises when ``max_wait`` is out."""
    if max_wait is None:
        return wait
    if why in (COLD, BEHIND):
        # No estimate: an answer, or an interactive request, is due any moment.
        if waited >= max_wait:
            raise BudgetExhaustedError(kind, 0.0, max_wait, cold=why == COLD)
        return min(wait, max_wait - waited)
    # Only answers can free a slot: a window from now at the soonest.
    estimate = min(wait, window) if why == ANSWER else wait
    if waited + estimate > max_wait:
        raise BudgetExhaustedError(kind, estimate, max_wait)
    return wait


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def class_status(answer: list[bytes | str]) -> ClassStatus:
    """A ``ClassStatus`` from the ``STATUS`` script's answer."""
    lim, win, used, flying, wait, blocked, cold, cap, *shares = (
        float(v.decode() if isinstance(v, bytes) else v) for v in answer[:11]
    )
    return ClassStatus(
        limit=int(lim),
        window=win,
        used=int(used),
        in_flight=int(flying),
        remaining=max(0, int(lim - used - flying)),
        next_slot_in=wait,
        blocked_for=blocked,
        cold=cold == 1,
        reserved=int(lim - cap),
        lanes=dict(zip(("interactive", "bulk", "other"), map(int, shares), strict=True)),
    )


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(float(value))


def release_args(
    slot_id: str, admitted: str, outcome: Outcome, rules: tuple[int, float, float], channel: str
) -> list[str | float]:
    """RELEASE's ARGV (but the generation) for one answer; ``rules``: limit, window, lease."""
    limit, remaining, window = parse_headers(outcome.headers)
    own_limit, own_window, lease = rules
    return [
        slot_id,
        "1" if outcome.sent else "0",
        own_limit,
        own_window,
        lease,
        "" if outcome.status is None else str(outcome.status),
        _number(remaining),
        _number(limit),
        _number(window),
        _number(outcome.retry_after),
        admitted,
        channel,
        "1" if ends_cold_start(outcome) else "0",
    ]
