"""The rows of a ``getbill log`` input (CSV or JSONL), each checked before anything is sent."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ValidationError
from ..models import FollowupCreate
from ..support import build_create

__all__ = ["Row", "read_rows"]

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


@dataclass(frozen=True)
class Row:
    """One input row: its line, and the create it asks for or what is wrong with it."""

    line: int
    item: FollowupCreate | None
    problem: ValidationError | None


def _csv_value(field: str, raw: str) -> Any:
    if field == "duration_ms":
        try:
            return int(raw)
        except ValueError:
            return raw  # the validator names the field and the problem
    if field == "is_retry":
        low = raw.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else raw
    return raw


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # utf-8-sig: a file saved by Excel starts with a byte-order mark, which is not part of
    # the first header.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            fields = {
                k.strip(): _csv_value(k.strip(), v)
                for k, v in record.items()
                if k is not None and v not in (None, "")
            }
            yield reader.line_num, fields


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                yield number, {"\0": f"not JSON ({exc})"}
                continue
            yield number, value if isinstance(value, dict) else {"\0": "not a JSON object"}


def read_rows(path: Path) -> list[Row]:
    """Every row of the input, checked; a problem per bad row."""
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    out: list[Row] = []
    for line, fields in rows:
        if "\0" in fields:
            problem = ValidationError(fields["\0"], field="row", details={"row": [fields["\0"]]})
            out.append(Row(line, None, problem))
            continue
        try:
            out.append(Row(line, build_create(None, fields), None))
        except ValidationError as exc:
            out.append(Row(line, None, exc))
    return out
