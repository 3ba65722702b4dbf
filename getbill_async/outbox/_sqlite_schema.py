"""The outbox file's tables, and what opening one checks and brings up to date.

A file is accepted when it is empty (the tables are made) or when its ``meta`` table names
it an outbox of a known version; anything else is refused, naming the file, before a byte
is written to it. A file made by an earlier release is brought up to date in place, in one
transaction (see ``_STEPS``); every change keeps what the file meant, so a release from
before a change still reads and writes a file made after it.

Opening also proves the file can be written (a read-only file is refused then, not at the
first enqueue), and binds it to one account: the first opener records its account in
``meta``, and an opener of another account is refused (see ``_store.check_account``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable

from ._store import check_account
from ._types import OutboxStoreError

__all__ = ["FORMAT", "VERSION", "connect"]

FORMAT = "getbill-outbox"
VERSION = "1"
BUSY_TIMEOUT_MS = 30_000

# One index on ``key`` serves both lookups by key and the rule that a key has at most one
# untagged create: for such a create the second column is 0, for any other entry its own
# seq (always unique), so only untagged creates of one key can collide. One index instead of
# two: each create writes one fewer page of random keys (about 10% of a commit's work).
# A tagged create is unique by its tag (the caller's name for it, e.g. an input line).
_KEY_INDEX = (
    "CREATE UNIQUE INDEX entries_by_key ON entries "
    "(key, CASE WHEN op = 'create' AND tag IS NULL THEN 0 ELSE seq END)"
)
_TAG_INDEX = "CREATE UNIQUE INDEX entries_tag ON entries (tag) WHERE tag IS NOT NULL"
_STATE_INDEX = "CREATE INDEX entries_state ON entries (state, seq)"

_TABLES = """
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
)
"""


def _has_column(conn: sqlite3.Connection, name: str) -> bool:
    return name in {row[1] for row in conn.execute("PRAGMA table_info(entries)")}


def _has_index(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None


# Each step: whether the file is up to date in that respect, and what brings it there.
# Files made before tags existed gain the column; files with two indexes on ``key`` (one of
# them the unique one for untagged creates) get the single one above in their place.
_STEPS: tuple[tuple[Callable[[sqlite3.Connection], bool], tuple[str, ...]], ...] = (
    (lambda conn: _has_column(conn, "tag"), ("ALTER TABLE entries ADD COLUMN tag TEXT",)),
    (lambda conn: _has_index(conn, "entries_tag"), (_TAG_INDEX,)),
    (lambda conn: _has_index(conn, "entries_state"), (_STATE_INDEX,)),
    (
        lambda conn: _has_index(conn, "entries_by_key"),
        (
            "DROP INDEX IF EXISTS entries_create_key",
            "DROP INDEX IF EXISTS entries_key",
            _KEY_INDEX,
        ),
    ),
)


def _refuse(path: str, why: str) -> OutboxStoreError:
    return OutboxStoreError(f"{path} is not an outbox database ({why}); it was left untouched")


def _names(conn: sqlite3.Connection) -> set[str]:
    """Everything the file holds: tables, indexes, views, triggers."""
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    if not _names(conn):  # another process may have made them meanwhile
        for statement in _TABLES.split(";"):
            conn.execute(statement)
        for statement in (_KEY_INDEX, _TAG_INDEX, _STATE_INDEX):
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta (k, v) VALUES (?, ?)",
            [("format", FORMAT), ("version", VERSION), ("merged", "0")],
        )
    conn.execute("COMMIT")


def _bring_up_to_date(conn: sqlite3.Connection) -> None:
    """Run the steps the file needs, all in one transaction (none when it needs none)."""
    if all(done(conn) for done, _ in _STEPS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for done, statements in _STEPS:
            if not done(conn):  # checked again: another process may have run it meanwhile
                for statement in statements:
                    conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_or_create(conn: sqlite3.Connection, path: str) -> None:
    """Accept an outbox file or an empty one; refuse anything else before writing to it."""
    try:
        tables = _names(conn)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and _locked(exc):
            raise  # busy, not foreign: opening tries again
        raise _refuse(path, str(exc)) from exc
    if not tables:
        _create(conn)
        return
    if "meta" not in tables or "entries" not in tables:
        raise _refuse(path, f"it holds other tables: {', '.join(sorted(tables))}")
    meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
    if meta.get("format") != FORMAT:
        raise _refuse(path, f"format {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise OutboxStoreError(f"{path}: outbox format version {meta.get('version')!r} unknown")
    conn.execute("PRAGMA journal_mode=WAL")
    _bring_up_to_date(conn)


def _bind(conn: sqlite3.Connection, path: str, account: str | None) -> None:
    """Prove the file writable (a write that changes nothing) and check or record its
    account, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            conn.execute("UPDATE meta SET v = v WHERE k = 'format'")
        except sqlite3.OperationalError as exc:
            raise OutboxStoreError(
                f"{path} cannot be written ({exc}): an outbox needs a file it may write to"
            ) from None
        row = conn.execute("SELECT v FROM meta WHERE k = 'account'").fetchone()
        if check_account(path, None if row is None else row[0], account) and account:
            conn.execute("INSERT INTO meta (k, v) VALUES ('account', ?)", (account,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect(path: str, account: str | None = None) -> sqlite3.Connection:
    """A connection to the outbox file at ``path`` (made if absent or empty), up to date,
    writable, and bound to ``account`` (None: whatever account it has).

    Processes that open one new file at once race to make it an outbox (a WAL file): SQLite
    answers the loser "database is locked" at once, without waiting. Opening is then tried
    again, for as long as the busy timeout; only a file still locked then is an error, and
    never one that calls the file "not an outbox"."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise _refuse(path, "no SQLite header")
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return _open(path, account)
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise _refuse(path, str(exc)) from exc
            if time.monotonic() >= deadline:
                raise OutboxStoreError(
                    f"{path}: {exc} (still, after {BUSY_TIMEOUT_MS // 1000} s)"
                ) from exc
            time.sleep(0.02)
        except sqlite3.DatabaseError as exc:
            raise _refuse(path, str(exc)) from exc


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text


def _open(path: str, account: str | None) -> sqlite3.Connection:
    # Room for a statement per length of a batch of creates (``_sqlite_creates``).
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=FULL")
        _check_or_create(conn, path)
        _bind(conn, path, account)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        conn.close()
        raise
    return conn
