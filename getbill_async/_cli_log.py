"""``getbill log``: create followups from a CSV or JSONL file, resumably.

Every row is checked first; bad rows are all reported (line, field, reason) and nothing is
sent, unless ``--skip-invalid``. Each outcome is appended to ``--results`` (JSONL, flushed per
row), so ``--resume`` skips the rows already created. A row whose create was ambiguous and
has no ``call_id`` is not sent again on resume (it may exist): it is listed for a person.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._validate import build_create
from .errors import AmbiguousWriteError, GetBillError, ValidationError
from .models import FollowupCreate

if TYPE_CHECKING:
    from ._client import GetBillClient

__all__ = ["add_arguments", "read_rows", "run_log"]

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


class RowResult(msgspec.Struct, omit_defaults=True):
    line: int
    status: str  # created | failed | ambiguous | invalid
    id: str | None = None
    call_id: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Row:
    line: int
    item: FollowupCreate | None
    problem: ValidationError | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", required=True, help="calls.csv or calls.jsonl")
    parser.add_argument("--results", help="where outcomes go (JSONL); required but with --plan")
    parser.add_argument("--resume", action="store_true", help="skip rows already created")
    parser.add_argument("--skip-invalid", action="store_true", help="send the valid rows anyway")
    parser.add_argument(
        "--plan", action="store_true", help="check the rows, say how long it would take; no write"
    )


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
    with open(path, newline="", encoding="utf-8") as handle:
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


def _done_lines(path: Path) -> tuple[set[int], set[int]]:
    """Lines already created, and lines left ambiguous, from an earlier run's results."""
    created: set[int] = set()
    ambiguous: set[int] = set()
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                result = msgspec.json.decode(raw, type=RowResult)
            except msgspec.DecodeError:
                continue  # a line cut by a crash: that row is simply done again
            if result.status == "created":
                created.add(result.line)
                ambiguous.discard(result.line)
            elif result.status == "ambiguous" and result.call_id is None:
                ambiguous.add(result.line)
    return created, ambiguous


async def run_log(args: argparse.Namespace, client: GetBillClient) -> int:
    if getattr(args, "plan", False):  # the demo builds its own arguments
        from ._cli_plan import plan_log

        return await plan_log(args, client)
    if args.results is None:
        print("getbill log: --results is required (where outcomes go)", file=sys.stderr)
        return 2
    source, results_path = Path(args.input), Path(args.results)
    rows = read_rows(source)
    bad = [r for r in rows if r.problem is not None]
    for row in bad:
        assert row.problem is not None
        print(f"{source}:{row.line}: {row.problem.field}: {row.problem.message}", file=sys.stderr)
    if bad and not args.skip_invalid:
        print(
            f"{len(bad)} invalid row(s) of {len(rows)}; nothing sent "
            "(fix them, or pass --skip-invalid)",
            file=sys.stderr,
        )
        return 2
    created: set[int] = set()
    held: set[int] = set()
    if results_path.exists():
        if not args.resume:
            print(
                f"{results_path} exists: pass --resume to go on from it, or remove it",
                file=sys.stderr,
            )
            return 2
        created, held = _done_lines(results_path)
    todo = [r for r in rows if r.item is not None and r.line not in created | held]
    counts: Counter[str] = Counter()
    encoder = msgspec.json.Encoder()
    with open(results_path, "ab") as out:

        def record(result: RowResult) -> None:
            out.write(encoder.encode(result) + b"\n")
            out.flush()

        for row in bad:
            assert row.problem is not None
            record(RowResult(row.line, "invalid", reason="ValidationError", error=str(row.problem)))
            counts["invalid"] += 1
        items = [r.item for r in todo if r.item is not None]
        async for result in client.followups.create_many(items, concurrency=args.concurrency):
            row = todo[result.index]
            call_id = row.item.call_id if row.item is not None else None
            if result.followup is not None:
                record(RowResult(row.line, "created", id=result.followup.id, call_id=call_id))
                counts["created"] += 1
                continue
            error: GetBillError | None = result.error
            status = "ambiguous" if isinstance(error, AmbiguousWriteError) else "failed"
            reason = type(error).__name__
            record(RowResult(row.line, status, call_id=call_id, reason=reason, error=str(error)))
            counts[f"failed: {reason}"] += 1
    skipped = len(created) + len(held)
    parts = [f"created {counts.pop('created', 0)}"]
    if skipped:
        parts.append(f"already done {len(created)}")
    if held:
        parts.append(f"held back as ambiguous {len(held)} (check lines {sorted(held)[:10]})")
    parts += [f"{k} {v}" for k, v in sorted(counts.items())]
    print(f"log {source}: " + ", ".join(parts))
    return 1 if any(k.startswith("failed") for k in counts) else 0
