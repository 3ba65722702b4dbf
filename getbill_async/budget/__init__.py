"""The rate budget: its vocabulary (``_types``), the sliding-window ledger that mirrors the
server's count (``_ledger``), and the budget of one process (``_local``). ``fleet/`` shares
one budget between processes through Redis (the ``redis`` extra); it is imported only when
asked for, so this package needs no Redis.
"""

from ._local import LocalBudget
from ._types import (
    LANES,
    Budget,
    BudgetStatus,
    ClassStatus,
    Clock,
    Kind,
    Lane,
    MonotonicClock,
    Outcome,
    RateLimit,
    Slot,
    parse_headers,
)

__all__ = [
    "LANES",
    "Budget",
    "BudgetStatus",
    "ClassStatus",
    "Clock",
    "Kind",
    "Lane",
    "LocalBudget",
    "MonotonicClock",
    "Outcome",
    "RateLimit",
    "Slot",
    "parse_headers",
]
