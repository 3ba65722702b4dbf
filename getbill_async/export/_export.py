"""``export_followups``: one export run, from the checkpoint to the renamed file (see the
package docstring for the formats and the durability rules)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from .._constants import LOGGER_NAME
from ..support import FileLock
from ..transport import KeyedPage, PageWalk
from ._checkpoint import (
    CHECKPOINT_VERSION,
    Checkpoint,
    ExportError,
    fsync_dir,
    load_checkpoint,
    save_checkpoint,
)
from ._formats import CSV_COLUMNS, csv_header, csv_rows, jsonl_lines, raw_pages
from ._options import ExportOptions, Start
from ._progress import NullProgress, Progress
from ._sinks import ByteSink, Sink

if TYPE_CHECKING:
    from ..transport import Sender

__all__ = ["CSV_COLUMNS", "ExportError", "ExportReport", "export_followups"]

log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class ExportReport:
    """What an export did.

    Attributes:
        path: the file written.
        format: ``jsonl``, ``csv`` or ``parquet``.
        items: followups in the file.
        pages: pages in the file.
        resumed_from_page: the page a resume went on after (0: a fresh export).
        duplicates_skipped: items met twice (slid across pages) and written once.
        total_at_start: the server's ``total`` when the export began.
        total_at_end: its ``total`` on the last page (``total_changed``: run an incremental
            pass to catch what slid onto pages already read).
        requests: requests sent, retries included.
        retries: tries repeated after a fault.
        budget_waits: requests that waited for a budget slot.
        elapsed: seconds the run took.
        repaired_pages: pages a resume found damaged on disk and fetched again.
    """

    path: Path
    format: str
    items: int
    pages: int
    resumed_from_page: int  # 0: a fresh export
    duplicates_skipped: int
    total_at_start: int | None
    total_at_end: int | None
    requests: int
    retries: int
    budget_waits: int
    elapsed: float
    repaired_pages: int = 0

    @property
    def total_changed(self) -> bool:
        """Whether ``total`` moved during the export (follow up with an incremental pass)."""
        return self.total_at_start != self.total_at_end


def _sink(out: Path, options: ExportOptions) -> Sink:
    partial = out.with_name(out.name + ".partial")
    if options.format == "parquet":
        from ._parquet import ParquetSink

        return ParquetSink(partial, out.with_name(out.name + ".parts"), options.row_group_pages)
    if options.format == "csv":
        guard = options.formula_guard
        encode: Callable[[list[msgspec.Raw]], bytes] = lambda items: csv_rows(  # noqa: E731
            items, guard
        )
        return ByteSink(partial, encode, csv_header(), options.commit_seconds)
    return ByteSink(partial, jsonl_lines, b"", options.commit_seconds)


def _settings(checkpoint: Checkpoint) -> dict[str, object]:
    """What a resume must match: the filters, the format, the page size, CSV's guard."""
    settings: dict[str, object] = {
        "filters": checkpoint.filters,
        "format": checkpoint.format,
        "limit": checkpoint.limit,
    }
    if checkpoint.format == "csv":
        settings["formula_guard"] = checkpoint.formula_guard
    return settings


def _start(
    sink: Sink, checkpoint_path: Path, fresh: Checkpoint, start: Start
) -> tuple[Checkpoint, int]:
    """The checkpoint to go on from (fresh, or verified against the disk) and pages repaired."""
    out_name = checkpoint_path.name.removesuffix(".checkpoint")
    if start == "resume" and checkpoint_path.exists():
        checkpoint = load_checkpoint(checkpoint_path)
        wanted, had = _settings(fresh), _settings(checkpoint)
        if checkpoint.formula_guard is None:  # written before the setting was recorded
            had.pop("formula_guard", None)
            wanted.pop("formula_guard", None)
        if wanted != had:
            raise ExportError(
                f"cannot resume {out_name}: the checkpoint was made with {had}, not {wanted}; "
                "run with the same options, or restart"
            )
        kept = sink.recover(checkpoint.marks)
        repaired = checkpoint.page - (checkpoint.marks[kept - 1].page if kept else 0)
        if repaired:
            log.warning("export: %d damaged page(s) of %s: fetching them again", repaired, out_name)
            del checkpoint.marks[kept:]
            save_checkpoint(checkpoint_path, checkpoint)
        return checkpoint, repaired
    if checkpoint_path.exists() and start != "restart":
        raise ExportError(
            f"an unfinished export of {out_name} exists ({checkpoint_path.name}); "
            "resume it, or restart to discard it"
        )
    first = sink.fresh()
    if first is not None:
        fresh.marks.append(first)
    save_checkpoint(checkpoint_path, fresh)
    return fresh, 0


class _Run:
    """One export's moving parts: the sink, the checkpoint, and how to commit the pages."""

    def __init__(self, client: Sender, out: Path, options: ExportOptions, progress: Progress):
        self.client, self.out, self.options, self.progress = client, out, options, progress
        self.checkpoint_path = out.with_name(out.name + ".checkpoint")
        self.sink = _sink(out, options)

    def open(self) -> tuple[Checkpoint, int, PageWalk[msgspec.Raw]]:
        """The checkpoint to go on from, the pages a resume repaired, and the walk."""
        options = self.options
        fresh = Checkpoint(CHECKPOINT_VERSION, options.format, options.query(), options.limit)
        if options.format == "csv":  # a resume must guard cells as the first run did
            fresh.formula_guard = options.formula_guard
        checkpoint, repaired = _start(self.sink, self.checkpoint_path, fresh, options.start)
        walk = raw_pages(
            self.client,
            limit=options.limit,
            concurrency=options.concurrency,
            start_page=checkpoint.page + 1,
            known_ids=checkpoint.known_ids(),
            filters=dict(options.filters),
            total_before=checkpoint.total_at_start,
        )
        return checkpoint, repaired, walk

    def discard(self) -> None:
        """Remove what a run that wrote no page left: its checkpoint and its partial output."""
        partial = self.out.with_name(self.out.name + ".partial")
        parts = self.out.with_name(self.out.name + ".parts")
        self.checkpoint_path.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)

    def commit(self, checkpoint: Checkpoint) -> None:
        mark = self.sink.flush()
        if mark is not None:
            checkpoint.push(mark, self.sink.keep_all_marks)
            save_checkpoint(self.checkpoint_path, checkpoint)

    async def copy(self, walk: PageWalk[msgspec.Raw], checkpoint: Checkpoint) -> None:
        """Every page of ``walk`` into the sink, committed as the sink says is due."""
        started = False
        written = checkpoint.items
        number = checkpoint.page  # the page asked, not the one the answer claims to be
        async with walk:
            async for page in walk:
                if not started:
                    if checkpoint.total_at_start is None:
                        checkpoint.total_at_start = page.pagination.total
                    pagination = page.pagination
                    self.progress.start(
                        pagination.pages, pagination.total, checkpoint.page, checkpoint.items
                    )
                    started = True
                assert isinstance(page, KeyedPage)  # what raw_pages yields
                number += 1  # the walk yields every page it asks for, in order, once
                self.sink.write(number, page.data, page.ids)
                written += len(page.data)
                if self.sink.due():
                    self.commit(checkpoint)
                await self._progress(number, written)

    async def _progress(self, number: int, written: int) -> None:
        # The budget figure is the ledger's as the page is shown (a Redis budget asks Redis):
        # asked only for the pages the progress says it will show, never reused later.
        due = getattr(self.progress, "due", None)
        reads = None
        if due is None or due(number):
            reads = (await self.client.budget_status()).reads
        self.progress.update(number, written, reads)

    def finish(self, walk: PageWalk[msgspec.Raw], checkpoint: Checkpoint) -> None:
        self.commit(checkpoint)
        self.progress.finish()
        if checkpoint.total_at_start is None:  # no page had items: the first answer's total
            checkpoint.total_at_start = walk.stats.total_at_start
        self.sink.finish(checkpoint.marks, self.out)
        self.checkpoint_path.unlink()
        fsync_dir(self.out.parent)


async def export_followups(
    client: Sender,
    path: str | os.PathLike[str],
    options: ExportOptions | None = None,
    *,
    progress: Progress | None = None,
) -> ExportReport:
    """Export every followup that ``options.filters`` match to ``path``; see the package
    docstring for the formats and the durability rules.

    Args:
        client: the client (or a view of it) to read through.
        path: the output file.
        options: the format, where to start, the pace and the filters (default: a new
            JSONL export of everything).
        progress: where to show progress (default: nowhere).

    Returns:
        What the export did.

    Raises:
        ExportError: an unfinished export is in the way, or a resume does not match it.
        FileInUseError: another process is exporting to ``path`` now.
        GetBillError: the API failed past the retries (the checkpoint keeps what was written).
    """
    options = options or ExportOptions()
    # The output, its partial and its checkpoint belong to one process for the whole run.
    with FileLock(path, what="export"):
        return await _export(client, Path(path), options, progress or NullProgress("export"))


async def _export(
    client: Sender, path: Path, options: ExportOptions, progress: Progress
) -> ExportReport:
    run = _Run(client, path, options, progress)
    started = time.monotonic()
    nothing_kept = False
    try:
        checkpoint, repaired, walk = run.open()
        resumed_from = checkpoint.page
        try:
            await run.copy(walk, checkpoint)
        except BaseException:
            try:
                run.commit(checkpoint)  # what was written is kept: a resume goes on after it
            except Exception as exc:  # the first failure is the one to report
                log.warning("export: could not checkpoint the last pages: %s", exc)
            # Failed before its first page (bad credentials, say): nothing to resume, so no
            # checkpoint is left to make the next run refuse with "an unfinished export".
            nothing_kept = checkpoint.page == 0
            raise
        run.finish(walk, checkpoint)
    finally:
        run.sink.close()
        if nothing_kept:
            run.discard()
    stats = walk.stats
    return ExportReport(
        path=run.out,
        format=options.format,
        items=checkpoint.items,
        pages=checkpoint.page,
        resumed_from_page=resumed_from,
        duplicates_skipped=stats.duplicates_skipped,
        total_at_start=checkpoint.total_at_start,
        total_at_end=stats.total_at_end,
        requests=stats.requests,
        retries=stats.retries,
        budget_waits=stats.budget_waits,
        elapsed=time.monotonic() - started,
        repaired_pages=repaired,
    )
