"""Untagged creates, many at once: what ``SQLiteStore.enqueue_create`` queues.

The creates queued together reach the writer thread as one list (see ``Grouped``) and are
answered exactly as if each had run alone, in order:

- a key that already has an untagged create (in the file, or earlier in the same list) makes
  the create a no-op, ``duplicate``; a create without a key is never one;
- below ``limit`` (the outbox's ``max_pending``) a create is added; at the limit it is
  refused with ``StoreFull``, unless its key has any create (tagged ones too): then it is a
  replay, a ``duplicate``, even when full.

A list that is the whole batch goes as one ``INSERT OR IGNORE ... WHERE`` there is room for
all of it, in a transaction of its own, so the writer thread needs the GIL only around
it. When that statement adds nothing (no room, or every row a duplicate), or fails (rolled
back whole), the batch runs in the writer's transaction instead, row by row.
"""

from __future__ import annotations

import sqlite3
from itertools import chain

from ._sqlite import Answers, Batch, Grouped
from ._store import StoreFull

__all__ = ["CREATES", "backlog"]

# key, debt_id, fields (the body as JSON text), when enqueued, limit (0: none)
_Create = tuple[str | None, str, str, float, int]
_Row = tuple[str | None, str, str, float]
_SIZES = (128, 64, 32, 16, 8, 4, 2, 1)

# The backlog is at most the span of seqs from the oldest unfinished entry to the newest:
# three index lookups, where counting it walks the whole backlog.
_BACKLOG_BOUND = """
SELECT coalesce((SELECT MAX(seq) FROM entries) - MIN(oldest) + 1, 0) FROM (
    SELECT MIN(seq) AS oldest FROM entries WHERE state = 'pending'
    UNION ALL SELECT MIN(seq) FROM entries WHERE state = 'in_flight')
"""
_ADD = "INSERT INTO entries (key, op, state, debt_id, fields, enqueued)"
_ADD_NEW = "INSERT OR IGNORE INTO entries (key, op, state, debt_id, fields, enqueued)"
_PICK = "SELECT column1, 'create', 'pending', column2, column3, column4"
_ROW = "(?, 'create', 'pending', ?, ?, ?)"
_OF = "SELECT seq, key, tag IS NULL FROM entries WHERE op = 'create' AND key"


def _times(placeholders: str, n: int) -> str:
    return ", ".join([placeholders] * n)


# Statements come in a few sizes (rows padded up to a power of two, or cut into chunks),
# so the connection prepares and caches a handful of them, not one per list length. They
# are made of the constants above and ``?`` placeholders only.
_INSERT = {n: f"{_ADD} VALUES {_times(_ROW, n)}" for n in _SIZES}
_INSERT_IF_ROOM = {
    n: f"{_ADD_NEW} {_PICK} FROM (VALUES {_times('(?, ?, ?, ?, ?)', n)}) "
    f"WHERE column5 IS NOT NULL AND ({_BACKLOG_BOUND}) <= ?"
    for n in _SIZES
}
_CREATES_OF = {n: f"{_OF} IN ({_times('?', n)})" for n in _SIZES}
_NO_LIMIT = 2**62
_PADDED = {n: next(size for size in reversed(_SIZES) if size >= n) for n in range(1, 129)}
_PADDING = [None] * (5 * _SIZES[0])


def backlog(conn: sqlite3.Connection, batch: Batch) -> int:
    """Entries pending or in flight, counted once per batch (operations keep it current)."""
    if "backlog" not in batch:
        sql = "SELECT COUNT(*) FROM entries WHERE state IN ('pending', 'in_flight')"
        batch["backlog"] = conn.execute(sql).fetchone()[0]
    return int(batch["backlog"])


def _add(conn: sqlite3.Connection, batch: Batch, creates: list[_Create]) -> Answers:
    """The creates inside the batch's transaction (see the module docstring)."""
    found = _creates_of(conn, {c[0] for c in creates if c[0] is not None})
    untagged = {key for key, (_, plain) in found.items() if plain}
    limits = [c[4] for c in creates if c[4]]
    exact = bool(limits) and not _surely_room(conn, batch, len(creates), min(limits))
    if exact:
        backlog(conn, batch)  # counted now: the loop below keeps it current
    answers: Answers = []
    rows: list[_Row] = []
    for key, debt_id, text, now, limit in creates:
        if key is not None and key in untagged:
            answers.append(("duplicate", None))
        elif exact and limit and batch["backlog"] >= limit:
            answers.append(("duplicate", None) if key in found else (None, StoreFull()))
        else:
            rows.append((key, debt_id, text, now))
            answers.append(("added", None))
            if key is not None:
                untagged.add(key)
            if "backlog" in batch:
                batch["backlog"] += 1
    while rows:
        size = next(n for n in _SIZES if n <= len(rows))
        chunk, rows = rows[:size], rows[size:]
        conn.execute(_INSERT[size], [value for row in chunk for value in row])
    return answers


def _alone(conn: sqlite3.Connection, creates: list[_Create]) -> Answers | None:
    """The creates as one statement of their own, if there is surely room for all of them;
    None if it added nothing (then the batch's transaction decides, row by row)."""
    if len(creates) > _SIZES[0]:
        return None
    room = min(c[4] or _NO_LIMIT for c in creates) - len(creates)
    if room < 0:
        return None
    size = _PADDED[len(creates)]
    values = list(chain.from_iterable(creates))  # a row's limit marks it real (not NULL)
    values += _PADDING[: 5 * (size - len(creates))]  # rows filtered out
    values.append(room)
    added = conn.execute(_INSERT_IF_ROOM[size], values).rowcount
    if added == len(creates):
        return [("added", None)] * added
    if added <= 0:
        return None
    return _which_added(conn, creates, added)


def _which_added(conn: sqlite3.Connection, creates: list[_Create], added: int) -> Answers:
    """Which of ``creates`` the statement added, when some were duplicates: seqs only grow,
    so of the keys' untagged creates, the newest ``added`` (less the keyless rows, always
    added) are this statement's."""
    keyed = added - sum(1 for c in creates if c[0] is None)
    found = _creates_of(conn, {c[0] for c in creates if c[0] is not None})
    newest = sorted((seq, key) for key, (seq, plain) in found.items() if plain)
    ours = {key for _, key in newest[max(0, len(newest) - keyed) :]} if keyed else set()
    answers: Answers = []
    for key, *_ in creates:
        if key is None or key in ours:
            answers.append(("added", None))
            ours.discard(key)
        else:
            answers.append(("duplicate", None))
    return answers


def _creates_of(conn: sqlite3.Connection, keys: set[str]) -> dict[str, tuple[int, bool]]:
    """Each of ``keys`` that has a create: its seq, and whether it is untagged (an untagged
    one wins: it is the one a key can have only once)."""
    found: dict[str, tuple[int, bool]] = {}
    listed = list(keys)
    while listed:
        chunk, listed = listed[: _SIZES[0]], listed[_SIZES[0] :]
        size = next(n for n in reversed(_SIZES) if n >= len(chunk))
        chunk += chunk[:1] * (size - len(chunk))  # padded with a repeat: same answer
        for seq, key, plain in conn.execute(_CREATES_OF[size], chunk):
            if plain or key not in found:
                found[key] = (seq, bool(plain))
    return found


def _surely_room(conn: sqlite3.Connection, batch: Batch, adding: int, limit: int) -> bool:
    """Whether ``adding`` more entries surely keep the backlog within ``limit``."""
    counted = batch.get("backlog")
    if counted is None:
        counted = conn.execute(_BACKLOG_BOUND).fetchone()[0]
    return int(counted) + adding <= limit


CREATES = Grouped(_add, alone=_alone)
