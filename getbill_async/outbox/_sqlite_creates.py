"""Untagged creates, many at once: what ``SQLiteStore.enqueue_create`` queues.

The creates queued together reach the writer thread as one list (see ``Grouped``) and are
answered exactly as if each had run alone, in order:

- a key that already has an untagged create (in the file, or earlier in the same list) makes
  the create a no-op, ``duplicate``; a create without a key is never one;
- below ``limit`` (the outbox's ``max_pending``) a create is added; at the limit it is
  refused with ``StoreFull``, unless its key has any create (tagged ones too): then it is a
  replay, a ``duplicate``, even when full.

A list that is the whole batch goes first as one statement in a transaction of its own
(``_alone``), which adds every create or none; when it adds none (a duplicate, no room, a
failure), the batch's transaction answers each create: one statement looks up every key
of the list, one inserts every row.
"""

from __future__ import annotations

import functools
import json
import sqlite3

from ._sqlite import Answers, Batch, Grouped
from ._store import StoreFull

__all__ = ["CREATES", "backlog"]

# key, debt_id, fields (the body as JSON text), when enqueued, limit (0: none)
_Create = tuple[str | None, str, str, float, int]

_INSERT = (
    "INSERT INTO entries (key, op, state, debt_id, fields, enqueued) "
    "VALUES (?, 'create', 'pending', ?, ?, ?)"
)
_CREATES_OF = (
    "SELECT key, tag IS NULL FROM entries "
    "WHERE op = 'create' AND key IN (SELECT value FROM json_each(?))"
)
# The backlog is at most the span of seqs from the oldest unfinished entry to the newest:
# three index lookups, where counting it walks the whole backlog.
_BACKLOG_BOUND = """
SELECT coalesce((SELECT MAX(seq) FROM entries) - MIN(oldest) + 1, 0) FROM (
    SELECT MIN(seq) AS oldest FROM entries WHERE state = 'pending'
    UNION ALL SELECT MIN(seq) FROM entries WHERE state = 'in_flight')
"""


def backlog(conn: sqlite3.Connection, batch: Batch) -> int:
    """Entries pending or in flight, counted once per batch (operations keep it current)."""
    if "backlog" not in batch:
        sql = "SELECT COUNT(*) FROM entries WHERE state IN ('pending', 'in_flight')"
        batch["backlog"] = conn.execute(sql).fetchone()[0]
    return int(batch["backlog"])


def _add(conn: sqlite3.Connection, batch: Batch, creates: list[_Create]) -> Answers:
    """The creates inside the batch's transaction (see the module docstring)."""
    keys = [c[0] for c in creates if c[0] is not None]
    found: dict[str, bool] = {}  # each key with a create: whether one is untagged
    for key, plain in conn.execute(_CREATES_OF, (json.dumps(keys),)) if keys else ():
        found[key] = found.get(key, False) or bool(plain)
    untagged = {key for key, plain in found.items() if plain}
    limits = [c[4] for c in creates if c[4]]
    if limits and not _surely_room(conn, batch, len(creates), min(limits)):
        backlog(conn, batch)  # counted now: the loop below keeps it current
    answers: Answers = []
    rows: list[tuple[str | None, str, str, float]] = []
    for key, debt_id, text, now, limit in creates:
        if key is not None and key in untagged:
            answers.append(("duplicate", None))
        elif limit and "backlog" in batch and batch["backlog"] >= limit:
            answers.append(("duplicate", None) if key in found else (None, StoreFull()))
        else:
            rows.append((key, debt_id, text, now))
            answers.append(("added", None))
            if key is not None:
                untagged.add(key)
            if "backlog" in batch:
                batch["backlog"] += 1
    conn.executemany(_INSERT, rows)
    return answers


# Every create of the list, all or none: none when the backlog bound leaves no room for
# them all, and none when any of them is a duplicate (a key with an untagged create, in the
# file or twice in the list): the unique index refuses it, and the statement is rolled back
# whole. One statement per list length up to ``ALONE_MAX``, made of constants and
# placeholders only, each prepared once and cached by the connection.
ALONE_MAX = 128
# A statement that fails midway is rolled back whole (SQLite's ABORT), unless a trigger
# fails it with RAISE(FAIL), which keeps the rows before: the file has no trigger of ours,
# and with one (someone else's) the statement adds nothing and the transaction decides.
_TRIGGERS = "SELECT 1 FROM sqlite_master WHERE type = 'trigger'"
_NO_LIMIT = 2**62


# Made of the constants above and, per length, ``?`` placeholders: never input.
_ADD_ALL = (
    "INSERT INTO entries (key, op, state, debt_id, fields, enqueued) "  # nosec B608
    "SELECT column1, 'create', 'pending', column2, column3, column4 FROM (VALUES {rows}) "
    f"WHERE ({_BACKLOG_BOUND}) <= ? AND NOT EXISTS ({_TRIGGERS})"
)


@functools.cache
def _add_all(n: int) -> str:
    return _ADD_ALL.format(rows=", ".join(["(?, ?, ?, ?)"] * n))


def _alone(conn: sqlite3.Connection, creates: list[_Create]) -> Answers | None:
    """The creates as one statement in a transaction of its own, so that the writer thread
    needs the GIL only before and after it: every one added, or None (nothing written)."""
    room = min(c[4] or _NO_LIMIT for c in creates) - len(creates)
    if room < 0 or len(creates) > ALONE_MAX:
        return None
    values = [value for create in creates for value in create[:4]]
    values.append(room)
    added = conn.execute(_add_all(len(creates)), values).rowcount
    return [("added", None)] * added if added else None


def _surely_room(conn: sqlite3.Connection, batch: Batch, adding: int, limit: int) -> bool:
    """Whether ``adding`` more entries surely keep the backlog within ``limit``."""
    counted = batch.get("backlog")
    if counted is None:
        counted = conn.execute(_BACKLOG_BOUND).fetchone()[0]
    return int(counted) + adding <= limit


CREATES = Grouped(_add, alone=_alone)
