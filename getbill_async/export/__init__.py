"""Bulk export of followups to JSONL, CSV or Parquet: resumable, atomic, durable, lossless.

    report = await client.followups.export("followups.jsonl", status="delivered")

Formats:

- ``jsonl``: each followup exactly as the server sent it, one per line, fields the SDK does
  not know yet included (an item the server spread over several lines is made one line).
- ``csv``: a header, the documented fields as columns, and one ``extra`` column holding the
  fields the SDK does not know yet as a JSON object (empty when there are none). Text cells
  that begin with ``=``, ``+``, ``-``, ``@``, a tab or a CR get a leading ``'`` so that a
  spreadsheet shows them instead of running them as formulas (CSV injection: a debtor's
  notes are data an outsider can write). Numbers, booleans and datetimes are never touched.
  Pass ``formula_guard=False`` (``--no-formula-guard``) when the file is for a program.
- ``parquet`` (the ``parquet`` extra): see ``getbill_async.export._parquet``.

Durability: the output grows in ``<path>.partial`` (Parquet: part files in ``<path>.parts/``).
After each page (Parquet: each part) the data is fsynced, then the checkpoint
``<path>.checkpoint`` is written to a temporary file, fsynced and renamed, and the directory
fsynced. The checkpoint records the filters, and for each recent page its bytes' place and
SHA-256 and its ids. ``resume=True`` checks the partial file against it from the newest page
back: a page written after the checkpoint is cut off, a page whose bytes were lost (a disk
that dropped its tail in a power cut) is fetched again, and a file damaged past the pages
the checkpoint remembers is refused with a message naming it. A short file is never padded.
The ids of the last pages are kept, so an item that slid across pages is not written twice.
A resume with other filters or another format is refused. At the end the partial file is
renamed over ``path``, the directory fsynced, and the checkpoint removed.

Page-number pagination cannot see everything that changes under a long walk (items deleted
mid-walk slide onto pages already read); the report's ``total_changed`` says when to follow
up with an incremental pass (``date_from``, or ``getbill sync``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._budget import ClassStatus
from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT, LOGGER_NAME
from .._pagination import KeyedPage
from .._progress import NullProgress, Progress
from .._validate import fail, list_params
from ._checkpoint import (
    CHECKPOINT_VERSION,
    Checkpoint,
    ExportError,
    fsync_dir,
    load_checkpoint,
    save_checkpoint,
)
from ._formats import CSV_COLUMNS, csv_header, csv_rows, jsonl_lines, raw_pages
from ._sinks import COMMIT_SECONDS, ByteSink, Sink

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["CSV_COLUMNS", "ExportError", "ExportReport", "Format", "export_followups"]

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")
log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class ExportReport:
    """What an export did. ``repaired_pages``: pages a resume found damaged and fetched again."""

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
        return self.total_at_start != self.total_at_end


def _sink(
    fmt: str, out: Path, formula_guard: bool, row_group_pages: int, commit_seconds: float
) -> Sink:
    partial = out.with_name(out.name + ".partial")
    if fmt == "parquet":
        from ._parquet import ParquetSink

        return ParquetSink(partial, out.with_name(out.name + ".parts"), row_group_pages)
    if fmt == "csv":
        encode: Callable[[list[msgspec.Raw]], bytes] = lambda items: csv_rows(  # noqa: E731
            items, formula_guard
        )
        return ByteSink(partial, encode, csv_header(), commit_seconds)
    return ByteSink(partial, jsonl_lines, b"", commit_seconds)


def _start(
    sink: Sink, checkpoint_path: Path, fresh: Checkpoint, resume: bool, restart: bool
) -> tuple[Checkpoint, int]:
    """The checkpoint to go on from (fresh, or verified against the disk) and pages repaired."""
    out_name = checkpoint_path.name.removesuffix(".checkpoint")
    if resume and checkpoint_path.exists():
        checkpoint = load_checkpoint(checkpoint_path)
        wanted = {"filters": fresh.filters, "format": fresh.format, "limit": fresh.limit}
        had = {
            "filters": checkpoint.filters,
            "format": checkpoint.format,
            "limit": checkpoint.limit,
        }
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
    if checkpoint_path.exists() and not restart:
        raise ExportError(
            f"an unfinished export of {out_name} exists ({checkpoint_path.name}); "
            "resume it, or restart to discard it"
        )
    first = sink.fresh()
    if first is not None:
        fresh.marks.append(first)
    save_checkpoint(checkpoint_path, fresh)
    return fresh, 0


async def export_followups(
    client: GetBillClient,
    path: str | os.PathLike[str],
    *,
    format: Format = "jsonl",
    resume: bool = False,
    restart: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit: int = DEFAULT_PAGE_LIMIT,
    progress: Progress | None = None,
    formula_guard: bool = True,
    row_group_pages: int = 10,
    commit_seconds: float = COMMIT_SECONDS,
    **filters: Any,
) -> ExportReport:
    """Export every followup matching ``filters`` to ``path``; see the module's docstring.

    ``resume``: go on from the checkpoint. ``restart``: discard an unfinished export (without
    either, an unfinished one is refused rather than silently thrown away). ``formula_guard``
    (CSV): prefix cells a spreadsheet would run as formulas. ``row_group_pages`` (Parquet):
    pages per row group and per commit. ``commit_seconds`` (JSONL, CSV): how often written
    pages are fsynced and checkpointed (0: after every page; every stop commits too).
    """
    if format not in FORMATS:
        raise fail("format", f"invalid value {format!r}", FORMATS)
    if isinstance(row_group_pages, bool) or not isinstance(row_group_pages, int):
        raise fail("row_group_pages", f"must be an integer >= 1, got {row_group_pages!r}")
    if row_group_pages < 1:
        raise fail("row_group_pages", f"must be an integer >= 1, got {row_group_pages!r}")
    query = list_params(page=1, limit=limit, **filters)
    chosen = {k: v for k, v in query.items() if k not in ("page", "limit")}
    out_path = Path(path)
    checkpoint_path = out_path.with_name(out_path.name + ".checkpoint")
    progress = progress or NullProgress("export")
    if not isinstance(commit_seconds, (int, float)) or not 0 <= commit_seconds < 3600:
        raise fail(
            "commit_seconds", f"must be a number of seconds in [0, 3600), got {commit_seconds!r}"
        )
    sink = _sink(format, out_path, formula_guard, row_group_pages, commit_seconds)
    started = time.monotonic()
    try:
        fresh = Checkpoint(CHECKPOINT_VERSION, format, chosen, limit)
        checkpoint, repaired = _start(sink, checkpoint_path, fresh, resume, restart)
        resumed_from = checkpoint.page
        walk = raw_pages(
            client,
            limit=limit,
            concurrency=concurrency,
            start_page=checkpoint.page + 1,
            known_ids=checkpoint.known_ids(),
            filters=filters,
        )
        started_progress = False
        written = checkpoint.items
        reads: ClassStatus | None = None
        status_at = -1.0

        def commit() -> None:
            mark = sink.flush()
            if mark is not None:
                checkpoint.push(mark, sink.keep_all_marks)
                save_checkpoint(checkpoint_path, checkpoint)

        try:
            async with walk:
                async for page in walk:
                    if not started_progress:
                        if checkpoint.total_at_start is None:
                            checkpoint.total_at_start = page.pagination.total
                        progress.start(
                            page.pagination.pages,
                            page.pagination.total,
                            checkpoint.page,
                            checkpoint.items,
                        )
                        started_progress = True
                    number = page.pagination.page
                    assert isinstance(page, KeyedPage)  # what raw_pages yields
                    sink.write(number, page.data, page.ids)
                    written += len(page.data)
                    if sink.due():
                        commit()
                    if time.monotonic() - status_at >= 1.0:  # a Redis budget asks Redis
                        reads, status_at = (await client.budget_status()).reads, time.monotonic()
                    progress.update(number, written, reads)
        except BaseException:
            try:
                commit()  # what was written is kept: a resume goes on after it
            except Exception as exc:  # the first failure is the one to report
                log.warning("export: could not checkpoint the last pages: %s", exc)
            raise
        commit()
        progress.finish()
        if checkpoint.total_at_start is None:  # no page had items: the first answer's total
            checkpoint.total_at_start = walk.stats.total_at_start
        sink.finish(checkpoint.marks, out_path)
        checkpoint_path.unlink()
        fsync_dir(out_path.parent)
    finally:
        sink.close()
    stats = walk.stats
    return ExportReport(
        path=out_path,
        format=format,
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
