"""An export's checkpoint and the fsyncs that make it mean what it says.

The checkpoint lists *marks*: one per commit (a page of JSONL or CSV, a part file of Parquet),
each with the last page it holds, the items written through it, where its bytes are and a
SHA-256 of them, and the ids it holds (the last pages' ids let a resumed walk skip an item
that slid across pages). The order of writes is what makes a mark true after a crash or a
power cut: the data is written and fsynced first, then the checkpoint goes to a temporary
file that is fsynced and renamed over the old one, and the directory is fsynced so that the
rename itself is on disk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec

from ..errors import GetBillError

__all__ = [
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "ExportError",
    "Mark",
    "digest",
    "fsync_dir",
    "load_checkpoint",
    "replace_durably",
    "save_checkpoint",
]

# Version 1 recorded only a length; it cannot tell a page that lost its tail from a good one.
CHECKPOINT_VERSION = 2
REMEMBERED_PAGES = 10


class ExportError(GetBillError):
    """An export cannot start or resume as asked (a changed filter set, a damaged partial)."""


class Mark(msgspec.Struct, array_like=True):
    """One commit: pages through ``page``, ``items`` in all, bytes ``[start, end)`` of the
    partial file and the SHA-256 of their last 4 KiB (Parquet: part file number ``start``
    of ``end`` bytes, and the SHA-256 of all of it)."""

    page: int
    items: int
    start: int
    end: int
    sha256: str
    ids: list[str] = msgspec.field(default_factory=list)


class Checkpoint(msgspec.Struct):
    version: int
    format: str
    filters: dict[str, str]
    limit: int
    total_at_start: int | None = None
    # CSV: whether formula-like cells were guarded (None: not CSV, or an older checkpoint).
    formula_guard: bool | None = None
    marks: list[Mark] = msgspec.field(default_factory=list)

    @property
    def page(self) -> int:
        return self.marks[-1].page if self.marks else 0

    @property
    def items(self) -> int:
        return self.marks[-1].items if self.marks else 0

    def known_ids(self) -> list[str]:
        return [i for mark in self.marks for i in mark.ids]

    def push(self, mark: Mark, keep_all: bool) -> None:
        """Add a commit. Byte formats keep the last marks only (their bytes are in one file);
        Parquet keeps every part's mark but the ids of the last ones only."""
        self.marks.append(mark)
        pages = 0
        for index in range(len(self.marks) - 1, -1, -1):
            older = self.marks[index]
            if pages >= REMEMBERED_PAGES:
                if not keep_all:
                    del self.marks[:index]
                    return
                older.ids = []
            pages += max(1, older.page - (self.marks[index - 1].page if index else 0))


class _Version(msgspec.Struct):
    version: int = 0


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename or an unlink in ``path`` durable (a no-op where directories can't be
    opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; nothing more can be done there
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (not yet its directory entry)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_durably(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` and fsync the directory, so the rename survives."""
    os.replace(source, target)
    fsync_dir(target.parent)


def save_atomically(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all: a temporary file, fsynced, renamed over
    ``path``, and the directory fsynced (a crash leaves the old file or the new one)."""
    temporary = path.with_name(path.name + ".tmp")
    write_durably(temporary, data)
    replace_durably(temporary, path)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    save_atomically(path, msgspec.json.encode(checkpoint))


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        data = path.read_bytes()
        version = msgspec.json.decode(data, type=_Version).version
        if version != CHECKPOINT_VERSION:
            raise ExportError(
                f"checkpoint {path} is of version {version}, not {CHECKPOINT_VERSION} (written "
                "by another getbill-async, which cannot be verified here): restart the export "
                "(restart=True, or --restart)"
            )
        return msgspec.json.decode(data, type=Checkpoint)
    except (OSError, msgspec.DecodeError) as exc:
        raise ExportError(f"cannot read the checkpoint {path}: {exc}") from None
