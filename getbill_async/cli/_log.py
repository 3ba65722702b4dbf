"""``getbill log``: create followups from a CSV or JSONL file, resumably, without doubles.

Every row is checked first; bad rows are all reported (line, field, reason) and nothing is
sent, unless ``--skip-invalid``. ``getbill log`` is the outbox fed from a file
(``_log_outbox``): the rows are enqueued into the run's outbox (``<results>.outbox``), whose
drainer sends them and settles what a kill left (by ``call_id``, or held for a person when a
row has none). The results file (``_log_results``) gets one JSON line per row event.
``--resume`` goes on from both: rows created are skipped, failed ones are sent again, held ones
wait for ``--resend-ambiguous``.

SIGINT or SIGTERM: no new row is started, the creates in flight get ``--grace`` seconds to
finish and their outcomes are written; the summary says what was left undone and the exit
status is 130 (SIGINT) or 143 (SIGTERM). A second signal stops at once: what was in flight is
written as ambiguous, and looked up by the next ``--resume``.

The results file belongs to one input (``_log_results`` records its digest) and to one run at
a time (it is locked while the run holds it); it is never the input itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..outbox import Outbox, add_account_argument
from ._log_options import LogOptions
from ._log_outbox import GIVE_UP_AFTER, RETENTION, Report, catch_up, enqueue_rows, outbox_path
from ._log_results import ResultsFile, ResultsMismatch, RowResult, earlier_results
from ._log_rows import InputError, Row, file_digest, print_bad, read_rows

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["LogOptions", "add_arguments", "read_rows", "run_log"]

_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", help="calls.csv or calls.jsonl (required to log)")
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
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read back the rows a run created (--results): missing, doubled, diverged",
    )
    parser.add_argument("--json", action="store_true", help="with --verify: the report as JSON")
    add_account_argument(parser)


class _Stop:
    """The signals of one run: the first stops taking rows (the creates in flight get the
    grace), the second cancels what is in flight."""

    def __init__(self, outbox: Outbox, report: Report, grace: float) -> None:
        self.outbox = outbox
        self.report = report
        self.grace = grace
        self.signal: signal.Signals | None = None
        self.stopped = asyncio.Event()
        self.halting: asyncio.Task[None] | None = None

    def __call__(self, signum: signal.Signals) -> None:
        drainer = self.outbox.drainer
        if self.signal is None:
            self.signal = signum
            self.report.stopping = True
            print(
                f"getbill log: {signum.name}: starting no new rows; waiting up to "
                f"{self.grace:g}s for {drainer.in_flight} creates in flight "
                "(again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            self.halting = asyncio.ensure_future(drainer.stop(self.grace))
            self.stopped.set()
        else:
            drainer.abort()


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
        for signum in installed:
            loop.remove_signal_handler(signum)


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
    if options.resume:
        return None
    if results.exists():
        return f"{results} exists: pass --resume to go on from it, or remove it"
    if outbox_path(results).exists():
        return (
            f"{outbox_path(results)} exists (the outbox of an earlier run): pass --resume "
            "to go on from it, or remove it"
        )
    return None


async def run_log(options: LogOptions, client: GetBillClient) -> int:
    """Run ``getbill log``: check every row, then create the valid ones through the outbox.

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
    results = ResultsFile(options.results)  # locked until closed
    try:
        last = _open_results(results, source, rows)
        if last is None:
            return 2
        return await _log_rows(client, options, rows, bad, Report(results, last))
    finally:
        results.close()


def _open_results(
    results: ResultsFile, source: Path, rows: list[Row]
) -> dict[int, RowResult] | None:
    """What earlier runs wrote to the (locked) results file, by line; None, said on stderr,
    if it is not this input's."""
    digest = file_digest(source)
    if results.empty:
        results.start(source, digest)
        return {}
    keys = {row.line: row.key for row in rows if row.item is not None}
    try:
        return earlier_results(results.path, source, digest, keys)
    except ResultsMismatch as exc:
        print(f"getbill log: {exc}", file=sys.stderr)
        return None


async def _log_rows(
    client: GetBillClient, options: LogOptions, rows: list[Row], bad: list[Row], report: Report
) -> int:
    """Write the bad rows, enqueue the rest into the run's outbox, drain it; the exit status."""
    assert options.results is not None
    for row in bad:
        assert row.problem is not None
        report.write(
            RowResult(row.line, "invalid", reason="ValidationError", error=str(row.problem))
        )
        report.counts["invalid"] += 1
    outbox = Outbox(
        client,
        outbox_path(options.results),
        concurrency=options.concurrency,
        retention=RETENTION,
        give_up_after=GIVE_UP_AFTER,
        on_event=report,
        grace=options.grace,
        account=options.account,
    )
    async with outbox:
        await outbox.reclaim()  # what a killed run had in flight: to look up, or held
        known = {int(e.tag): e for e in await outbox.tagged() if e.tag is not None}
        created = {n for n, r in report.last.items() if r.status == "created"}
        already = created | {n for n, e in known.items() if e.state == "done"}
        catch_up(report, list(known.values()))
        await outbox.requeue(held=options.resend_ambiguous)  # failed rows go again
        todo, check, held = _plan_rows(rows, report.last, known, already, options)
        code = await _drain(outbox, report, todo, check, options.grace)
        entries = await outbox.tagged()
        catch_up(report, entries)
    held |= {int(e.tag) for e in entries if e.state == "held" and e.tag is not None}
    held -= report.settled  # held in this run: counted as ambiguous below
    print(f"log {options.input}: " + _summary(report, len(already), held), flush=True)
    if code:
        return code
    return 1 if any(k.startswith(("failed", "ambiguous")) for k in report.counts) else 0


def _plan_rows(
    rows: list[Row],
    last: dict[int, RowResult],
    known: Collection[int],
    already: set[int],
    options: LogOptions,
) -> tuple[list[Row], set[int], set[int]]:
    """The rows to enqueue, those to look up first, and those held back: a row that a
    results file written without an outbox left unsettled is looked up by ``call_id``, or,
    without one, held (unless ``--resend-ambiguous``)."""
    todo: list[Row] = []
    check: set[int] = set()
    held: set[int] = set()
    for row in rows:
        if row.item is None or row.line in already:
            continue
        seen = last.get(row.line)
        if row.line not in known and seen is not None and seen.status in ("attempt", "ambiguous"):
            if row.item.call_id is not None:
                check.add(row.line)
            elif not options.resend_ambiguous:
                held.add(row.line)
                continue
        todo.append(row)
    return todo, check, held


async def _drain(
    outbox: Outbox, report: Report, todo: list[Row], check: set[int], grace: float
) -> int:
    """Enqueue ``todo`` and wait until the outbox is drained or a signal stops the run; the
    exit status the signal asks for, or 0."""
    stop = _Stop(outbox, report, grace)
    with _signals(stop):
        await _feed_and_join(outbox, todo, check, stop.stopped)
        if stop.signal is None:
            return 0
        assert stop.halting is not None
        await stop.halting
    left = (await outbox.status()).pending - report.cut
    cut = report.cut + report.cut_held
    print(
        f"getbill log: stopped by {stop.signal.name}: {left} rows not started"
        + (f", {cut} cut off in flight (written as ambiguous)" if cut else "")
        + "; run again with --resume to go on",
        file=sys.stderr,
        flush=True,
    )
    return _EXIT[stop.signal]


async def _feed_and_join(
    outbox: Outbox, todo: list[Row], check: set[int], stopped: asyncio.Event
) -> None:
    """Enqueue ``todo``, then wait until the outbox is drained or a signal came. (Polled
    rather than cancelled: a cancel racing the outbox's progress event could be lost.)"""
    await enqueue_rows(outbox, todo, check)
    while not stopped.is_set():
        try:
            await outbox.join(timeout=0.25)
            return
        except TimeoutError:
            continue


def _summary(report: Report, already: int, held: set[int]) -> str:
    """The run's one line: created, already done, found, held back, and every other outcome."""
    counts = report.counts
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
