"""What ``Outbox.verify`` and ``Outbox.requeue(missing)`` ask of a store, for both stores.

- ``sent_entries()``: every entry done (kept for the retention window, then pruned) or in
  flight, oldest first, with the fields it wrote and the followup it wrote them to;
- ``verify_state()`` / ``save_verify_state(text)``: one text the verifier keeps in the store
  (its checkpoint, then its last report), ``None`` to remove it;
- ``resend(seq, fields)``: a done create goes back to pending with ``fields``, to be looked up
  by its ``call_id`` before it is sent again (one without ``call_id`` is sent as it is).

SQLite keeps the text in its ``meta`` table (key ``verify``), Redis in its ``meta`` hash.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._verify_types import SentEntry

if TYPE_CHECKING:
    from ._sqlite import Batch, SQLiteWriter

__all__ = ["RedisVerifyMixin", "SQLiteVerifyMixin", "VerifiableStore", "resend_script"]
__all__ += ["verifiable"]

_SENT = (
    "SELECT seq, key, op, state, debt_id, fields, followup_id, finished FROM entries "
    "WHERE state IN ('done', 'in_flight') ORDER BY seq"
)
_RESEND = (
    "UPDATE entries SET state = 'pending', fields = ?, followup_id = NULL, error = NULL, "
    "check_first = (key IS NOT NULL), attempts = 0, next_try = 0, finished = NULL "
    "WHERE seq = ? AND state = 'done' AND op = 'create'"
)


@runtime_checkable
class VerifiableStore(Protocol):
    """What ``Outbox.verify`` needs of a store, beside ``Store`` (both stores have it)."""

    async def sent_entries(self) -> list[SentEntry]: ...

    async def verify_state(self) -> str | None: ...

    async def save_verify_state(self, text: str | None) -> None: ...

    async def resend(self, seq: int, fields: dict[str, Any]) -> bool: ...


def verifiable(store: object) -> VerifiableStore:
    """``store`` as a ``VerifiableStore``.

    Raises:
        OutboxStoreError: a store of another kind, which cannot read back what it sent.
    """
    from ._types import OutboxStoreError

    if not isinstance(store, VerifiableStore):
        raise OutboxStoreError(f"{type(store).__name__} cannot verify: it keeps no sent entries")
    return store


class SQLiteVerifyMixin:
    """The verifier's methods of ``SQLiteStore`` (see the module docstring)."""

    writer: SQLiteWriter

    async def sent_entries(self) -> list[SentEntry]:
        def op(conn: sqlite3.Connection, batch: Batch) -> list[SentEntry]:
            return [
                SentEntry(seq, key, kind, state, debt_id, json.loads(text), fid, finished)
                for seq, key, kind, state, debt_id, text, fid, finished in conn.execute(_SENT)
            ]

        return await self.writer.run(op)

    async def verify_state(self) -> str | None:
        def op(conn: sqlite3.Connection, batch: Batch) -> str | None:
            row = conn.execute("SELECT v FROM meta WHERE k = 'verify'").fetchone()
            return None if row is None else str(row[0])

        return await self.writer.run(op)

    async def save_verify_state(self, text: str | None) -> None:
        def op(conn: sqlite3.Connection, batch: Batch) -> None:
            if text is None:
                conn.execute("DELETE FROM meta WHERE k = 'verify'")
            else:
                conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('verify', ?)", (text,))

        await self.writer.run(op)

    async def resend(self, seq: int, fields: dict[str, Any]) -> bool:
        def op(conn: sqlite3.Connection, batch: Batch) -> bool:
            return conn.execute(_RESEND, (json.dumps(fields), seq)).rowcount > 0

        return await self.writer.run(op)


# After the store's own prelude (its KEYS, ``get``, ``put``); ARGV: seq, the fields as JSON.
_RESEND_LUA = """
local seq, fields = ARGV[1], ARGV[2]
local raw = redis.call('HGET', entries, seq)
if not raw then return 0 end
local e = cjson.decode(raw)
if e.state ~= 'done' or e.op ~= 'create' then return 0 end
e.state, e.fields, e.followup_id, e.error = 'pending', fields, nil, nil
e.attempts, e.next_try, e.finished = 0, 0, nil
if e.key ~= nil then e.check = 1 else e.check = 0 end
put(e)
redis.call('ZREM', done, seq)
redis.call('ZADD', pending, e.seq, e.seq)
"""


def resend_script() -> str:
    """``RESEND``: the store's own prelude, so it names the keys as the store's scripts do
    and keeps the store's indexes of what can be claimed (``settle``) where it has them."""
    from . import _redis_lua as lua

    prelude = str(vars(lua).get("COMMON") or vars(lua).get("_COMMON"))
    keep = "settle(e)\n" if "local function settle(" in prelude else ""
    return prelude + _RESEND_LUA + keep + "return 1\n"


_CHUNK = 500


class RedisVerifyMixin:
    """The verifier's methods of ``RedisStore`` (see the module docstring)."""

    prefix: str
    _redis: Any
    _scripts: dict[str, Any]

    _run: Callable[..., Awaitable[Any]]  # RedisStore's: one of its scripts

    async def _call(self, command: str, *args: Any) -> Any:
        from ._types import OutboxStoreError

        if self._redis is None:
            raise OutboxStoreError("the Redis outbox is not open")
        try:
            return await self._redis.execute_command(command, *args)
        except Exception as exc:  # redis-py's errors, without importing them here
            raise OutboxStoreError(f"Redis outbox: {exc}") from None

    async def sent_entries(self) -> list[SentEntry]:
        entries, done, inflight = (f"{self.prefix}:{k}" for k in ("entries", "done", "inflight"))
        seqs = [*await self._call("ZRANGE", done, 0, -1)]
        seqs += await self._call("ZRANGE", inflight, 0, -1)
        found: list[SentEntry] = []
        for start in range(0, len(seqs), _CHUNK):
            for raw in await self._call("HMGET", entries, *seqs[start : start + _CHUNK]):
                if raw is None:
                    continue
                e = json.loads(raw)
                found.append(
                    SentEntry(
                        int(e["seq"]),
                        e.get("key"),
                        e["op"],
                        e["state"],
                        e.get("debt_id"),
                        json.loads(e["fields"]),
                        e.get("followup_id"),
                        e.get("finished"),
                    )  # fmt: skip
                )
        return sorted(found, key=lambda entry: entry.seq)

    async def verify_state(self) -> str | None:
        raw = await self._call("HGET", f"{self.prefix}:meta", "verify")
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def save_verify_state(self, text: str | None) -> None:
        if text is None:
            await self._call("HDEL", f"{self.prefix}:meta", "verify")
        else:
            await self._call("HSET", f"{self.prefix}:meta", "verify", text)

    async def resend(self, seq: int, fields: dict[str, Any]) -> bool:
        if "RESEND" not in self._scripts and self._redis is not None:
            self._scripts["RESEND"] = self._redis.register_script(resend_script())
        return bool(await self._run("RESEND", seq, json.dumps(fields)))
