"""The SQLite store: one file, WAL, ``synchronous=FULL``, and group commit.

Every operation runs on one writer thread that owns the connection. The thread takes the
operations queued while it was busy and runs them in one transaction, commits once (one
fsync), and only then answers each caller. So ``create()`` returns only once its row is on
disk, and 64 concurrent producers cost a handful of fsyncs, not 64. Operations queued one
after another for the same ``Grouped`` operation (creates) reach it as one list: one
multi-row INSERT, not one statement each. Should an operation fail midway, the batch runs
again with each operation (and each argument of a grouped one) in its own savepoint, so the
failing one rolls back alone.

The thread and the event loop share the GIL; the thread lets go of it only while SQLite
works (a statement, a commit's fsync), and needs it back after each statement, when the
event loop may be busy. Two things let both sides work at once:

- when many operations reach an idle thread, it commits the first half and answers it;
  those callers run on the event loop (and queue their next writes) while the second half
  is being written, and from then on the two halves take turns;
- a batch made only of one grouped operation (creates, most often) runs as a single
  statement in a transaction of its own: the INSERT and the check that there is room
  run without the GIL. A failure rolls it back whole, so the batch that runs next never
  adds a row twice.

Several processes may open one file: each has its own writer; ``BEGIN IMMEDIATE`` and a busy
timeout serialise their transactions. A file that is not an outbox (corrupt, or another
program's database) is refused with an ``OutboxStoreError`` naming it, before anything is
written to it.

The file must stay where it was opened. After each batch that adds entries the writer checks
that its path still names the file it has open (device and inode): a file deleted (or
replaced) while the service runs would take every later entry with it at the next restart.
It checks before the batch too: entries are then refused with ``OutboxStoreError`` and
nothing is written (a batch that found out only after its commit is refused all the same),
and one error is logged; entries acknowledged before are still drained from the open file.
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
# When at least this many operations reach an idle thread, half of them commit first.
HALVE_FROM = 32


@dataclass(frozen=True)
class Grouped:
    """An operation many callers share (``run_grouped``): the arguments queued for it one
    after another reach it as one list, in order, and it answers each.

    Attributes:
        run: runs inside the batch's transaction; an argument it refuses (``StoreFull``)
            must have written nothing.
        alone: for a batch that holds nothing else: one statement, in a transaction of its
            own, so the thread holds the GIL only around it (the event loop runs
            meanwhile); None when it wrote nothing, and the batch then goes through
            ``run`` (a failure rolls it back first, and is reported as usual).
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
        gathered, self._gathered = self._gathered, []
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
        """Commit what is queued until ``close()``.

        When ``HALVE_FROM`` or more operations reach an idle thread (all the callers there
        are, waiting on one batch), the first half commits first: its callers run on the
        event loop while the second half is written. From then on each half's next writes
        arrive while the other half is being written, and are not split again: two groups
        take turns (64 producers: 32 write while 32 produce).
        """
        waiting: list[_Item] = []
        stopping = idle = False
        while waiting or not stopping:
            if not waiting:
                try:
                    first, idle = self._queue.get_nowait(), False
                except queue.Empty:
                    first, idle = self._queue.get(), True
                if first is None:
                    return
                waiting = first
            while not stopping and not self._queue.empty():
                more = self._queue.get_nowait()  # only this thread takes from the queue
                if more is None:
                    stopping = True  # finish what is queued, then stop
                else:
                    waiting += more
            cut = len(waiting)
            if idle and cut >= HALVE_FROM:
                cut, idle = (cut + 1) // 2, False
            batch, waiting = waiting[:cut], waiting[cut:]
            self._commit(conn, batch)

    def _commit(self, conn: sqlite3.Connection, whole: list[_Item]) -> None:
        adds = any(item[4] for item in whole)
        refused = [item for item in whole if item[4]] if adds and self._file_lost() else []
        batch = [item for item in whole if not item[4]] if refused else whole
        self._answer(refused, [(None, self._lost_error())] * len(refused))
        if not batch:
            return
        answers = _alone(conn, batch)
        if answers is None:
            answers = self._transaction(conn, batch)
        else:
            self.commits += 1
        if adds and not refused and self._file_lost():
            lost = (None, self._lost_error())
            pairs = zip(batch, answers, strict=True)
            answers = [lost if item[4] else answer for item, answer in pairs]
        self._answer(batch, answers)

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
        try:
            try:
                answers = _transaction(conn, batch, savepoints=False)
            except _Unexpected:
                # An operation failed midway: run the batch again, each operation (and each
                # argument of a grouped one) in a savepoint, so only the failing one rolls back.
                answers = _transaction(conn, batch, savepoints=True)
                answers = [(value, self._store_error(exc)) for value, exc in answers]
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            answers = [(None, self._store_error(exc))] * len(batch)
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
    """The batch as one statement, if it is one grouped operation that can run alone."""
    op = batch[0][0]
    if not isinstance(op, Grouped) or op.alone is None or any(i[0] is not op for i in batch):
        return None
    # Its own transaction, not autocommit: a statement that fails midway may have written
    # the rows before the failing one, and the batch that runs next would add them again.
    conn.execute("BEGIN IMMEDIATE")
    try:
        answers = op.alone(conn, [item[1] for item in batch])
        conn.execute("COMMIT" if answers is not None else "ROLLBACK")
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return None  # nothing written: the batch's transaction answers each caller
    return answers


def _transaction(conn: sqlite3.Connection, batch: list[_Item], *, savepoints: bool) -> Answers:
    """One transaction for the batch, one answer per item. Without savepoints (the fast
    path) a grouped operation gets every argument queued in a row for it at once."""
    answers: Answers = []
    scratch: Batch = {}
    conn.execute("BEGIN IMMEDIATE")
    start = 0
    while start < len(batch):
        op, arg = batch[start][0], batch[start][1]
        end = start + 1
        if arg is not _SINGLE and not savepoints:
            while end < len(batch) and batch[end][0] is op:
                end += 1
        args = None if arg is _SINGLE else [item[1] for item in batch[start:end]]
        answers += _attempt(conn, scratch, op, args, savepoints=savepoints)
        start = end
    conn.execute("COMMIT")
    return answers


def _attempt(
    conn: sqlite3.Connection, scratch: Batch, op: Any, args: list[Any] | None, *, savepoints: bool
) -> Answers:
    """Run one operation (``args`` None) or one grouped operation on ``args``. Without
    savepoints only a ``StoreFull``, raised before its operation writes anything, may fail
    an operation; anything else rolls the batch back and raises ``_Unexpected``."""
    if savepoints:
        conn.execute("SAVEPOINT op")
    try:
        answers: Answers = (
            [(op(conn, scratch), None)] if args is None else op.run(conn, scratch, args)
        )
    except StoreFull as exc:
        answers = [(None, exc)] * (1 if args is None else len(args))
    except Exception as exc:
        if not savepoints:
            conn.execute("ROLLBACK")
            raise _Unexpected from exc
        conn.execute("ROLLBACK TO op")
        answers = [(None, exc)] * (1 if args is None else len(args))
    if savepoints:
        conn.execute("RELEASE op")
    return answers


class _Unexpected(Exception):
    """An operation failed after it may have written: the batch must be run again."""


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
