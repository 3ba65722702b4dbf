"""``getbill log``: create followups from a CSV or JSONL file, resumably, without doubles.

Every row is checked first; bad rows are all reported (line, field, reason) and nothing is
sent, unless ``--skip-invalid``. The results file is a write-ahead journal (``_log_journal``):
each attempt is on disk before its create is sent, each outcome after. ``--resume`` skips the
rows created, settles the attempts a kill left without an outcome (by ``call_id``), and holds
back, for a person, the ones that may exist and cannot be checked (no ``call_id``).

SIGINT or SIGTERM: no new row is started, the creates in flight get ``--grace`` seconds to
finish and their outcomes are written; the summary says what was left undone and the exit
status is 130 (SIGINT) or 143 (SIGTERM). A second signal stops at once: what was in flight is
written as ambiguous (sent) or not sent.

The results file belongs to one input (``_log_journal`` records its digest) and to one run at
a time (it is locked while the run holds it); it is never the input itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..bulk import CreateBatch, CreateResult
from ..errors import AmbiguousWriteError, GetBillError, WriteNotSentError
from ._log_journal import Journal, JournalMismatch, JournalState, RowResult, load
from ._log_options import LogOptions
from ._log_rows import InputError, Row, file_digest, print_bad, read_rows

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["LogOptions", "add_arguments", "read_rows", "run_log"]

_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", required=True, help="calls.csv or calls.jsonl")
    parser.add_argument("--results", help="where outcomes go (JSONL); required but with --plan")
    parser.add_argument("--resume", action="store_true", help="go on from the results file")
    parser.add_argument("--skip-invalid", action="store_true", help="send the valid rows anyway")
    parser.add_argument(
        "--resend-ambiguous",
        action="store_true",
        help="on --resume, send again the rows without call_id that may already exist",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds the creates in flight get to finish after Ctrl-C or SIGTERM (30)",
    )
    parser.add_argument(
        "--plan", action="store_true", help="check the rows, say how long it would take; no write"
    )


class _Stop:
    """The signals of one run: the first stops taking rows, the second (or the grace's end)
    cancels what is in flight."""

    def __init__(self, batch: CreateBatch, grace: float) -> None:
        self.batch = batch
        self.grace = grace
        self.signal: signal.Signals | None = None
        self.aborted = False
        self._task = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, signum: signal.Signals) -> None:
        if self.signal is None:
            self.signal = signum
            self.batch.stop()
            print(
                f"getbill log: {signum.name}: starting no new rows; waiting up to "
                f"{self.grace:g}s for {self.batch.in_flight} creates in flight "
                "(again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            self._timer = asyncio.get_running_loop().call_later(self.grace, self.abort)
        else:
            self.abort()

    def abort(self) -> None:
        if not self.aborted and self._task is not None:
            self.aborted = True
            self._task.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


@contextlib.contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for signum in _EXIT:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
    try:
        yield
    finally:
        stop.close()
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _settle(
    client: GetBillClient, state: JournalState, journal: Journal
) -> tuple[int, set[int]]:
    """Settle the attempts an earlier run left without an outcome; (found, still unknown)."""
    by_debt: dict[str, dict[str, int]] = {}
    unknown: set[int] = set()
    for line, (debt_id, call_id) in state.unsettled.items():
        if debt_id is not None and call_id is not None:
            by_debt.setdefault(debt_id, {})[call_id] = line
        else:
            unknown.add(line)
    found = 0
    for debt_id, lines in by_debt.items():  # one walk per debt, whatever its rows
        async with client.followups.iterate_for_debt(debt_id) as walk:
            async for followup in walk:
                match = followup.call_id
                at = lines.pop(match, None) if match is not None else None
                if at is None:
                    continue
                journal.write(
                    RowResult(
                        at,
                        "created",
                        id=followup.id,
                        call_id=match,
                        debt_id=debt_id,
                        reason="found by call_id",
                    )
                )
                state.created.add(at)
                found += 1
    return found, unknown


def _outcome(row: Row, result: CreateResult) -> RowResult:
    debt_id, call_id = row.key
    if result.followup is not None:
        return RowResult(
            row.line, "created", id=result.followup.id, call_id=call_id, debt_id=debt_id
        )
    error: GetBillError | None = result.error
    if isinstance(error, AmbiguousWriteError):
        status = "ambiguous"
    elif isinstance(error, WriteNotSentError):
        status = "not_sent"
    else:
        status = "failed"
    return RowResult(
        row.line,
        status,
        call_id=call_id,
        debt_id=debt_id,
        reason=type(error).__name__,
        error=str(error),
    )


def _same_file(source: Path, results: Path) -> bool:
    """Whether both name one file: by device and inode, so symlinks and hard links count."""
    try:
        return os.path.samefile(source, results)
    except OSError:  # one of them does not exist (yet)
        return False


def _refusal(options: LogOptions) -> str | None:
    """Why the run cannot start with these files, before anything is read or written."""
    source, results = options.input, options.results
    if results is None:
        return "--results is required (where outcomes go)"
    if _same_file(source, results):
        return f"--results {results} is the input file {source}: name another file"
    if results.exists() and not options.resume:
        return f"{results} exists: pass --resume to go on from it, or remove it"
    return None


async def run_log(options: LogOptions, client: GetBillClient) -> int:
    """Run ``getbill log``: check every row, then create the valid ones, journaled.

    Args:
        options: what to log, and where the outcomes go.
        client: the client the creates go through.

    Returns:
        The exit status: 0 done, 1 some rows failed or are ambiguous, 2 bad input, 130 or 143
        stopped by a signal.
    """
    if options.plan:
        from ._plan import plan_log

        return await plan_log(options, client)
    source = options.input
    problem = _refusal(options)
    try:
        rows = read_rows(source) if problem is None else []
    except InputError as exc:
        problem = f"{source}:{exc}"
    if problem is not None:
        print(f"getbill log: {problem}", file=sys.stderr)
        return 2
    bad = print_bad(source, rows)
    if bad and not options.skip_invalid:
        print(
            f"{len(bad)} invalid row(s) of {len(rows)}; nothing sent "
            "(fix them, or pass --skip-invalid)",
            file=sys.stderr,
        )
        return 2
    assert options.results is not None
    journal = Journal(options.results)  # locked until closed
    try:
        state = _open_journal(journal, source, rows)
        if state is None:
            return 2
        return await _log_rows(client, options, rows, bad, journal, state)
    finally:
        journal.close()


def _open_journal(journal: Journal, source: Path, rows: list[Row]) -> JournalState | None:
    """What earlier runs left in the (locked) journal; None, said on stderr, if it is not
    this input's."""
    digest = file_digest(source)
    if journal.empty:
        journal.start(source, digest)
        return JournalState()
    keys = {row.line: row.key for row in rows if row.item is not None}
    try:
        return load(journal.path, source, digest, keys)
    except JournalMismatch as exc:
        print(f"getbill log: {exc}", file=sys.stderr)
        return None


async def _log_rows(
    client: GetBillClient,
    options: LogOptions,
    rows: list[Row],
    bad: list[Row],
    journal: Journal,
    state: JournalState,
) -> int:
    """Settle what a kill left, journal the bad rows, send the rest; the exit status."""
    counts: Counter[str] = Counter()
    found, unknown = await _settle(client, state, journal)
    counts["found by call_id"] = found
    held = set() if options.resend_ambiguous else unknown
    already = len(state.created) - found
    for row in bad:
        assert row.problem is not None
        journal.write(
            RowResult(row.line, "invalid", reason="ValidationError", error=str(row.problem))
        )
        counts["invalid"] += 1
    todo = [r for r in rows if r.item is not None and r.line not in state.created | held]
    code = await _create_all(client, options, todo, journal, counts)
    print(f"log {options.input}: " + _summary(counts, already, held), flush=True)
    if code:
        return code
    return 1 if any(k.startswith(("failed", "ambiguous")) for k in counts) else 0


def _summary(counts: Counter[str], already: int, held: set[int]) -> str:
    """The run's one line: created, already done, found, held back, and every other outcome."""
    parts = [f"created {counts.pop('created', 0)}"]
    if already:
        parts.append(f"already done {already}")
    if found := counts.pop("found by call_id", 0):
        parts.append(f"found by call_id {found} (created by an earlier run)")
    if held:
        parts.append(
            f"held back as ambiguous {len(held)} (lines {sorted(held)[:10]}: they may exist; "
            "check them, or pass --resend-ambiguous)"
        )
    parts += [f"{k} {v}" for k, v in sorted(counts.items())]
    return ", ".join(parts)


async def _create_all(
    client: GetBillClient,
    options: LogOptions,
    todo: list[Row],
    journal: Journal,
    counts: Counter[str],
) -> int:
    """Send ``todo``, journaling each attempt first; the exit status a signal asks for, or 0."""

    def feed() -> Iterator[object]:
        for row in todo:
            assert row.item is not None
            journal.write(
                RowResult(row.line, "attempt", call_id=row.item.call_id, debt_id=row.item.debt_id)
            )
            yield row.item

    def record(result: CreateResult) -> None:
        event = _outcome(todo[result.index], result)
        journal.write(event)
        counts["created" if event.status == "created" else f"{event.status}: {event.reason}"] += 1

    batch = client.followups.create_many(feed(), concurrency=options.concurrency)  # type: ignore[arg-type]
    stop = _Stop(batch, options.grace)
    with _signals(stop):
        try:
            async with batch:
                async for result in batch:
                    record(result)
        except asyncio.CancelledError:
            if not stop.aborted:
                raise
    for result in batch.unreported:
        record(result)
    if stop.signal is None:
        return 0
    left = len(todo) - batch.taken
    cut = len(batch.unreported)
    print(
        f"getbill log: stopped by {stop.signal.name}: {left} rows not started"
        + (f", {cut} cut off in flight (written as ambiguous or not sent)" if cut else "")
        + "; run again with --resume to go on",
        file=sys.stderr,
        flush=True,
    )
    return _EXIT[stop.signal]
