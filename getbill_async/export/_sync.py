"""Incremental sync: a directory of day partitions kept current with as few reads as possible.

    report = await client.followups.sync("followups/", state="sync.json", format="parquet")

The first run exports everything and writes one partition per activity day (``call_date``,
else ``scheduled_at``, as a UTC day: the day the API's date filters see):
``DIR/date=YYYY-MM-DD/part.parquet`` (or ``part.jsonl``), plus
``DIR/date=__HIVE_DEFAULT_PARTITION__/`` for followups with neither date (Hive's name for a
null partition value, which DuckDB and Spark read as NULL). Each later run fetches only the
followups dated from ``lag_days`` before the last run's day onwards (``date_from``): the new
days, and the recent ones again, because followups still change status after their day.
Every partition of that range is rebuilt from what the server says now, and one that has
nothing left is removed. Followups without a date, or dated before the lag window, are only
seen again by a full run (a new state file).

Rejected items: a followup whose ``call_date`` or ``scheduled_at`` does not decode as an ISO
8601 date-time (``"2024-01-22 10:30"``), or whose UTC day falls outside years 1..9999
(``"0001-01-01T00:00:00+01:00"``), cannot be filed by day. It is kept, byte for byte,
in ``DIR/_rejected.jsonl`` (JSONL whatever the format; the leading ``_`` keeps Hive readers
away from it), one line per id: a full run rewrites the file with its own rejects; a later
run adds its rejects, replacing the line of an id it rejects again and dropping the line of
an id it now files by day. One bad item never stops a sync.

Crash safety: the state file says which run is under way and how far it got. The fetch is an
ordinary resumable export to ``DIR/.sync/``; its pages are then split by day into staged
partitions, and the state records the list before they are moved into place, each partition
file replaced by one atomic rename. A run killed at any point is finished by the next one,
with the same range: no page is fetched twice, and the state moves on only when every
partition of the run is in place. (While a run is unfinished, a reader may see some
partitions already new and others still old.)
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ..support import FileLock, check_int, fail
from ._checkpoint import (
    ExportError,
    fsync_dir,
    replace_durably,
    save_atomically,
)
from ._days import NO_DATE, REJECTED, Rejects, split_by_day
from ._export import export_followups
from ._options import ExportOptions, Start

if TYPE_CHECKING:
    from ..transport import Sender
    from ._progress import Progress

__all__ = [
    "NO_DATE",
    "REJECTED",
    "SyncReport",
    "sync_day",
    "sync_followups",
    "window_start",
]

_STATE_VERSION = 1


class _Pending(msgspec.Struct):
    today: str
    date_from: str | None  # None: a full run
    phase: str = "fetch"  # fetch, then install
    days: list[str] = msgspec.field(default_factory=list)


class _State(msgspec.Struct):
    version: int
    format: str
    synced_through: str | None = None
    pending: _Pending | None = None


@dataclass(frozen=True)
class SyncReport:
    """What a sync did.

    Attributes:
        full: a first run (everything was fetched).
        date_from: the day the run fetched from (None on a full run).
        items: followups fetched.
        requests: requests sent.
        partitions_written: day partitions written or replaced.
        partitions_removed: day partitions removed (no followup left on that day).
        resumed: whether the run finished an earlier, interrupted one.
        elapsed: seconds the run took.
        rejected: items kept aside in ``_rejected.jsonl`` (dates that do not decode).
    """

    full: bool
    date_from: str | None
    items: int
    requests: int
    partitions_written: int
    partitions_removed: int
    resumed: bool
    elapsed: float
    rejected: int = 0  # items of this run kept in DIR/_rejected.jsonl (dates that do not decode)


def sync_day(today: date | str | None) -> date:
    """The day a run is for.

    Args:
        today: a date or ``YYYY-MM-DD`` (None: today in UTC).

    Returns:
        The day.

    Raises:
        ValidationError: ``today`` is not a date.
    """
    day = today if today is not None else datetime.now(timezone.utc).date()
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise fail("today", f"must be a date or 'YYYY-MM-DD', got {day!r}") from None
    return day


def window_start(synced_through: str | None, lag_days: int) -> str | None:
    """The lag-window rule: the ``date_from`` of a run after one for day ``synced_through``.

    Args:
        synced_through: the day of the last finished run (None: none yet).
        lag_days: days fetched again, because followups still change status after their day.

    Returns:
        ``YYYY-MM-DD``, ``lag_days`` before ``synced_through``; None for a full run.
    """
    if synced_through is None:
        return None
    return (date.fromisoformat(synced_through) - timedelta(days=lag_days)).isoformat()


def _save(path: Path, state: _State) -> None:
    save_atomically(path, msgspec.json.encode(state))


def _load(path: Path, fmt: str) -> _State:
    if not path.exists():
        return _State(_STATE_VERSION, fmt)
    try:
        state = msgspec.json.decode(path.read_bytes(), type=_State)
    except (OSError, msgspec.DecodeError) as exc:
        raise ExportError(f"cannot read the sync state {path}: {exc}") from None
    if state.version != _STATE_VERSION:
        raise ExportError(f"sync state {path} is of version {state.version}; start a new one")
    if state.format != fmt:
        raise ExportError(
            f"the partitions of sync state {path} are {state.format}, not {fmt}: use "
            f"--format {state.format}, or a new state file and directory"
        )
    return state


def _in_range(day: str, date_from: str | None) -> bool:
    """Whether partition ``day`` is one a run from ``date_from`` rebuilds."""
    if date_from is None:
        return True
    return day != NO_DATE and day >= date_from


def _install(out: Path, staging: Path, pending: _Pending, suffix: str) -> tuple[int, int]:
    """Move the staged partitions into place and remove the emptied ones; idempotent."""
    name = f"part.{suffix}"
    for day in pending.days:
        staged = staging / f"date={day}" / name
        if staged.exists():  # absent: moved by an earlier, killed attempt
            final = out / f"date={day}"
            final.mkdir(exist_ok=True)
            replace_durably(staged, final / name)
    staged = staging / REJECTED
    if staged.exists():  # absent: moved by an earlier, killed attempt
        if staged.stat().st_size:
            replace_durably(staged, out / REJECTED)
        else:
            (out / REJECTED).unlink(missing_ok=True)
            staged.unlink()
    removed = 0
    kept = set(pending.days)
    for folder in sorted(out.glob("date=*")):
        day = folder.name.removeprefix("date=")
        if day not in kept and _in_range(day, pending.date_from):
            shutil.rmtree(folder)
            removed += 1
    fsync_dir(out)
    return len(pending.days), removed


async def _fetch(
    client: Sender,
    staging: Path,
    pending: _Pending,
    concurrency: int,
    progress: Progress | None,
) -> tuple[int, int]:
    """Export the run's days into ``staging/fetched.jsonl``: (items, requests)."""
    staging.mkdir(parents=True, exist_ok=True)
    fetched = staging / "fetched.jsonl"
    items = requests = 0
    if not fetched.exists():  # present: fetched by a run killed while splitting
        filters: dict[str, Any] = {}
        if pending.date_from is not None:
            filters["date_from"] = pending.date_from
        checkpoint = fetched.with_name(fetched.name + ".checkpoint")
        start: Start = "resume" if checkpoint.exists() else "restart"
        options = ExportOptions(start=start, concurrency=concurrency, filters=filters)
        report = await export_followups(client, fetched, options, progress=progress)
        items, requests = report.items, report.requests
    for folder in staging.glob("date=*"):
        shutil.rmtree(folder)  # a split cut short is done again whole
    return items, requests


async def sync_followups(
    client: Sender,
    out: str | os.PathLike[str],
    *,
    state: str | os.PathLike[str],
    format: str = "parquet",
    lag_days: int = 3,
    today: date | str | None = None,
    concurrency: int = 4,
    progress: Progress | None = None,
) -> SyncReport:
    """Bring the day partitions of ``out`` up to date; see the module's docstring.

    Args:
        client: the client (or a view of it) to read through.
        out: the partitions' directory.
        state: the sync's state file.
        format: ``parquet`` or ``jsonl``.
        lag_days: recent days fetched again each run (followups change after their day).
        today: the run's day (default: today, UTC); the next run starts ``lag_days`` before it.
        concurrency: pages in flight at once.
        progress: where to show progress.

    Returns:
        What the run did (``SyncReport``).

    Raises:
        ValidationError: a bad setting, before anything is written or sent.
        FileInUseError: another sync holds the directory.
    """
    if format not in ("parquet", "jsonl"):
        raise fail("format", f"invalid value {format!r}", ("parquet", "jsonl"))
    check_int("lag_days", lag_days, 0)
    day = sync_day(today)
    # One run at a time per directory: a second one is refused before it changes anything.
    Path(out).mkdir(parents=True, exist_ok=True)
    with FileLock(Path(out) / ".sync", what="sync"):
        return await _sync(
            client, Path(out), Path(state), format, lag_days, day, concurrency, progress
        )


async def _sync(
    client: Sender,
    out_dir: Path,
    state_path: Path,
    format: str,
    lag_days: int,
    day: date,
    concurrency: int,
    progress: Progress | None,
) -> SyncReport:
    started = time.monotonic()
    current = _load(state_path, format)
    staging = out_dir / ".sync"
    resumed = current.pending is not None
    if current.pending is None:
        since = window_start(current.synced_through, lag_days)
        current.pending = _Pending(day.isoformat(), since)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        _save(state_path, current)
    pending = current.pending
    items = requests = rejected = 0
    if pending.phase == "fetch":
        items, requests = await _fetch(client, staging, pending, concurrency, progress)
        rejects = Rejects(None if pending.date_from is None else out_dir / REJECTED)
        pending.days = split_by_day(staging / "fetched.jsonl", staging, format, rejects)
        rejected = rejects.new
        pending.phase = "install"
        _save(state_path, current)
    written, removed = _install(out_dir, staging, pending, format)
    current.synced_through, current.pending = pending.today, None
    _save(state_path, current)
    shutil.rmtree(staging, ignore_errors=True)
    return SyncReport(
        full=pending.date_from is None,
        date_from=pending.date_from,
        items=items,
        requests=requests,
        partitions_written=written,
        partitions_removed=removed,
        resumed=resumed,
        elapsed=time.monotonic() - started,
        rejected=rejected,
    )
