"""How a sync files the followups it fetched: by UTC activity day, one partition each, and
the items whose dates do not decode aside in ``REJECTED`` (see ``_sync``'s docstring).

A date that decodes but whose UTC day falls outside years 1..9999 (``0001-01-01T00:00:00+01:00``
is a moment of year 0 in UTC) has no partition a reader could parse as a date either: it is
rejected the same way, kept byte for byte, never a crash of the sync."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from ._checkpoint import digest, write_durably

__all__ = ["NO_DATE", "REJECTED", "Rejects", "activity_day", "split_by_day"]

NO_DATE = "__HIVE_DEFAULT_PARTITION__"
REJECTED = "_rejected.jsonl"  # beside the partitions: items whose dates do not decode
_FLUSH_BYTES = 8 << 20  # split: buffered lines per day are appended past this much


class _Dates(msgspec.Struct):
    id: str = ""
    call_date: datetime | None = None
    scheduled_at: datetime | None = None


class _Id(msgspec.Struct):
    id: str = ""


_dates = msgspec.json.Decoder(_Dates)
_id = msgspec.json.Decoder(_Id)


def activity_day(line: bytes) -> tuple[str, str | None]:
    """One followup's id and partition: its UTC activity day, or ``NO_DATE``; None when its
    dates do not decode (the item goes to ``REJECTED``)."""
    try:
        found = _dates.decode(line)
    except msgspec.DecodeError:  # a ValidationError too: a date that is not ISO 8601
        try:
            return _id.decode(line).id, None
        except msgspec.DecodeError:
            return "", None
    moment = found.call_date or found.scheduled_at
    if moment is None:
        return found.id, NO_DATE
    try:
        return found.id, moment.astimezone(timezone.utc).date().isoformat()
    except OverflowError:  # the UTC day is in year 0 or year 10000
        return found.id, None


class Rejects:
    """The run's ``REJECTED`` file, staged: the earlier lines (on a later run) by id, less the
    ids this run files by day, plus this run's rejects."""

    def __init__(self, earlier: Path | None) -> None:
        self.lines: dict[str, bytes] = {}
        self.new = 0
        if earlier is not None and earlier.exists():
            for line in earlier.read_bytes().splitlines(keepends=True):
                self.lines[activity_day(line)[0] or digest(line)] = line

    def file(self, key: str, day: str | None, line: bytes) -> None:
        if day is None:
            self.lines[key or digest(line)] = line if line.endswith(b"\n") else line + b"\n"
            self.new += 1
        elif self.lines:
            self.lines.pop(key, None)

    def stage(self, path: Path) -> None:
        write_durably(path, b"".join(self.lines.values()))


def split_by_day(export: Path, staging: Path, suffix: str, rejects: Rejects) -> list[str]:
    """Stage one partition per day of ``export`` (JSONL), and the rejects; the days, sorted."""
    buffers: dict[str, list[bytes]] = {}
    buffered = 0
    seen: set[str] = set()

    def flush() -> None:
        for day, lines in buffers.items():
            folder = staging / f"date={day}"
            folder.mkdir(exist_ok=True)
            with open(folder / "part.jsonl", "ab") as handle:
                handle.writelines(lines)
        buffers.clear()

    with open(export, "rb") as source:
        for line in source:
            key, day = activity_day(line)
            rejects.file(key, day, line)
            if day is None:
                continue
            buffers.setdefault(day, []).append(line)
            seen.add(day)
            buffered += len(line)
            if buffered > _FLUSH_BYTES:
                flush()
                buffered = 0
    flush()
    for day in seen:
        _finish_part(staging / f"date={day}" / "part.jsonl", suffix)
    rejects.stage(staging / REJECTED)
    return sorted(seen)


def _finish_part(part: Path, suffix: str) -> None:
    if suffix == "parquet":
        from ._parquet import write_parquet

        lines = part.read_bytes().splitlines()
        write_parquet(part.with_suffix(".parquet"), [msgspec.Raw(x) for x in lines])
        part.unlink()
    else:
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())
