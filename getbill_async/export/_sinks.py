"""Where an export's pages go: one growing ``.partial`` file (JSONL, CSV).

A sink commits pages durably and says what it committed (a byte range and its digest); on
resume it checks the marks of the checkpoint against the disk, from the newest back, keeps
the longest prefix that checks out and cuts the file back to it. It only ever shortens the
file: a partial file that is shorter than the newest good mark is refused, never padded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from ._checkpoint import ExportError, Mark, digest, replace_durably, write_durably

__all__ = ["COMMIT_SECONDS", "ByteSink", "Sink"]

COMMIT_SECONDS = 0.5  # by default a byte sink commits at most this often (and at every stop)


# A commit's digest covers its last bytes: a lost tail shows in the length and in these, and
# hashing a whole commit again would cost more CPU than writing it.
TAIL = 4096


def _tail_digest(out: BinaryIO, start: int, end: int) -> str:
    begin = max(start, end - TAIL)
    out.seek(begin)
    return digest(out.read(end - begin))


class Sink(Protocol):
    """Where pages go. ``write`` takes a page; ``due`` says when to ``flush``, which makes
    everything written durable and returns its mark (None: nothing new)."""

    keep_all_marks: bool

    def fresh(self) -> Mark | None: ...
    def recover(self, marks: list[Mark]) -> int: ...
    def write(self, page: int, items: list[msgspec.Raw], ids: list[str]) -> None: ...
    def due(self) -> bool: ...
    def flush(self) -> Mark | None: ...
    def finish(self, marks: list[Mark], out: Path) -> None: ...
    def close(self) -> None: ...


class ByteSink:
    """Appends each page's bytes to ``partial``; commits every ``every`` seconds (0: each page).

    Under the budget a page takes seconds, so every page is its own commit; unbounded, the
    three fsyncs of a commit would cost more CPU than the pages themselves, and a crash
    costs at most half a second of pages, fetched again on resume.
    """

    keep_all_marks = False

    def __init__(
        self,
        partial: Path,
        encode: Callable[[list[msgspec.Raw]], bytes],
        header: bytes,
        every: float = COMMIT_SECONDS,
    ) -> None:
        self.partial = partial
        self._every = every
        self._encode = encode
        self._header = header
        self._out: BinaryIO | None = None
        self._done = Mark(0, 0, 0, 0, "")  # the last commit
        self._pending = self._done  # written since: replaced as a whole, so a signal
        self._pages: tuple[list[str], ...] = ()  # ids of the pages written since
        self._last = time.monotonic()  # between two statements cannot leave it half-true

    def _open(self, mark: Mark, out: BinaryIO) -> None:
        out.truncate(mark.end)  # drop what was written after the checkpoint
        out.seek(mark.end)
        self._out = out
        self._done = self._pending = Mark(mark.page, mark.items, mark.end, mark.end, "")
        self._pages = ()

    def fresh(self) -> Mark:
        write_durably(self.partial, self._header)
        self._open(Mark(0, 0, 0, len(self._header), ""), open(self.partial, "r+b"))  # noqa: SIM115
        return Mark(0, 0, 0, len(self._header), digest(self._header[-TAIL:]))

    def recover(self, marks: list[Mark]) -> int:
        """How many of ``marks`` the partial file still holds; the file is cut back to them."""
        try:
            out = open(self.partial, "r+b")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise ExportError(f"cannot resume: {self.partial} is missing; restart") from None
        size = os.fstat(out.fileno()).st_size
        for kept in range(len(marks), 0, -1):
            mark = marks[kept - 1]
            if mark.end > size:
                continue
            if _tail_digest(out, mark.start, mark.end) == mark.sha256:
                self._open(mark, out)
                return kept
        out.close()
        expected = marks[-1].end if marks else 0
        what = "shorter than its checkpoint" if size < expected else "not what its checkpoint"
        raise ExportError(
            f"cannot resume: {self.partial} is {what} says ({size:,} bytes, "
            f"{expected:,} expected) and none of its last {len(marks)} commits checks out "
            "(was the disk's tail lost?); restart the export"
        )

    def write(self, page: int, items: list[msgspec.Raw], ids: list[str]) -> None:
        assert self._out is not None
        data = self._encode(items)
        self._out.write(data)
        was = self._pending
        pages = (*self._pages, ids)  # assigned together with the mark below
        self._pending, self._pages = (
            Mark(page, was.items + len(items), was.start, was.end + len(data), ""),
            pages,
        )

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._every

    def flush(self) -> Mark | None:
        pending, out = self._pending, self._out
        if out is None or pending is self._done:
            return None
        out.truncate(pending.end)  # a write cut short by a signal is not part of it
        out.flush()
        os.fsync(out.fileno())  # the data is on disk before the checkpoint names it
        pending.sha256 = _tail_digest(out, pending.start, pending.end)
        pending.ids = [i for ids in self._pages for i in ids]
        out.seek(pending.end)
        self._done = Mark(pending.page, pending.items, pending.end, pending.end, "")
        self._pending, self._pages = self._done, ()
        self._last = time.monotonic()
        return pending

    def finish(self, marks: list[Mark], out: Path) -> None:
        self.close()
        replace_durably(self.partial, out)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
