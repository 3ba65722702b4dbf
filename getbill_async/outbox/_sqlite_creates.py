"""Untagged creates, many at once: what ``SQLiteStore.enqueue_create`` queues.

The creates queued together reach the writer thread as one list (see ``Grouped``) and are
answered exactly as if each had run alone, in order:

- a key that already has an untagged create (in the file, or earlier in the same list) makes
  the create a no-op, ``duplicate``; a create without a key is never one;
- below ``limit`` (the outbox's ``max_pending``) a create is added; at the limit it is
  refused with ``StoreFull``, unless its key has any create (tagged ones too): then it is a
  replay, a ``duplicate``, even when full.

One statement looks up every key of the list, one inserts every row: two statements however
long the list, each prepared once.
"""

from __future__ import annotations

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


def _surely_room(conn: sqlite3.Connection, batch: Batch, adding: int, limit: int) -> bool:
    """Whether ``adding`` more entries surely keep the backlog within ``limit``."""
    counted = batch.get("backlog")
    if counted is None:
        counted = conn.execute(_BACKLOG_BOUND).fetchone()[0]
    return int(counted) + adding <= limit


CREATES = Grouped(_add)
