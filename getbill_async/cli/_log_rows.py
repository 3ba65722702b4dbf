"""The rows of a ``getbill log`` input (CSV or JSONL), each checked before anything is sent.

A row is bad (reported by line, never sent) when a field is wrong, when a CSV row has more
cells than the header names (an unquoted comma would otherwise cut a note short), when a JSONL
line is not a JSON object (however deeply it nests), or when it repeats the ``debt_id`` and
``call_id`` of an earlier row (one ``call_id``, one create). A header that names a column twice
makes the whole file bad (``InputError``): which column is meant cannot be told.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ValidationError
from ..models import FollowupCreate
from ..support import build_create, fail

__all__ = ["InputError", "Row", "file_digest", "print_bad", "read_rows"]

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}
_PROBLEM = "\0"  # a key no real field has: the row's problem instead of its fields


class InputError(Exception):
    """The input as a whole cannot be read (a duplicated header, broken CSV): nothing is sent.

    ``str()`` is ``"<line>: <what is wrong>"``, to print after the file's name.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Row:
    """One input row: its line, and the create it asks for or what is wrong with it."""

    line: int
    item: FollowupCreate | None
    problem: ValidationError | None

    @property
    def key(self) -> tuple[str | None, str | None]:
        """``(debt_id, call_id)``: what the results file records to know this row again."""
        if self.item is None:
            return None, None
        return self.item.debt_id, self.item.call_id


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


def _csv_header(cells: Sequence[str]) -> list[str]:
    names = [cell.strip() for cell in cells]
    seen: dict[str, int] = {}
    for column, name in enumerate(names, start=1):
        if name and name in seen:
            raise InputError(
                1,
                f"header: {name!r} names columns {seen[name]} and {column}; "
                "which one is meant cannot be told (keep one)",
            )
        seen[name] = column
    return names


def _csv_fields(names: list[str], cells: list[str]) -> dict[str, Any]:
    if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
        extra = ", ".join(repr(c[:30]) for c in cells[len(names) :] if c.strip())
        return {
            _PROBLEM: f"{len(cells)} cells but {len(names)} headers (an unquoted comma? "
            f"quote a cell that holds commas); the cells past the last header: {extra}"
        }
    fields: dict[str, Any] = {}
    for name, value in zip(names, cells, strict=False):
        if value == "":
            continue
        if not name:
            return {_PROBLEM: f"a value under a column with no header: {value[:30]!r}"}
        fields[name] = _csv_value(name, value)
    return fields


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # utf-8-sig: a file saved by Excel starts with a byte-order mark, which is not part of
    # the first header.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            names = _csv_header(next(reader, []))
            for cells in reader:
                if cells:
                    yield reader.line_num, _csv_fields(names, cells)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(reader.line_num + 1, f"not readable as CSV ({exc})") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                yield number, {_PROBLEM: f"not JSON ({exc})"}
                continue
            except RecursionError:  # a line of 100,000 "[": no row nests that deep
                yield number, {_PROBLEM: "not a JSON object (nested too deeply)"}
                continue
            yield number, value if isinstance(value, dict) else {_PROBLEM: "not a JSON object"}


def _check(line: int, fields: dict[str, Any], first: dict[tuple[str, str], int]) -> Row:
    if _PROBLEM in fields:
        reason = fields[_PROBLEM]
        return Row(line, None, ValidationError(reason, field="row", details={"row": [reason]}))
    try:
        item = build_create(None, fields)
    except ValidationError as exc:
        return Row(line, None, exc)
    if item.call_id is not None:
        earlier = first.setdefault((item.debt_id, item.call_id), line)
        if earlier != line:
            reason = f"duplicate of line {earlier} (same debt_id and call_id): not sent twice"
            return Row(line, None, fail("call_id", reason))
    return Row(line, item, None)


def read_rows(path: Path) -> list[Row]:
    """Every row of the input, checked; a problem per bad row.

    Args:
        path: a ``.csv`` file (with a header) or a JSONL file (one object per line).

    Returns:
        The rows in file order, each with its create or its problem.

    Raises:
        InputError: the file as a whole is bad (a duplicated header, broken CSV).
    """
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    first: dict[tuple[str, str], int] = {}
    return [_check(line, fields, first) for line, fields in rows]


def print_bad(source: Path, rows: list[Row]) -> list[Row]:
    """Print each bad row as ``file:line: problem`` on stderr (the problem names the field).

    Args:
        source: the input, as named in the messages.
        rows: the rows read from it.

    Returns:
        The bad rows.
    """
    bad = [r for r in rows if r.problem is not None]
    for row in bad:
        assert row.problem is not None
        print(f"{source}:{row.line}: {row.problem.message}", file=sys.stderr)
    return bad


def file_digest(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes, in hex: the identity of an input in its results file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
