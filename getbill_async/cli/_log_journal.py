"""The results file of ``getbill log``: a write-ahead journal, one JSON line per event.

Before a create is sent, an ``attempt`` line (row and ``call_id``) is written and fsynced; when
it ends, its outcome: ``created``, ``failed``, ``ambiguous``, ``not_sent`` or ``invalid``. A
kill at any point leaves at most the attempts in flight without an outcome, and ``--resume``
settles those first: by ``call_id`` (found under the debt: created; absent: sent again), or,
without one, held as ambiguous for a person (``--resend-ambiguous`` sends them anyway).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec

__all__ = ["Journal", "JournalState", "RowResult"]

#: Outcomes after which a row is finished (or will be sent again: ``failed``, ``not_sent``).
OUTCOMES = frozenset({"created", "failed", "ambiguous", "not_sent", "invalid"})


class RowResult(msgspec.Struct, omit_defaults=True):
    line: int
    status: str  # attempt | created | failed | ambiguous | not_sent | invalid
    id: str | None = None
    call_id: str | None = None
    debt_id: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass
class JournalState:
    """What an earlier run left: rows created, and rows whose outcome is unknown."""

    created: set[int] = field(default_factory=set)
    # line -> (debt_id, call_id or None): sent, or maybe sent, with no known outcome
    unsettled: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)


def load(path: Path) -> JournalState:
    """Replay the journal: the last word on each line wins; a line cut by a crash is skipped."""
    state = JournalState()
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                event = msgspec.json.decode(raw, type=RowResult)
            except msgspec.DecodeError:
                continue  # the torn tail of a killed run: the attempt before it still counts
            line = event.line
            if event.status == "attempt" or event.status == "ambiguous":
                if line not in state.created:
                    state.unsettled[line] = (event.debt_id, event.call_id)
            elif event.status == "created":
                state.created.add(line)
                state.unsettled.pop(line, None)
            elif event.status in OUTCOMES:  # failed, not_sent, invalid: nothing happened
                state.unsettled.pop(line, None)
    return state


class Journal:
    """Appends events to the results file: each written, flushed and fsynced before it counts.

    An ``attempt`` reaches the disk before its create is sent, so no kill (nor power loss)
    can hide a create that happened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._encoder = msgspec.json.Encoder()
        # A torn last line of a killed run must not glue itself to the next event.
        if self._out.tell() > 0:
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    self._out.write(b"\n")

    def write(self, event: RowResult) -> None:
        self._out.write(self._encoder.encode(event) + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.close()
