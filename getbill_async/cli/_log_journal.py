"""The results file of ``getbill log``: a write-ahead journal, one JSON line per event.

Before a create is sent, an ``attempt`` line (row and ``call_id``) is written and fsynced; when
it ends, its outcome: ``created``, ``failed``, ``ambiguous``, ``not_sent`` or ``invalid``. A
kill at any point leaves at most the attempts in flight without an outcome, and ``--resume``
settles those first: by ``call_id`` (found under the debt: created; absent: sent again), or,
without one, held as ambiguous for a person (``--resend-ambiguous`` sends them anyway).

The file opens with a header naming its input (path and SHA-256), and every event carries its
row's ``debt_id`` and ``call_id``: ``--resume`` with another input, or with an input edited
since, is refused (naming both files) instead of skipping rows it never sent. A journal written
before the header existed is read if every row it names still has its ``debt_id``/``call_id``.
The file is locked (``flock``) while a run holds it: a second run is refused.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec

__all__ = ["Journal", "JournalHeader", "JournalMismatch", "JournalState", "RowResult"]

#: The header's ``journal`` version.
VERSION = 2

#: Outcomes after which a row is finished (or will be sent again: ``failed``, ``not_sent``).
OUTCOMES = frozenset({"created", "failed", "ambiguous", "not_sent", "invalid"})


class JournalHeader(msgspec.Struct, forbid_unknown_fields=False):
    """The results file's first line: which input its line numbers refer to."""

    journal: int
    input: str
    sha256: str


class JournalMismatch(Exception):
    """The results file was written for another input, or for this one before an edit."""


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


def _replay(state: JournalState, event: RowResult) -> None:
    line = event.line
    if event.status == "attempt" or event.status == "ambiguous":
        if line not in state.created:
            state.unsettled[line] = (event.debt_id, event.call_id)
    elif event.status == "created":
        state.created.add(line)
        state.unsettled.pop(line, None)
    elif event.status in OUTCOMES:  # failed, not_sent, invalid: nothing happened
        state.unsettled.pop(line, None)


def _disagrees(event: RowResult, keys: Mapping[int, tuple[str | None, str | None]]) -> bool:
    """Whether ``event`` names a ``debt_id``/``call_id`` that its line no longer has."""
    if event.debt_id is None and event.call_id is None:
        return False
    debt_id, call_id = keys.get(event.line, (None, None))
    return (event.debt_id is not None and event.debt_id != debt_id) or (
        event.call_id is not None and event.call_id != call_id
    )


def load(
    path: Path,
    source: Path,
    digest: str,
    keys: Mapping[int, tuple[str | None, str | None]],
) -> JournalState:
    """Replay the journal: the last word on each line wins; a line cut by a crash is skipped.

    Args:
        path: the results file.
        source: the input of this run.
        digest: the input's SHA-256 (hex).
        keys: each valid row's ``(debt_id, call_id)`` by line.

    Returns:
        What the earlier runs left.

    Raises:
        JournalMismatch: the journal was written for another input, or for this one before
            it was edited; the message names both files.
    """
    state = JournalState()
    header: JournalHeader | None = None
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.startswith(b'{"journal"'):
                try:
                    header = msgspec.json.decode(raw, type=JournalHeader)
                except msgspec.DecodeError:
                    continue  # torn by a kill during the first write: nothing was sent yet
                if header.sha256 != digest:
                    raise JournalMismatch(
                        f"{path} holds the results of {header.input} (sha256 "
                        f"{header.sha256[:12]}), not of {source} (sha256 {digest[:12]}): another "
                        "file, or this one edited since; resume with that input, or start a "
                        "new results file"
                    )
                continue
            try:
                event = msgspec.json.decode(raw, type=RowResult)
            except msgspec.DecodeError:
                continue  # the torn tail of a killed run: the attempt before it still counts
            if _disagrees(event, keys):
                raise JournalMismatch(
                    f"{path} line {event.line} is {event.debt_id}/{event.call_id}, but line "
                    f"{event.line} of {source} is not: {path} holds the results of another "
                    "input (or of this one before an edit); start a new results file"
                )
            _replay(state, event)
    return state


class Journal:
    """Appends events to the results file: each written, flushed and fsynced before it counts.

    An ``attempt`` reaches the disk before its create is sent, so no kill (nor power loss)
    can hide a create that happened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()
        try:
            fcntl.flock(self._out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._out.close()
            raise BlockingIOError(
                f"{path} is in use by another process (another getbill log on it?)"
            ) from None
        self._encoder = msgspec.json.Encoder()
        # A torn last line of a killed run must not glue itself to the next event; the newline
        # goes with the first write, so a file refused as another input's is left untouched.
        self._torn = False
        if self._out.tell() > 0:
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                self._torn = handle.read(1) != b"\n"

    @property
    def empty(self) -> bool:
        """Whether nothing was written to the file yet (no header either)."""
        return self._out.tell() == 0

    def start(self, source: Path, digest: str) -> None:
        """Write the header that names the input: the first line of a new results file."""
        header = JournalHeader(journal=VERSION, input=str(source.absolute()), sha256=digest)
        self._out.write(self._encoder.encode(header) + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def write(self, event: RowResult) -> None:
        if self._torn:
            self._out.write(b"\n")
            self._torn = False
        self._out.write(self._encoder.encode(event) + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.close()  # and the lock with it
