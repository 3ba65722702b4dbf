"""How long a backlog of writes takes under a write budget, from the budget's own status, and
the ``OutboxStatus`` a store's counts make (built here alone: ``Outbox.status`` and
``getbill outbox status`` show the same thing)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ._types import OutboxStatus, StoreCounts

if TYPE_CHECKING:
    from ..budget import ClassStatus

__all__ = ["eta_seconds", "status_of"]


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


def status_of(counts: StoreCounts, writes: ClassStatus | None) -> OutboxStatus:
    """The snapshot of a store's ``counts``, its ETA under ``writes`` (None: unknown)."""
    oldest = counts.oldest_enqueued
    backlog = counts.pending + counts.in_flight
    return OutboxStatus(
        pending=counts.pending,
        in_flight=counts.in_flight,
        done=counts.done,
        dead=counts.dead,
        held=counts.held,
        merged=counts.merged,
        oldest_age=None if oldest is None else max(0.0, time.time() - oldest),
        eta=None if writes is None else eta_seconds(backlog, writes),
        unkeyed=counts.unkeyed,
    )
