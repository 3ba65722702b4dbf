"""The outbox's entries in one SQLite file (see ``_sqlite`` for durability and group commit).

A lease is a row's ``owner`` and ``lease_until``: an in-flight entry whose lease has ended,
or whose owner is a process of this machine that no longer runs, is taken back (to be
looked up before it is sent again). Times are wall-clock seconds, shared by processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
from typing import Any, Literal

from ._delivery_store import SQLiteVerifyMixin
from ._sqlite import Batch, SQLiteWriter
from ._sqlite_creates import CREATES, backlog
from ._store import Enqueued, StoreFull, same_fields
from ._types import Claimed, DeadEntry, EntryEvent, StoreCounts

__all__ = ["SQLiteStore", "owner_alive"]

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
    "check_first = 0 WHERE state = 'dead'"
)
_REQUEUE_WITH_HELD = _REQUEUE.replace("state = 'dead'", "state IN ('dead', 'held')")


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` is a process of this machine that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    async def open(self) -> None:
        await self.writer.open()

    async def close(self) -> None:
        await self.writer.close()

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

        return await self.writer.run(op)

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

        return await self.writer.run(op)

    async def claim(self, owner: str, n: int, lease: float, now: float) -> list[Claimed]:
        def op(conn: sqlite3.Connection, batch: Batch) -> list[Claimed]:
            _reclaim(conn, now)
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
                claimed.append(
                    Claimed(seq, key, kind, debt_id, fields, target, bool(check), attempts + 1, tag)
                )
            return claimed

        return await self.writer.run(op)

    async def reclaim(self, now: float) -> None:
        """Take back the entries in flight whose drainer is gone (see the module docstring)."""
        await self.writer.run(lambda conn, batch: _reclaim(conn, now))

    async def renew(self, owner: str, seqs: list[int], until: float) -> None:
        def op(conn: sqlite3.Connection, batch: Batch) -> None:
            conn.executemany(
                "UPDATE entries SET lease_until = ? WHERE seq = ? AND owner = ? "
                "AND state = 'in_flight'",
                [(until, seq, owner) for seq in seqs],
            )

        await self.writer.run(op)

    async def finish(
        self,
        seq: int,
        owner: str,
        state: Literal["done", "dead", "held", "pending"],
        *,
        now: float,
        followup_id: str | None = None,
        error: dict[str, Any] | None = None,
        next_try: float = 0.0,
        check: bool = False,
    ) -> None:
        error_text = None if error is None else json.dumps(error)

        def op(conn: sqlite3.Connection, batch: Batch) -> None:
            cursor = conn.execute(
                "UPDATE entries SET state = ?, followup_id = COALESCE(?, followup_id), "
                "error = ?, next_try = ?, check_first = ?, finished = ?, owner = NULL, "
                "lease_until = NULL WHERE seq = ? AND owner = ? AND state = 'in_flight'",
                (state, followup_id, error_text, next_try, int(check), now, seq, owner),
            )
            if cursor.rowcount and state == "dead":
                _bury_followers(conn, seq)

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
        sql = _REQUEUE_WITH_HELD if held else _REQUEUE

        def op(conn: sqlite3.Connection, batch: Batch) -> int:
            if not keys and not ids:
                return conn.execute(sql).rowcount
            total = 0
            for key in keys:
                total += conn.execute(sql + " AND key = ?", (key,)).rowcount
            for seq in ids:
                total += conn.execute(sql + " AND seq = ?", (seq,)).rowcount
            return total

        return await self.writer.run(op)

    async def prune(self, before: float) -> int:
        def op(conn: sqlite3.Connection, batch: Batch) -> int:
            sql = "DELETE FROM entries WHERE state = 'done' AND finished < ?"
            return conn.execute(sql, (before,)).rowcount

        return await self.writer.run(op)


def _reclaim(conn: sqlite3.Connection, now: float) -> None:
    """Entries in flight past their lease, or held by a process of this machine that no
    longer runs, go back: to pending, to be looked up first; a create without key, held."""
    owners = conn.execute("SELECT DISTINCT owner FROM entries WHERE state = 'in_flight'").fetchall()
    conn.execute(_RECLAIM, (now, None))
    for (other,) in owners:
        if other is not None and not owner_alive(other):
            conn.execute(_RECLAIM, (float("-inf"), other))


def _target(conn: sqlite3.Connection, key: str | None) -> str | None:
    """The followup an update of ``key`` goes to: its create's result, or the key itself
    when the outbox never held a create for it (the key is then a followup id)."""
    row = conn.execute(
        "SELECT followup_id FROM entries WHERE key = ? AND op = 'create' ORDER BY seq DESC LIMIT 1",
        (key,),
    ).fetchone()
    return key if row is None else row[0]


def _bury_followers(conn: sqlite3.Connection, seq: int) -> None:
    """A dead create takes the pending updates of its key with it (they have no followup)."""
    row = conn.execute("SELECT key, op FROM entries WHERE seq = ?", (seq,)).fetchone()
    if row is None or row[0] is None or row[1] != "create":
        return
    error = json.dumps({"message": f"the create of {row[0]!r} is dead (entry {seq})"})
    conn.execute(
        "UPDATE entries SET state = 'dead', error = ? WHERE key = ? AND seq > ? "
        "AND state = 'pending'",
        (error, row[0], seq),
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
