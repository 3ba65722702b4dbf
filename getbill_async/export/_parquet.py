"""Parquet export (the ``parquet`` extra, pyarrow): typed columns, streamed, resumable.

Columns, one per documented field of ``Followup``:

- datetimes as ``timestamp[us, UTC]``; ``duration_ms`` and the counts as ``int64``; booleans as
  ``bool``; ids, text and enums (``status``, ``type``, ``direction``) as strings, so a status
  the SDK does not know yet is kept as it came;
- ``extra``: the fields the SDK does not know yet, as one JSON object (text; null when none),
  their values as the server sent them. Why one column and not a column each: a Parquet file
  has one schema, in its footer, shared by every row group. A field first seen on page 5,000
  could not become a column of the row groups committed before it, and a resumed export's
  schema would depend on where it was killed. DuckDB reads it with
  ``json_extract(extra, '$.name')``.

Streaming and resume: every ``row_group_pages`` pages the rows buffered so far become a part
file, ``<out>.parts/part-NNNNNN.parquet``, written to a temporary name, fsynced and renamed;
then the checkpoint names it, with its size and SHA-256. Memory holds at most one part's rows,
whatever the export's size. A resume checks the parts against the checkpoint (a part that is
missing or damaged and every one after it is fetched again) and deletes stray ones. At the end
the parts are copied, one row group each, into ``<out>.partial``, which is fsynced and renamed
over ``<out>``: one file for ``pyarrow.parquet.read_table(path)`` or DuckDB's
``read_parquet('path')``.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

import msgspec

from ..support import require
from ._checkpoint import Mark, digest, fsync_dir, replace_durably, save_atomically, write_durably
from ._formats import FIELDS, split_item

__all__ = ["ParquetSink", "arrow_schema", "record_batch", "write_parquet"]

ROW_GROUP_ROWS = 32_768
pa: Any = None
pq: Any = None


def _arrow() -> tuple[Any, Any]:
    global pa, pq
    if pa is None:
        pa = require("pyarrow", extra="parquet", feature="Parquet export")
        pq = require("pyarrow.parquet", extra="parquet", feature="Parquet export")
    return pa, pq


def _arrow_type(kind: Any) -> Any:
    """The Arrow type of a ``Followup`` field's msgspec type (``X | None`` is nullable X)."""
    inspect = msgspec.inspect
    if isinstance(kind, inspect.UnionType):
        kind = next(t for t in kind.types if not isinstance(t, inspect.NoneType))
    if isinstance(kind, inspect.DateTimeType):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, inspect.BoolType):
        return pa.bool_()
    if isinstance(kind, inspect.IntType):
        return pa.int64()
    return pa.string()


@functools.cache
def arrow_schema() -> Any:
    """The Arrow schema of an export: the typed fields of ``Followup``, then ``extra``."""
    from ..models import Followup

    _arrow()
    info = msgspec.inspect.type_info(Followup)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = [pa.field(f.name, _arrow_type(f.type)) for f in info.fields]
    return pa.schema([*fields, pa.field("extra", pa.string())])


def record_batch(items: list[msgspec.Raw], schema: Any) -> Any:
    """The rows of ``items`` (raw followups) as an Arrow record batch of ``schema``."""
    rows = [split_item(item) for item in items]
    columns = [[getattr(f, name) for f, _ in rows] for name in FIELDS]
    columns.append([None if extra is None else extra.decode() for _, extra in rows])
    return pa.RecordBatch.from_arrays(
        [pa.array(c, type=t.type) for c, t in zip(columns, schema, strict=True)], schema=schema
    )


def write_parquet(path: Path, items: list[msgspec.Raw]) -> None:
    """One Parquet file of ``items``, fsynced (the sync's partitions)."""
    schema = arrow_schema()
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_batches([record_batch(items, schema)], schema=schema), sink)
    write_durably(path, sink.getvalue().to_pybytes())


class ParquetSink:
    """Buffers pages as Arrow record batches; every ``pages_per_part`` pages, a part file."""

    keep_all_marks = True

    def __init__(self, partial: Path, parts: Path, pages_per_part: int) -> None:
        _arrow()
        self.partial = partial
        self.parts = parts
        self._per_part = pages_per_part
        self._schema = arrow_schema()
        self._done = Mark(0, 0, 0, 0, "")  # the last part written
        # What was buffered since: replaced whole, so a signal cannot leave it half-updated.
        self._pending: tuple[Mark, tuple[Any, ...], tuple[list[str], ...]] = (self._done, (), ())

    def _part(self, number: int) -> Path:
        return self.parts / f"part-{number:06d}.parquet"

    def fresh(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        fsync_dir(self.parts.parent)

    def recover(self, marks: list[Mark]) -> int:
        """How many parts check out (size of each, SHA-256 of the newest); others deleted."""
        self.parts.mkdir(exist_ok=True)
        kept = 0
        for mark in marks:
            path = self._part(mark.start)
            if not path.exists() or path.stat().st_size != mark.end:
                break
            kept += 1
        while (
            kept
            and digest(self._part(marks[kept - 1].start).read_bytes()) != marks[kept - 1].sha256
        ):
            kept -= 1
        wanted = {self._part(mark.start).name for mark in marks[:kept]}
        for stray in self.parts.iterdir():
            if stray.name not in wanted:
                stray.unlink()
        if kept:
            last = marks[kept - 1]
            self._done = Mark(last.page, last.items, last.start, 0, "")
            self._pending = (self._done, (), ())
        return kept

    def write(self, page: int, items: list[msgspec.Raw], ids: list[str]) -> None:
        batch = record_batch(items, self._schema)
        was, batches, pages = self._pending
        mark = Mark(page, was.items + len(items), was.start, 0, "")
        self._pending = (mark, (*batches, batch), (*pages, ids))

    def due(self) -> bool:
        return len(self._pending[1]) >= self._per_part

    def flush(self) -> Mark | None:
        mark, batches, pages = self._pending
        if mark is self._done:
            return None
        number = self._done.start + 1
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_batches(batches, schema=self._schema), sink)
        data = sink.getvalue().to_pybytes()
        save_atomically(self._part(number), data)
        ids = [i for page_ids in pages for i in page_ids]
        done = Mark(mark.page, mark.items, number, len(data), digest(data), ids)
        self._done = Mark(mark.page, mark.items, number, 0, "")
        self._pending = (self._done, (), ())
        return done

    def finish(self, marks: list[Mark], out: Path) -> None:
        with pq.ParquetWriter(self.partial, self._schema) as writer:
            if not marks:
                writer.write_table(self._schema.empty_table())
            group: list[Any] = []
            rows = 0
            for index, mark in enumerate(marks):
                part = pq.read_table(self._part(mark.start), schema=self._schema)
                group.append(part)
                rows += part.num_rows
                if rows >= ROW_GROUP_ROWS or index == len(marks) - 1:
                    # Row groups of ~32k rows: a footer for 1,000 small ones would grow with
                    # the export; this bounds both it and the memory of one group.
                    writer.write_table(pa.concat_tables(group), row_group_size=rows)
                    group, rows = [], 0
                    pa.default_memory_pool().release_unused()
        with open(self.partial, "rb") as handle:
            os.fsync(handle.fileno())
        replace_durably(self.partial, out)
        shutil.rmtree(self.parts, ignore_errors=True)

    def close(self) -> None:
        pass
