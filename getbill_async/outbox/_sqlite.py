"""The SQLite store: one file, WAL, ``synchronous=FULL``, and group commit.

Every operation runs on one writer thread that owns the connection. The thread takes every
operation queued while it was busy and runs them in one transaction (each in its own
savepoint, so one failing operation rolls back alone), commits once (one fsync), and only
then answers each caller. So ``create()`` returns only once its row is on disk, and 64
concurrent producers cost a handful of fsyncs, not 64.

Several processes may open one file: each has its own writer; ``BEGIN IMMEDIATE`` and a busy
timeout serialise their transactions. A file that is not an outbox (corrupt, or another
program's database) is refused with an ``OutboxStoreError`` naming it, before anything is
written to it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._store import StoreFull
from ._types import OutboxStoreError

__all__ = ["FORMAT", "SQLiteWriter"]

T = TypeVar("T")
FORMAT = "getbill-outbox"
VERSION = "1"
BUSY_TIMEOUT_MS = 30_000

# One batch's scratch space: operations may cache what they counted (the backlog) there.
Batch = dict[str, Any]
Operation = Callable[[sqlite3.Connection, Batch], Any]
_Item = tuple[Operation, "asyncio.Future[Any]", asyncio.AbstractEventLoop]

_SCHEMA = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    op TEXT NOT NULL,
    state TEXT NOT NULL,
    debt_id TEXT,
    fields TEXT NOT NULL,
    followup_id TEXT,
    enqueued REAL NOT NULL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    check_first INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL,
    error TEXT,
    tag TEXT
);
CREATE INDEX entries_state ON entries (state, seq);
CREATE INDEX entries_key ON entries (key, seq);
CREATE UNIQUE INDEX entries_create_key ON entries (key) WHERE op = 'create' AND tag IS NULL;
CREATE UNIQUE INDEX entries_tag ON entries (tag) WHERE tag IS NOT NULL;
"""


# A file made before entries had tags gains the column; a tagged create is unique by its
# tag (the caller's name for it, e.g. an input line), an untagged one by its key.
_ADD_TAGS = """
ALTER TABLE entries ADD COLUMN tag TEXT;
DROP INDEX entries_create_key;
CREATE UNIQUE INDEX entries_create_key ON entries (key) WHERE op = 'create' AND tag IS NULL;
CREATE UNIQUE INDEX entries_tag ON entries (tag) WHERE tag IS NOT NULL
"""


def _refuse(path: str, why: str) -> OutboxStoreError:
    return OutboxStoreError(f"{path} is not an outbox database ({why}); it was left untouched")


def _check_or_create(conn: sqlite3.Connection, path: str) -> None:
    """Accept an outbox file or an empty one; refuse anything else before writing to it."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, str(exc)) from exc
    if not tables:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        if not {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (k, v) VALUES (?, ?)",
                [("format", FORMAT), ("version", VERSION), ("merged", "0")],
            )
        conn.execute("COMMIT")
        return
    if "meta" not in tables or "entries" not in tables:
        raise _refuse(path, f"it holds other tables: {', '.join(sorted(tables))}")
    meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
    if meta.get("format") != FORMAT:
        raise _refuse(path, f"format {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise OutboxStoreError(f"{path}: outbox format version {meta.get('version')!r} unknown")
    conn.execute("PRAGMA journal_mode=WAL")
    _add_tags(conn)


def _add_tags(conn: sqlite3.Connection) -> None:
    """Give a file made before tags existed its ``tag`` column (once, in one transaction)."""

    def tagged() -> bool:
        return "tag" in {row[1] for row in conn.execute("PRAGMA table_info(entries)")}

    if tagged():
        return
    conn.execute("BEGIN IMMEDIATE")
    if not tagged():  # another process may have added it meanwhile
        for statement in _ADD_TAGS.split(";"):
            conn.execute(statement)
    conn.execute("COMMIT")


def _connect(path: str) -> sqlite3.Connection:
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise _refuse(path, "no SQLite header")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=FULL")
        _check_or_create(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _refuse(path, str(exc)) from exc
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteWriter:
    """One thread, one connection; ``run(op)`` queues ``op`` for the next group commit."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # The queue carries lists: what the event loop gathered in one turn goes as one.
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._gathered: list[_Item] = []
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions committed (tests and benchmarks read it)

    async def open(self) -> None:
        """Open (or create) the file on the writer thread; raise if it is not an outbox."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._main, args=(ready, loop), name="getbill-outbox-sqlite", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    async def run(self, op: Callable[[sqlite3.Connection, Batch], T]) -> T:
        """Run ``op`` in the next transaction; return its result once committed."""
        if self._thread is None:
            raise OutboxStoreError(f"{self.path}: the outbox is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._gathered:
            loop.call_soon(self._hand_over)
        self._gathered.append((op, future, loop))
        return await future

    def _hand_over(self) -> None:
        gathered, self._gathered = self._gathered, []
        self._queue.put(gathered)

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._gathered:  # enqueued in this turn of the loop: they still go first
                self._hand_over()
            self._queue.put(None)
            await asyncio.to_thread(thread.join)

    def _main(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = _connect(self.path)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = list(first)
                while True:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # finish this batch, then stop
                        break
                    batch.extend(more)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        try:
            try:
                results = self._transaction(conn, batch, savepoints=False)
            except _Unexpected:
                # An operation failed midway: run the batch again, each operation in a
                # savepoint, so that only the failing one is rolled back.
                results = self._transaction(conn, batch, savepoints=True)
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failed = OutboxStoreError(f"{self.path}: {exc}")
            results = [(None, failed)] * len(batch)
        loops: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, Any]]] = {}
        for (_, future, loop), (value, error) in zip(batch, results, strict=True):
            loops.setdefault(loop, []).append((future, value, error))
        for loop, settled in loops.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    def _transaction(
        self, conn: sqlite3.Connection, batch: list[_Item], *, savepoints: bool
    ) -> list[tuple[Any, BaseException | None]]:
        """One transaction for the batch. Without savepoints (the fast path) only a
        ``StoreFull``, raised before its operation writes anything, may fail an operation;
        anything else rolls the batch back and raises ``_Unexpected``."""
        results: list[tuple[Any, BaseException | None]] = []
        scratch: Batch = {}
        conn.execute("BEGIN IMMEDIATE")
        for op, _, _ in batch:
            if savepoints:
                conn.execute("SAVEPOINT op")
            try:
                results.append((op(conn, scratch), None))
            except StoreFull as exc:
                results.append((None, exc))
            except Exception as exc:
                if not savepoints:
                    conn.execute("ROLLBACK")
                    raise _Unexpected from exc
                conn.execute("ROLLBACK TO op")
                results.append((None, exc))
            if savepoints:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return results


class _Unexpected(Exception):
    """An operation failed after it may have written: the batch must be run again."""


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in settled:
        _settle(future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller gave up (cancelled); the transaction stands
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
