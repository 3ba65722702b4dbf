"""The results file of ``getbill log``: one JSON line per row event, for a person and a script.

The outbox beside it (``<results>.outbox``) is what makes a run safe to kill; this file
reports what happened: ``attempt`` when a row's create is about to be sent, then its outcome
(``created``, ``failed``, ``ambiguous``, ``invalid``). Each line carries the row's ``line``,
``debt_id`` and ``call_id``; ``created`` carries the followup ``id``.

The file opens with a header naming its input (path and SHA-256): ``--resume`` with another
input, or with an input edited since, is refused (naming both files) instead of skipping rows
it never sent. A file written before the header existed is read if every row it names still
has its ``debt_id``/``call_id``. The file is locked (``support.FileLock``) while a run holds
it: a second run is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import msgspec

from ..support import FileLock

__all__ = ["ResultsFile", "ResultsHeader", "ResultsMismatch", "RowResult", "earlier_results"]

#: The header's ``journal`` version (the key keeps its first name: scripts read it).
VERSION = 2


class ResultsHeader(msgspec.Struct, forbid_unknown_fields=False):
    """The results file's first line: which input its line numbers refer to."""

    journal: int
    input: str
    sha256: str


class ResultsMismatch(Exception):
    """The results file was written for another input, or for this one before an edit."""


class RowResult(msgspec.Struct, omit_defaults=True):
    """One line of the results file: what happened to one input row."""

    line: int
    status: str  # attempt | created | failed | ambiguous | not_sent | invalid
    id: str | None = None
    call_id: str | None = None
    debt_id: str | None = None
    reason: str | None = None
    error: str | None = None


def _disagrees(event: RowResult, keys: Mapping[int, tuple[str | None, str | None]]) -> bool:
    """Whether ``event`` names a ``debt_id``/``call_id`` that its line no longer has."""
    if event.debt_id is None and event.call_id is None:
        return False
    debt_id, call_id = keys.get(event.line, (None, None))
    return (event.debt_id is not None and event.debt_id != debt_id) or (
        event.call_id is not None and event.call_id != call_id
    )


def _check_header(raw: bytes, path: Path, source: Path, digest: str) -> None:
    try:
        header = msgspec.json.decode(raw, type=ResultsHeader)
    except msgspec.DecodeError:
        return  # torn by a kill during the first write: nothing was sent yet
    if header.sha256 != digest:
        raise ResultsMismatch(
            f"{path} holds the results of {header.input} (sha256 "
            f"{header.sha256[:12]}), not of {source} (sha256 {digest[:12]}): another "
            "file, or this one edited since; resume with that input, or start a "
            "new results file"
        )


def earlier_results(
    path: Path,
    source: Path,
    digest: str,
    keys: Mapping[int, tuple[str | None, str | None]],
) -> dict[int, RowResult]:
    """The last word on each line of an earlier run's results; a line cut by a kill is
    skipped.

    Args:
        path: the results file.
        source: the input of this run.
        digest: the input's SHA-256 (hex).
        keys: each valid row's ``(debt_id, call_id)`` by line.

    Returns:
        Each line's last event.

    Raises:
        ResultsMismatch: the file was written for another input, or for this one before it
            was edited; the message names both files.
    """
    last: dict[int, RowResult] = {}
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.startswith(b'{"journal"'):
                _check_header(raw, path, source, digest)
                continue
            try:
                event = msgspec.json.decode(raw, type=RowResult)
            except msgspec.DecodeError:
                continue  # the torn tail of a killed run
            if _disagrees(event, keys):
                raise ResultsMismatch(
                    f"{path} line {event.line} is {event.debt_id}/{event.call_id}, but line "
                    f"{event.line} of {source} is not: {path} holds the results of another "
                    "input (or of this one before an edit); start a new results file"
                )
            last[event.line] = event
    return last


class ResultsFile:
    """Appends events to the results file, each line flushed as it is written.

    The file reports; it does not decide. What was sent is known from the run's outbox, so a
    line lost to a kill is written again by the next ``--resume``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(path, what="getbill log")
        self._lock.acquire()  # FileInUseError while another run holds the results file
        try:
            self._out: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()
        except BaseException:
            self._lock.release()
            raise
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
        header = ResultsHeader(journal=VERSION, input=str(source.absolute()), sha256=digest)
        self._out.write(self._encoder.encode(header) + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def write(self, event: RowResult) -> None:
        """Append one event (a whole line)."""
        if self._torn:
            self._out.write(b"\n")
            self._torn = False
        self._out.write(self._encoder.encode(event) + b"\n")
        self._out.flush()

    def close(self) -> None:
        """Flush to disk, close, and release the lock."""
        try:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
        finally:
            self._lock.release()
