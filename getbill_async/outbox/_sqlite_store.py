"""The outbox's entries in one SQLite file (see ``_sqlite`` for durability and group commit).

A lease is a row's ``owner`` and ``lease_until``: an in-flight entry whose lease has ended,
or whose owner no longer holds its lock (see ``_sqlite_owners``: it has ended), is taken back
(to be looked up before it is sent again). Times are wall-clock seconds, shared by processes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import time
from typing import Any

from ._delivery_store import SQLiteVerifyMixin
from ._sqlite import Batch, SQLiteWriter
from ._sqlite_creates import CREATES, backlog
from ._sqlite_owners import OwnerLocks
from ._store import Enqueued, StoreFull, same_fields
from ._types import Claimed, DeadEntry, EntryEvent, OutboxStoreError, Outcome, StoreCounts

__all__ = ["SQLiteStore"]

_CLAIMABLE = """
SELECT seq, key, op, debt_id, fields, check_first, attempts, tag FROM entries AS e
WHERE state = 'pending' AND next_try <= ?
  AND (key IS NULL OR NOT EXISTS (
      SELECT 1 FROM entries AS p
      WHERE p.key = e.key AND p.seq < e.seq AND p.state IN ('pending', 'in_flight', 'held')))
ORDER BY seq LIMIT ?
"""
_RECLAIM = """
UPDATE entries SET
    state = CASE WHEN op = 'create' AND key IS NULL THEN 'held' ELSE 'pending' END,
    error = CASE WHEN op = 'create' AND key IS NULL
        THEN '{"message": "sent by a drainer that stopped; no call_id to look it up"}'
        ELSE error END,
    check_first = 1, owner = NULL, lease_until = NULL
WHERE state = 'in_flight' AND (lease_until < ? OR owner = ?)
"""

_ADD_TAGGED = (
    "INSERT OR IGNORE INTO entries (key, op, state, debt_id, fields, enqueued, tag, check_first) "
    "VALUES (?, 'create', 'pending', ?, ?, ?, ?, ?)"
)
_TAGGED = (
    "SELECT seq, tag, key, op, debt_id, state, followup_id, error, check_first FROM entries "
    "WHERE tag IS NOT NULL ORDER BY seq"
)
_REQUEUE = (
    "UPDATE entries SET state = 'pending', error = NULL, next_try = 0, attempts = 0, "
    "check_first = 0 WHERE seq = ?"
)


def _unshadow(conn: sqlite3.Connection, seq: int) -> None:
    """A requeued update goes after its key's later writes: it must not undo them, so it
    keeps only the fields none of them sets; with none left there is nothing to send."""
    key, kind, text = conn.execute(
        "SELECT key, op, fields FROM entries WHERE seq = ?", (seq,)
    ).fetchone()
    if kind != "update" or key is None:
        return
    later = conn.execute(
        "SELECT fields FROM entries WHERE key = ? AND seq > ? AND state != 'dead'", (key, seq)
    ).fetchall()
    newer = {name for (fields,) in later for name in json.loads(fields)}
    fields = json.loads(text)
    kept = {name: value for name, value in fields.items() if name not in newer}
    if not kept:
        conn.execute(
            "UPDATE entries SET state = 'done', finished = ? WHERE seq = ?", (time.time(), seq)
        )
    elif kept != fields:
        conn.execute("UPDATE entries SET fields = ? WHERE seq = ?", (json.dumps(kept), seq))


def _insert(conn: sqlite3.Connection, batch: Batch, row: tuple[Any, ...], limit: int) -> Enqueued:
    if limit and backlog(conn, batch) >= limit:
        raise StoreFull
    conn.execute(
        "INSERT INTO entries (key, op, state, debt_id, fields, enqueued) "
        "VALUES (?, ?, 'pending', ?, ?, ?)",
        row,
    )
    if limit:
        batch["backlog"] += 1
    return "added"


def _add_merged(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'merged'")


class SQLiteStore(SQLiteVerifyMixin):
    """Entries in the SQLite file at ``path``; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.writer = SQLiteWriter(path)
        self.path = self.writer.path
        self.owners = OwnerLocks(self.path)
        self._unheard: dict[str, list[int]] = {}  # owner -> what a cancelled claim took

    async def open(self, account: str | None = None) -> None:
        await self.writer.open(account)

    async def close(self) -> None:
        unheard, self._unheard = self._unheard, {}
        if unheard and self.writer.is_open:
            await self.writer.run(functools.partial(_give_back_all, unheard=unheard))
        keep = set(self.owners.held)
        if keep:
            try:
                keep = await self.writer.run(functools.partial(_in_flight, owners=keep))
            except OutboxStoreError:
                pass  # keep every file: the lock, released, still tells we have ended
        try:
            await self.writer.close()
        finally:
            self.owners.release(keep)  # after the last write: our entries may be taken back

    def enqueue_create(
        self, key: str | None, debt_id: str, fields: str, now: float, limit: int
    ) -> asyncio.Future[Enqueued]:
        """Add a create unless its key has one (see ``_sqlite_creates``: the creates queued
        together go as one)."""
        return self.writer.run_grouped(CREATES, (key, debt_id, fields, now, limit))

    async def enqueue_tagged(
        self, tag: str, key: str | None, debt_id: str, fields: str, now: float, *, check: bool
    ) -> Enqueued:
        """Add a create named by ``tag`` unless the tag is taken (then: ``duplicate``);
        ``check``: look it up by ``call_id`` before sending (it may exist already)."""
        row = (key, debt_id, fields, now, tag, int(check))

        def op(conn: sqlite3.Connection, batch: Batch) -> Enqueued:
            batch.pop("backlog", None)
            return "added" if conn.execute(_ADD_TAGGED, row).rowcount else "duplicate"

        return await self.writer.run(op, adds=True)

    async def tagged(self) -> list[EntryEvent]:
        """Every tagged entry, in the order it was enqueued, with its state and outcome."""

        def op(conn: sqlite3.Connection, batch: Batch) -> list[EntryEvent]:
            return [
                EntryEvent(
                    seq,
                    tag,
                    key,
                    kind,
                    debt_id,
                    state,
                    followup_id,
                    json.loads(error) if error else None,
                    check=bool(check),
                )  # fmt: skip
                for seq, tag, key, kind, debt_id, state, followup_id, error, check in (
                    conn.execute(_TAGGED).fetchall()
                )
            ]

        return await self.writer.run(op)

    async def enqueue_update(
        self, key: str, fields: dict[str, Any], now: float, limit: int
    ) -> Enqueued:
        def op(conn: sqlite3.Connection, batch: Batch) -> Enqueued:
            sql = "SELECT seq, state, fields, check_first FROM entries WHERE key = ? ORDER BY seq"
            rows = conn.execute(sql, (key,)).fetchall()
            desired: dict[str, Any] = {}
            for _, state, text, _ in rows:
                if state != "dead":
                    desired.update(json.loads(text))
            if rows and same_fields(desired, fields):
                return "unchanged"
            if rows and rows[-1][1] == "pending" and not rows[-1][3]:
                merged = {**json.loads(rows[-1][2]), **fields}
                conn.execute(
                    "UPDATE entries SET fields = ? WHERE seq = ?", (json.dumps(merged), rows[-1][0])
                )
                _add_merged(conn)
                return "merged"
            return _insert(conn, batch, (key, "update", None, json.dumps(fields), now), limit)

        return await self.writer.run(op, adds=True)

    async def claim(self, owner: str, n: int, lease: float, now: float) -> list[Claimed]:
        """Claim as ``Store.claim``. A caller cancelled while its claim runs never hears
        what it took: the owner's next claim (or ``close``) gives those entries back first,
        as they were (they were never sent)."""
        self.owners.hold(owner)  # before any entry is ours: others must see us alive
        unheard = self._unheard.pop(owner, [])
        taken: list[int] = []

        def op(conn: sqlite3.Connection, batch: Batch) -> list[Claimed]:
            _give_back(conn, owner, unheard)
            _reclaim(conn, now, self.owners)
            claimed = []
            for seq, key, kind, debt_id, text, check, attempts, tag in conn.execute(
                _CLAIMABLE, (now, n)
            ).fetchall():
                target = _target(conn, key) if kind == "update" else None
                conn.execute(
                    "UPDATE entries SET state = 'in_flight', owner = ?, lease_until = ?, "
                    "attempts = attempts + 1 WHERE seq = ?",
                    (owner, now + lease, seq),
                )
                fields = json.loads(text)
                taken.append(seq)
                claimed.append(
                    Claimed(seq, key, kind, debt_id, fields, target, bool(check), attempts + 1, tag)
                )
            return claimed

        future = self.writer.run(op)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self._unheard[owner] = taken  # filled in by the time the next op runs
            raise

    async def reclaim(self, now: float) -> None:
        """Take back the entries in flight whose drainer is gone (see the module docstring)."""
        await self.writer.run(lambda conn, batch: _reclaim(conn, now, self.owners))

    async def renew(self, owner: str, seqs: list[int], until: float) -> list[int]:
        sql = (
            "UPDATE entries SET lease_until = ? WHERE seq = ? AND owner = ? AND state = 'in_flight'"
        )

        def op(conn: sqlite3.Connection, batch: Batch) -> list[int]:
            return [seq for seq in seqs if conn.execute(sql, (until, seq, owner)).rowcount]

        result: list[int] = await self.writer.run(op)
        return result

    async def finish(self, seq: int, owner: str, outcome: Outcome, *, now: float) -> None:
        error_text = None if outcome.error is None else json.dumps(outcome.error)
        values = (
            *(outcome.state, outcome.followup_id, error_text, outcome.next_try),
            *(int(outcome.check), now, int(not outcome.attempted), seq, owner),
        )

        def op(conn: sqlite3.Connection, batch: Batch) -> None:
            cursor = conn.execute(
                "UPDATE entries SET state = ?, followup_id = COALESCE(?, followup_id), "
                "error = ?, next_try = ?, check_first = ?, finished = ?, owner = NULL, "
                "lease_until = NULL, attempts = MAX(0, attempts - ?) "
                "WHERE seq = ? AND owner = ? AND state = 'in_flight'",
                values,
            )
            if cursor.rowcount and outcome.state == "dead":
                _bury_followers(conn, seq, now)

        await self.writer.run(op)

    async def counts(self) -> StoreCounts:
        def op(conn: sqlite3.Connection, batch: Batch) -> StoreCounts:
            by_state = dict(
                conn.execute("SELECT state, COUNT(*) FROM entries GROUP BY state").fetchall()
            )
            merged = conn.execute("SELECT v FROM meta WHERE k = 'merged'").fetchone()[0]
            unkeyed, oldest = conn.execute(
                "SELECT SUM(key IS NULL), MIN(enqueued) FROM entries WHERE state = 'pending'"
            ).fetchone()
            return StoreCounts(
                pending=by_state.get("pending", 0),
                in_flight=by_state.get("in_flight", 0),
                done=by_state.get("done", 0),
                dead=by_state.get("dead", 0),
                held=by_state.get("held", 0),
                merged=int(merged),
                unkeyed=int(unkeyed or 0),
                oldest_enqueued=oldest,
            )

        return await self.writer.run(op)

    async def dead_entries(self) -> list[DeadEntry]:
        def op(conn: sqlite3.Connection, batch: Batch) -> list[DeadEntry]:
            rows = conn.execute(
                "SELECT seq, key, op, state, fields, error FROM entries "
                "WHERE state IN ('dead', 'held') ORDER BY seq"
            ).fetchall()
            return [_dead_entry(*row) for row in rows]

        return await self.writer.run(op)

    async def requeue(self, keys: list[str], ids: list[int], held: bool) -> int:
        where = "state IN ('dead', 'held')" if held else "state = 'dead'"
        wanted, numbers = set(keys), set(ids)

        def op(conn: sqlite3.Connection, batch: Batch) -> int:
            # `where` is one of two constant clauses above, never input.
            query = f"SELECT seq, key FROM entries WHERE {where} ORDER BY seq"  # nosec B608
            rows = conn.execute(query)
            chosen = [
                seq
                for seq, key in rows.fetchall()
                if (not wanted and not numbers) or key in wanted or seq in numbers
            ]
            for seq in chosen:  # oldest first: each sees the later ones still dead
                conn.execute(_REQUEUE, (seq,))
                _unshadow(conn, seq)
            return len(chosen)

        return await self.writer.run(op)

    async def prune(self, before: float) -> int:
        """Delete the done and dead entries finished before ``before`` (held ones wait for
        a person); a dead entry of an earlier release without a finish time counts from
        when it was enqueued."""

        def op(conn: sqlite3.Connection, batch: Batch) -> int:
            sql = (
                "DELETE FROM entries WHERE (state = 'done' AND finished < ?) "
                "OR (state = 'dead' AND COALESCE(finished, enqueued) < ?)"
            )
            return conn.execute(sql, (before, before)).rowcount

        return await self.writer.run(op)


def _reclaim(conn: sqlite3.Connection, now: float, locks: OwnerLocks) -> None:
    """Entries in flight past their lease, or held by an owner that has ended (its lock is
    free), go back: to pending, to be looked up first; a create without key, held."""
    owners = conn.execute("SELECT DISTINCT owner FROM entries WHERE state = 'in_flight'").fetchall()
    conn.execute(_RECLAIM, (now, None))
    for (other,) in owners:
        if other is not None and not locks.alive(other):
            conn.execute(_RECLAIM, (float("-inf"), other))
    locks.sweep({other for (other,) in owners})


def _give_back(conn: sqlite3.Connection, owner: str, seqs: list[int]) -> None:
    """Entries a claim took for ``owner`` that it never heard of: pending again, unsent."""
    conn.executemany(
        "UPDATE entries SET state = 'pending', owner = NULL, lease_until = NULL, "
        "attempts = attempts - 1 WHERE seq = ? AND owner = ? AND state = 'in_flight'",
        [(seq, owner) for seq in seqs],
    )


def _give_back_all(
    conn: sqlite3.Connection, batch: Batch, *, unheard: dict[str, list[int]]
) -> None:
    for owner, seqs in unheard.items():
        _give_back(conn, owner, seqs)


def _in_flight(conn: sqlite3.Connection, batch: Batch, *, owners: set[str]) -> set[str]:
    """Which of ``owners`` hold entries in flight."""
    sql = "SELECT DISTINCT owner FROM entries WHERE state = 'in_flight'"
    return {row[0] for row in conn.execute(sql)} & owners


def _target(conn: sqlite3.Connection, key: str | None) -> str | None:
    """The followup an update of ``key`` goes to: its create's result, or the key itself
    when the outbox never held a create for it (the key is then a followup id)."""
    row = conn.execute(
        "SELECT followup_id FROM entries WHERE key = ? AND op = 'create' ORDER BY seq DESC LIMIT 1",
        (key,),
    ).fetchone()
    return key if row is None else row[0]


def _bury_followers(conn: sqlite3.Connection, seq: int, now: float) -> None:
    """A dead create takes the pending updates of its key with it (they have no followup)."""
    row = conn.execute("SELECT key, op FROM entries WHERE seq = ?", (seq,)).fetchone()
    if row is None or row[0] is None or row[1] != "create":
        return
    error = json.dumps({"message": f"the create of {row[0]!r} is dead (entry {seq})"})
    conn.execute(
        "UPDATE entries SET state = 'dead', error = ?, finished = ? WHERE key = ? AND seq > ? "
        "AND state = 'pending'",
        (error, now, row[0], seq),
    )


def _dead_entry(
    seq: int, key: str | None, op: str, state: str, fields: str, error: str | None
) -> DeadEntry:
    info: dict[str, Any] = json.loads(error) if error else {}
    return DeadEntry(
        id=seq,
        key=key,
        op=op,
        state=state,
        fields=json.loads(fields),
        status=info.get("status"),
        message=str(info.get("message", "")),
        details=dict(info.get("details") or {}),
    )
