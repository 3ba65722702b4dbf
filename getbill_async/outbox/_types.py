"""What the outbox stores and reports: entries' states, the status snapshot, dead letters.

An entry is one write waiting for the budget: a create, or an update of a followup named by
its ``call_id`` (its *key*) or by its id. States::

    pending ──claim──> in_flight ──> done
       ^                   │ ├─────> dead   (refused for good: 400/422, 403, 404)
       └──retry/reclaim────┘ └─────> held   (a create without call_id, outcome unknown)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import GetBillError

__all__ = [
    "Claimed",
    "DeadEntry",
    "EntryEvent",
    "OutboxFullError",
    "OutboxStatus",
    "Outcome",
    "OutboxStoreError",
    "StoreCounts",
]

Op = Literal["create", "update"]
Settled = Literal["done", "dead", "held", "pending"]


class OutboxFullError(GetBillError):
    """The outbox holds ``max_pending`` entries and ``when_full="raise"``: nothing was
    enqueued (and nothing was dropped to make room)."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        super().__init__(
            f"outbox full: {max_pending} entries pending (max_pending); nothing was enqueued"
        )


class OutboxStoreError(GetBillError):
    """The outbox's store cannot be used: a file that is not an outbox database (corrupt,
    or another program's), or a store that cannot be reached. The file is left as it was."""


@dataclass(frozen=True)
class OutboxStatus:
    """A snapshot of an outbox.

    Attributes:
        pending: entries waiting to be sent.
        in_flight: entries being sent now (by any drainer).
        done: sent, and kept for the retention period.
        dead: refused for good (see ``Outbox.dead()``).
        held: creates without ``call_id`` whose outcome is unknown, for a person to check.
        merged: writes saved by merging.
        unkeyed: pending creates without ``call_id`` (they cannot be reconciled after a crash).
        oldest_age: seconds since the oldest pending entry was enqueued (None: none pending).
        eta: seconds to drain the backlog under the current write budget (None: unknown).
    """

    pending: int
    in_flight: int
    done: int
    dead: int
    held: int
    merged: int
    oldest_age: float | None
    eta: float | None
    unkeyed: int = 0

    @property
    def backlog(self) -> int:
        """Writes still to send: ``pending + in_flight``."""
        return self.pending + self.in_flight


@dataclass(frozen=True)
class DeadEntry:
    """A write the API refused for good (or one held for a person).

    Attributes:
        id: names the entry for ``Outbox.requeue``.
        key: its ``call_id`` (or the followup id an update targets; None for a create
            without ``call_id``).
        op: ``create`` or ``update``.
        state: ``dead`` or ``held``.
        fields: the write's fields.
        status: the API's status (None: held, no answer known).
        message: the API's message.
        details: the API's field details.
    """

    id: int
    key: str | None
    op: str
    state: str
    fields: dict[str, Any]
    status: int | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreCounts:
    """Raw counts from a store; the outbox adds the ETA."""

    pending: int
    in_flight: int
    done: int
    dead: int
    held: int
    merged: int
    unkeyed: int
    oldest_enqueued: float | None


@dataclass(frozen=True)
class Claimed:
    """An entry a drainer holds under its lease.

    ``target``: the followup id an update goes to (resolved when claimed); ``check``: a write
    of this entry may have reached the server already, so look before sending again.
    """

    seq: int
    key: str | None
    op: Op
    debt_id: str | None
    fields: dict[str, Any]
    target: str | None
    check: bool
    attempts: int
    tag: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed entry, as its drainer records it (``Store.finish``).

    ``state``: ``done``, ``dead`` (refused for good), ``held`` (a create without ``call_id``
    whose outcome is unknown) or ``pending`` (to be sent again from ``next_try``, a wall-clock
    time; with ``check``, looked up first). ``error`` is the API's answer (``status``,
    ``message``, ``details``, ``kind``). ``attempted`` False: nothing was tried (the budget
    could not be reached, the lease ran out before sending), so the claim does not count
    toward ``give_up_after``. ``found``: a create found by its ``call_id``, not sent.
    """

    state: Settled
    followup_id: str | None = None
    error: dict[str, Any] | None = None
    next_try: float = 0.0
    check: bool = False
    found: bool = False
    attempted: bool = True


@dataclass(frozen=True)
class EntryEvent:
    """What became of one entry: reported to ``Outbox(on_event=...)`` as it happens, and
    listed by ``Outbox.tagged()``.

    ``state`` is ``in_flight`` (claimed; its write is about to be sent), ``done``, ``dead``,
    ``held`` or ``pending`` (back in the queue: to be retried, or, with ``check``, looked up
    first). ``tag`` is the caller's name for the entry (``Outbox.create_tagged``); ``found``
    says a create was found by its ``call_id`` rather than sent; ``error`` is the API's
    answer (``status``, ``message``, ``details``) for a dead, held or retried entry.
    """

    seq: int
    tag: str | None
    key: str | None
    op: str
    debt_id: str | None
    state: str
    followup_id: str | None = None
    error: dict[str, Any] | None = None
    found: bool = False
    check: bool = False
