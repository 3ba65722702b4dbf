"""``getbill log``'s rows through the outbox: enqueue, drain, and report each row's outcome.

The run's outbox is a SQLite file beside the results file (``<results>.outbox``). Each valid
row is a create tagged with its input line, so feeding the same file again (``--resume``)
enqueues each row once. The outbox's drainer sends them (bulk lane, ``--concurrency``) and
does the write-ahead work: an entry is durably in flight before its create is sent; after a
kill, one with a ``call_id`` is looked up under its debt (found: done; absent: sent), one
without is held for a person (``--resend-ambiguous`` sends it again). Each event is written to
the results file as it happens; outcomes a kill kept from it are written by the next run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..outbox import EntryEvent, Outbox
from ._log_results import ResultsFile, RowResult
from ._log_rows import Row

__all__ = ["Report", "catch_up", "enqueue_rows", "outbox_path", "status_of"]

#: Rows enqueued per group commit.
CHUNK = 1_000
#: Attempts after which a create known not to have been sent counts as failed for this run
#: (``--resume`` sends it again).
GIVE_UP_AFTER = 5
#: Done entries are kept this long: a ``--resume`` months later still knows them.
RETENTION = 10 * 365 * 86_400.0

_FINAL = {"done": "created", "dead": "failed", "held": "ambiguous"}


def outbox_path(results: Path) -> Path:
    """The outbox file of the run whose results go to ``results``."""
    return results.with_name(results.name + ".outbox")


def status_of(event: EntryEvent) -> str | None:
    """The results file's status for an outbox entry's state (None: not settled yet)."""
    return _FINAL.get(event.state)


@dataclass
class Report:
    """Turns the outbox's events into results lines and the run's counts."""

    results: ResultsFile
    last: dict[int, RowResult]
    stopping: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    settled: set[int] = field(default_factory=set)  # lines with an outcome in this run
    cut: int = 0  # cut off in flight by a second signal, back to pending (to look up)
    cut_held: int = 0  # cut off after it was sent, without call_id: held

    def write(self, event: RowResult) -> None:
        """Write ``event`` and remember it as its line's last word."""
        self.results.write(event)
        self.last[event.line] = event

    def __call__(self, event: EntryEvent) -> None:
        if event.tag is None:
            return
        line = int(event.tag)
        if event.state == "in_flight":
            self.write(RowResult(line, "attempt", call_id=event.key, debt_id=event.debt_id))
        elif event.state == "pending":
            if self.stopping and event.check:  # cancelled by a second signal, maybe sent
                self.cut += 1
                self.write(_result(line, event, "ambiguous", "cut off in flight"))
        elif (status := status_of(event)) is not None:
            result = _result(line, event, status)
            self.write(result)
            if self.stopping and event.state == "held":
                self.cut_held += 1
            self.settled.add(line)
            if event.found:
                self.counts["found by call_id"] += 1
            elif status == "created":
                self.counts["created"] += 1
            else:
                self.counts[f"{status}: {result.reason}"] += 1


def _result(line: int, event: EntryEvent, status: str, reason: str | None = None) -> RowResult:
    error = event.error or {}
    if status == "created":
        reason = reason or ("found by call_id" if event.found else None)
        return RowResult(
            line, status, id=event.followup_id, call_id=event.key, debt_id=event.debt_id,
            reason=reason,
        )  # fmt: skip
    return RowResult(
        line,
        status,
        call_id=event.key,
        debt_id=event.debt_id,
        reason=reason or str(error.get("kind") or "AmbiguousWriteError"),
        error=str(error.get("message") or "outcome unknown: no call_id to look it up"),
    )


def catch_up(report: Report, entries: list[EntryEvent]) -> None:
    """Write the outcomes the outbox knows and the results file does not (a kill came
    between the two), without counting them as this run's."""
    for entry in entries:
        status = status_of(entry)
        if entry.tag is None or status is None:
            continue
        line = int(entry.tag)
        if (seen := report.last.get(line)) is None or seen.status != status:
            report.write(_result(line, entry, status))


async def enqueue_rows(outbox: Outbox, rows: list[Row], check: set[int]) -> None:
    """Enqueue ``rows`` as creates tagged by line, a chunk per group commit; those in
    ``check`` are looked up by ``call_id`` before they are sent."""
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        await asyncio.gather(
            *(
                outbox.create_tagged(str(row.line), row.item, check=row.line in check)
                for row in chunk
                if row.item is not None
            )
        )
