"""What the outbox engine needs from a store (SQLite file or Redis), and the rules both share.

A store keeps entries and applies the merge rules atomically with the enqueue:

- a create for a ``call_id`` the store already holds is a no-op (a producer that restarts
  may replay its last calls safely); a *tagged* create (``getbill log`` tags each row with
  its input line) is unique by its tag instead, and not bounded by the limit;
- an update whose fields all equal what the key already asks for is a no-op;
- an update merges into the key's latest entry when that entry is pending and was never
  sent (a create absorbs it, an update takes the later fields); otherwise it is a new entry;
- a claim hands out the oldest pending entries whose key has nothing unfinished before them,
  so per key, order is kept and nothing is merged into an entry in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Literal, Protocol

from ._types import Claimed, DeadEntry, EntryEvent, OutboxStoreError, Outcome, StoreCounts

__all__ = ["Enqueued", "Store", "StoreFull", "account_of", "check_account", "same_fields"]

Enqueued = Literal["added", "merged", "duplicate", "unchanged"]


class StoreFull(Exception):
    """Raised inside a store's enqueue when the backlog is at ``max_pending``."""


def same_fields(desired: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Whether every field of ``fields`` already has that value in ``desired``."""
    return all(name in desired and desired[name] == value for name, value in fields.items())


def account_of(base_url: str, client_id: str | None, name: str | None) -> str:
    """The account a store is bound to: the API's base URL, the OAuth client's id (with
    OAuth credentials) and the name the user gave (``Outbox(account=...)``), never a secret.
    A static token can rotate, so with one alone the name is what tells accounts apart."""
    parts = [base_url]
    if client_id is not None:
        parts.append(f"client {client_id}")
    if name is not None:
        parts.append(f"account {name}")
    return " ".join(parts)


def check_account(where: str, recorded: str | None, account: str | None) -> bool:
    """Whether a store that ``recorded`` an account (None: none yet) may be opened by
    ``account`` (None: an opener that sends nothing, e.g. ``getbill outbox status``); True
    when the account is still to be recorded.

    Raises:
        OutboxStoreError: the store belongs to another account.
    """
    if account is None or recorded == account:
        return False
    if recorded is None:
        return True
    raise OutboxStoreError(
        f"outbox {where} belongs to {recorded!r}, not to {account!r}: each account needs "
        "an outbox of its own (another file, or another name)"
    )


class Store(Protocol):
    """A durable home for outbox entries; every method returns once its change is durable."""

    async def open(self, account: str | None = None) -> None:
        """Open (or make) the store, bound to ``account`` (see ``check_account``)."""

    async def close(self) -> None: ...

    def enqueue_create(
        self, key: str | None, debt_id: str, fields: str, now: float, limit: int
    ) -> Awaitable[Enqueued]:
        """Add a create (``fields``: its body as JSON text) unless its key has one (an
        ``async def``, or a plain function that returns what to await)."""

    async def enqueue_tagged(
        self, tag: str, key: str | None, debt_id: str, fields: str, now: float, *, check: bool
    ) -> Enqueued:
        """Add a create named by ``tag`` unless the tag is taken (``duplicate``); ``check``:
        look it up by ``call_id`` before sending it."""

    async def tagged(self) -> list[EntryEvent]:
        """Every tagged entry, oldest first, with its state and outcome."""

    async def reclaim(self, now: float) -> None:
        """Take back now what a claim would: entries in flight whose owner has ended (its
        lease is over, or, where the store can tell, its process ended)."""

    async def enqueue_update(
        self, key: str, fields: dict[str, Any], now: float, limit: int
    ) -> Enqueued: ...

    async def claim(self, owner: str, n: int, lease: float, now: float) -> list[Claimed]: ...

    async def renew(self, owner: str, seqs: list[int], until: float) -> list[int]:
        """Extend to ``until`` the leases ``owner`` still holds among ``seqs``; the seqs it
        extended (an entry taken over, or finished, meanwhile is not among them)."""

    async def finish(self, seq: int, owner: str, outcome: Outcome, *, now: float) -> None:
        """Record ``outcome`` for an entry ``owner`` holds in flight (nothing, if it no longer
        holds it); an outcome not ``attempted`` gives the claim's attempt back."""

    async def counts(self) -> StoreCounts: ...

    async def dead_entries(self) -> list[DeadEntry]: ...

    async def requeue(self, keys: list[str], ids: list[int], held: bool) -> int: ...

    async def prune(self, before: float) -> int:
        """Delete done and dead entries settled before ``before`` (never held ones); how
        many. A store may delete a bounded number a call."""
