"""How long a backlog of writes takes under a write budget, from the budget's own status."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..budget import ClassStatus

__all__ = ["eta_seconds"]


def eta_seconds(backlog: int, writes: ClassStatus) -> float:
    """Seconds until ``backlog`` more writes can have been admitted by ``writes``.

    The bulk lane may use ``limit - reserved`` slots a window; what is left now goes at once,
    the next slot opens in ``next_slot_in`` and each further window admits one more batch.
    A cold budget (one at a time) is counted like a warm one: the first answer warms it.
    """
    if backlog <= 0:
        return 0.0
    per_window = max(1, writes.limit - writes.reserved)
    now = max(0, writes.remaining - writes.reserved)
    if backlog <= now:
        return 0.0
    rest = backlog - now
    wait = max(writes.next_slot_in, writes.blocked_for)
    return wait + (math.ceil(rest / per_window) - 1) * writes.window
