"""The SQLite store: one file, WAL, ``synchronous=FULL``, and group commit.

Every operation runs on one writer thread that owns the connection. The thread takes all
the operations queued while it was busy, runs them in one transaction, commits once (one
fsync), and only then answers each caller. So ``create()`` returns only once its row is on
disk, and 64 concurrent producers cost a handful of fsyncs, not 64 (in two halves that take
turns: see ``_serve``). A batch of creates alone (the busy case) is one statement that is
its own transaction (``Grouped.alone``): the thread then needs the GIL only before and
after it, and the event loop's producers run meanwhile. Any other batch is one transaction
in which the creates queued one after another reach their operation as one list. Should
anything fail, the transaction rolls back whole and each operation runs again in a
transaction of its own: only the failing one fails, and nothing is ever written twice.

Several processes may open one file: each has its own writer; ``BEGIN IMMEDIATE`` and a busy
timeout serialise their transactions. A file that is not an outbox (corrupt, or another
program's database) is refused with an ``OutboxStoreError`` naming it, before anything is
written to it.

The file must stay where it was opened: a file deleted (or replaced) while the service runs
would take every later entry with it at the next restart. Before the entries queued in a
turn of the event loop go to the writer, the loop checks that the path still names the
file open here (device and inode; one ``stat``, on the loop, where it costs the writer
nothing). From then on entries are refused with ``OutboxStoreError`` before anything is
written, and one error is logged. Entries acknowledged before are still drained from the
open file, as are those already queued (a batch or two: the check and the deletion race).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ._sqlite_schema import connect
from ._store import StoreFull
from ._types import OutboxStoreError

__all__ = ["Answers", "Batch", "Grouped", "SQLiteWriter"]

log = logging.getLogger("getbill_async.outbox")

T = TypeVar("T")

# One batch's scratch space: operations may cache what they counted (the backlog) there.
Batch = dict[str, Any]
# One answer per caller: (value, None) or (None, the error it gets).
Answers = list[tuple[Any, BaseException | None]]
_SINGLE: Any = object()  # the argument of an operation queued by ``run`` (not grouped)
# (operation, its argument, the caller's future, the caller's loop, whether it adds entries)
_Item = tuple[Any, Any, "asyncio.Future[Any]", asyncio.AbstractEventLoop, bool]
HALVE_FROM = 32  # operations reaching an idle thread at once from which half go first


@dataclass(frozen=True)
class Grouped:
    """An operation many callers share (``run_grouped``): the arguments queued for it one
    after another reach ``run`` as one list, in order, inside the batch's transaction, and
    it answers each (an argument it refuses, with ``StoreFull``, must have written nothing).
    ``alone``, for a batch made of this operation only: one statement that is its own
    transaction, adding all of the list or nothing (None: nothing, and ``run`` decides).
    """

    run: Callable[[sqlite3.Connection, Batch, list[Any]], Answers]
    alone: Callable[[sqlite3.Connection, list[Any]], Answers | None] | None = None


class SQLiteWriter:
    """One thread, one connection; ``run(op)`` queues ``op`` for the next group commit."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # The queue carries lists: what the event loop gathered in one turn goes as one.
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._gathered: list[_Item] = []
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions committed (tests and benchmarks read it)
        self._file: tuple[int, int] | None = None  # the open file's device and inode
        self.lost: str | None = None  # why the path no longer names the open file

    async def open(self, account: str | None = None) -> None:
        """Open (or create) the file on the writer thread; raise if it is not an outbox, if
        it cannot be written, or if it belongs to another account."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self.lost = None
        self._thread = threading.Thread(
            target=self._main,
            args=(ready, loop, account),
            name="getbill-outbox-sqlite",
            daemon=True,
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    def run(
        self, op: Callable[[sqlite3.Connection, Batch], T], *, adds: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``op`` for the next transaction: the future has its result once committed.
        ``adds``: it enqueues an entry (refused once the file is lost; see the module).

        A plain function, not a coroutine: the caller awaits the future itself (no frame in
        between), and a cancelled caller cancels only its own future.
        """
        return self._submit(op, _SINGLE, adds)

    def run_grouped(self, op: Grouped, arg: Any) -> asyncio.Future[Any]:
        """Queue ``arg`` for ``op`` (see ``Grouped``: it adds entries); the future has its
        own answer once committed."""
        return self._submit(op, arg, True)

    @property
    def is_open(self) -> bool:
        return self._thread is not None

    def _submit(self, op: Any, arg: Any, adds: bool) -> asyncio.Future[Any]:
        if self._thread is None:
            raise OutboxStoreError(f"{self.path}: the outbox is not open")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._gathered:
            loop.call_soon(self._hand_over)
        self._gathered.append((op, arg, future, loop, adds))
        return future

    def _hand_over(self) -> None:
        """What this turn of the loop queued goes to the writer thread, once the path is
        checked (see the module docstring) if any of it adds entries."""
        gathered, self._gathered = self._gathered, []
        if any(item[4] for item in gathered) and self._file_lost():
            error = self._lost_error()
            for item in gathered:
                if item[4] and not item[2].done():
                    item[2].set_exception(error)
            gathered = [item for item in gathered if not item[4]]
        if gathered:  # close() may have handed this turn's operations over already
            self._queue.put(gathered)

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._gathered:  # enqueued in this turn of the loop: they still go first
                self._hand_over()
            self._queue.put(None)
            await asyncio.to_thread(thread.join)

    def _main(
        self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop, account: str | None
    ) -> None:
        try:
            conn = connect(self.path, account)
            named = os.stat(self.path)
            self._file = (named.st_dev, named.st_ino)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle_all, [ready], [(None, exc)])
            return
        loop.call_soon_threadsafe(_settle_all, [ready], [(None, None)])
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        """Commit what is queued until ``close()``. When many operations reach an idle
        thread (every caller there is, waiting on one batch), half of them commit first:
        those callers produce their next writes while the other half is on its way to disk,
        and from then on the two halves take turns, each fsync overlapping the other's work.
        """
        waiting: list[_Item] = []
        stopping = False
        while waiting or not stopping:
            idle = not waiting and self._queue.empty()
            if not waiting:
                first = self._queue.get()
                if first is None:
                    return
                waiting = first
            while not stopping and not self._queue.empty():
                more = self._queue.get_nowait()  # only this thread takes from the queue
                stopping = more is None  # finish what is queued, then stop
                waiting += more or []
            cut = (len(waiting) + 1) // 2 if idle and len(waiting) >= HALVE_FROM else len(waiting)
            batch, waiting = waiting[:cut], waiting[cut:]
            self._answer(batch, self._transaction(conn, batch))

    def _file_lost(self) -> bool:
        """Whether the path no longer names the file open here (logged once, loudly)."""
        if self.lost:
            return True
        try:
            named = os.stat(self.path)
            if (named.st_dev, named.st_ino) == self._file:
                return False
            self.lost = "another file now has its name"
        except FileNotFoundError:
            self.lost = "it was deleted"
        except OSError as exc:
            self.lost = f"it cannot be found ({exc})"
        log.error(
            "outbox %s: %s while the outbox was open; new entries are refused (they would "
            "be lost at the next restart). Entries enqueued before are still drained from "
            "the file open here; restore the file, or restart on a new one",
            self.path,
            self.lost,
        )
        return True

    def _lost_error(self) -> OutboxStoreError:
        return OutboxStoreError(
            f"{self.path}: {self.lost} while the outbox was open; nothing was enqueued"
        )

    def _answer(self, batch: list[_Item], answers: Answers) -> None:
        if not batch:
            return
        loops = {item[3] for item in batch}
        if len(loops) == 1:  # as a rule
            loops.pop().call_soon_threadsafe(_settle_all, [item[2] for item in batch], answers)
            return
        for loop in loops:
            mine = [i for i, item in enumerate(batch) if item[3] is loop]
            answered = [answers[i] for i in mine]
            loop.call_soon_threadsafe(_settle_all, [batch[i][2] for i in mine], answered)

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Item]) -> Answers:
        """The batch in one transaction; if anything fails, each operation in its own."""
        answers = _alone(conn, batch)
        if answers is not None:
            self.commits += 1
            return answers
        try:
            answers = _transaction(conn, batch)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(batch) == 1:
                return [(None, self._store_error(exc))]
            return [answer for item in batch for answer in self._transaction(conn, [item])]
        self.commits += 1
        return answers

    def _store_error(self, exc: BaseException | None) -> BaseException | None:
        """What a caller gets for a failure of SQLite's: an ``OutboxStoreError`` naming
        the file (the documented error), caused by SQLite's."""
        if not isinstance(exc, sqlite3.Error):
            return exc
        error = OutboxStoreError(f"{self.path}: {exc}")
        error.__cause__ = exc
        return error


def _alone(conn: sqlite3.Connection, batch: list[_Item]) -> Answers | None:
    """A batch of one grouped operation with an ``alone`` form, run as that form's single
    statement (its own transaction); None if the batch is anything else, or if the
    statement wrote nothing (it refused, or failed and was rolled back whole)."""
    op = batch[0][0]
    if not isinstance(op, Grouped) or op.alone is None:
        return None
    if any(item[0] is not op for item in batch):
        return None
    try:
        return op.alone(conn, [item[1] for item in batch])
    except sqlite3.Error:
        return None  # nothing written: the batch's transaction tries it, and reports


def _transaction(conn: sqlite3.Connection, batch: list[_Item]) -> Answers:
    """One transaction for the batch, one answer per item (a ``StoreFull`` is an answer,
    raised before its operation wrote anything; anything else fails the transaction)."""
    answers: Answers = []
    scratch: Batch = {}
    conn.execute("BEGIN IMMEDIATE")
    start = 0
    while start < len(batch):
        op, arg = batch[start][0], batch[start][1]
        end = start + 1
        if arg is _SINGLE:
            try:
                answers.append((op(conn, scratch), None))
            except StoreFull as exc:
                answers.append((None, exc))
        else:
            while end < len(batch) and batch[end][0] is op:
                end += 1
            answers += op.run(conn, scratch, [item[1] for item in batch[start:end]])
        start = end
    conn.execute("COMMIT")
    return answers


def _settle_all(
    futures: Sequence[asyncio.Future[Any]], answers: Sequence[tuple[Any, BaseException | None]]
) -> None:
    for future, (value, error) in zip(futures, answers, strict=True):
        if future.done():
            continue  # the caller gave up (cancelled); the transaction stands
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
