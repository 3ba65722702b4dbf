"""Bulk export of followups to JSONL or CSV: resumable, atomic, flushed per page.

    report = await client.followups.export("followups.jsonl", status="delivered")

The output grows in ``<path>.partial``, flushed after every page; a checkpoint beside it,
``<path>.checkpoint``, records the filters, the last page fully written and the file's length
at that point. ``resume=True`` cuts the partial file back to that length and goes on from the
next page (the ids of the last pages are kept, so an item that slid across pages is not
written twice). A resume with other filters or another format is refused. When the last page
is written the partial file is renamed over ``path`` and the checkpoint removed.

Page-number pagination cannot see everything that changes under a long walk (items deleted
mid-walk slide onto pages already read); the report's ``total_changed`` says when to follow
up with an incremental pass (``date_from``).
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT
from ._progress import NullProgress, Progress
from ._validate import fail, list_params
from .errors import GetBillError
from .models import Followup

if TYPE_CHECKING:
    from ._client import GetBillClient

__all__ = ["CSV_COLUMNS", "ExportError", "ExportReport", "export_followups"]

Format = Literal["jsonl", "csv"]
CSV_COLUMNS: tuple[str, ...] = tuple(Followup.__struct_fields__)
_CHECKPOINT_VERSION = 1
_REMEMBERED_PAGES = 10


class ExportError(GetBillError):
    """An export cannot start or resume as asked (a changed filter set, a stray partial)."""


@dataclass(frozen=True)
class ExportReport:
    """What an export did."""

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

    @property
    def total_changed(self) -> bool:
        return self.total_at_start != self.total_at_end


class _Checkpoint(msgspec.Struct):
    version: int
    format: str
    filters: dict[str, str]
    limit: int
    page: int = 0
    items: int = 0
    offset: int = 0
    total_at_start: int | None = None
    recent_ids: list[list[str]] = msgspec.field(default_factory=list)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


class _Writer:
    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self._json = msgspec.json.Encoder()

    def header(self) -> bytes:
        return self._csv([CSV_COLUMNS]) if self.fmt == "csv" else b""

    def page(self, items: list[Followup]) -> bytes:
        if self.fmt == "jsonl":
            return self._json.encode_lines(items)
        return self._csv([[_cell(getattr(f, c)) for c in CSV_COLUMNS] for f in items])

    @staticmethod
    def _csv(rows: Any) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue().encode()


def _save(path: Path, checkpoint: _Checkpoint) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(msgspec.json.encode(checkpoint))
    os.replace(temporary, path)


def _load(path: Path) -> _Checkpoint:
    try:
        checkpoint = msgspec.json.decode(path.read_bytes(), type=_Checkpoint)
    except (OSError, msgspec.DecodeError) as exc:
        raise ExportError(f"cannot read the checkpoint {path}: {exc}") from None
    if checkpoint.version != _CHECKPOINT_VERSION:
        raise ExportError(f"checkpoint {path} is of version {checkpoint.version}")
    return checkpoint


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
    **filters: Any,
) -> ExportReport:
    """Export every followup matching ``filters`` to ``path``; see the module's docstring.

    ``resume``: go on from the checkpoint. ``restart``: discard an unfinished export (without
    either, an unfinished one is refused rather than silently thrown away).
    """
    if format not in ("jsonl", "csv"):
        raise fail("format", f"invalid value {format!r}", ("jsonl", "csv"))
    query = list_params(page=1, limit=limit, **filters)
    chosen = {k: v for k, v in query.items() if k not in ("page", "limit")}
    out_path = Path(path)
    partial = out_path.with_name(out_path.name + ".partial")
    checkpoint_path = out_path.with_name(out_path.name + ".checkpoint")
    progress = progress or NullProgress("export")
    writer = _Writer(format)

    if resume and checkpoint_path.exists() and partial.exists():
        checkpoint = _load(checkpoint_path)
        wanted = {"filters": chosen, "format": format, "limit": limit}
        had = {
            "filters": checkpoint.filters,
            "format": checkpoint.format,
            "limit": checkpoint.limit,
        }
        if wanted != had:
            raise ExportError(
                f"cannot resume {out_path}: the checkpoint was made with {had}, not {wanted}; "
                "run with the same options, or restart"
            )
    elif checkpoint_path.exists() and not (resume or restart):
        raise ExportError(
            f"an unfinished export of {out_path} exists ({checkpoint_path.name}); "
            "resume it, or restart to discard it"
        )
    else:
        checkpoint = _Checkpoint(_CHECKPOINT_VERSION, format, chosen, limit)
        partial.write_bytes(writer.header())
        checkpoint.offset = partial.stat().st_size
        _save(checkpoint_path, checkpoint)

    resumed_from = checkpoint.page
    started = time.monotonic()
    known = [i for ids in checkpoint.recent_ids for i in ids]
    walk = client.followups.pages(
        limit=limit,
        concurrency=concurrency,
        start_page=checkpoint.page + 1,
        known_ids=known,
        **filters,
    )
    recent = [list(ids) for ids in checkpoint.recent_ids]
    with open(partial, "r+b") as out:
        out.truncate(checkpoint.offset)  # drop a page written after the last checkpoint
        out.seek(checkpoint.offset)
        started_progress = False
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
                out.write(writer.page(page.data))
                out.flush()
                recent = (recent + [[f.id for f in page.data]])[-_REMEMBERED_PAGES:]
                checkpoint.page = page.pagination.page
                checkpoint.items += len(page.data)
                checkpoint.offset = out.tell()
                checkpoint.recent_ids = recent
                _save(checkpoint_path, checkpoint)
                status = await client.budget_status()
                progress.update(checkpoint.page, checkpoint.items, status.reads)
        progress.finish()
    os.replace(partial, out_path)
    checkpoint_path.unlink()
    stats = walk.stats
    return ExportReport(
        path=out_path,
        format=format,
        items=checkpoint.items,
        pages=checkpoint.page,
        resumed_from_page=resumed_from,
        duplicates_skipped=stats.duplicates_skipped,
        total_at_start=checkpoint.total_at_start,
        total_at_end=stats.total_at_end if stats.total_at_end is not None else None,
        requests=stats.requests,
        retries=stats.retries,
        budget_waits=stats.budget_waits,
        elapsed=time.monotonic() - started,
    )
