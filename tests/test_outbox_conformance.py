"""One set of cases for every outbox store: SQLite, Redis on one node, Redis on a 3-node
cluster, through the ``Store`` protocol alone, so the SQL and the Lua cannot drift: claim
order and the per-key rule, merging, leases and taking back, dead, held and requeued entries,
pruning, tags.

Times: the SQLite store takes the caller's clock and Redis its own, so the cases use leases
and delays in seconds, never a fake clock.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from getbill_async.outbox._redis_store import RedisStore
from getbill_async.outbox._sqlite_store import SQLiteStore
from getbill_async.outbox._store import Store, StoreFull
from getbill_async.outbox._types import Outcome

pytestmark = pytest.mark.timeout(60)
Make = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis", "cluster"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """``make()``: another open-able store on this test's one outbox (like another process)."""
    made: list[Store] = []
    name = f"conf-{uuid.uuid4().hex[:10]}"
    url = ""
    if request.param != "sqlite":
        server = "redis_server" if request.param == "redis" else "redis_cluster"
        url = request.getfixturevalue(server).url

    def factory() -> Store:
        store: Store
        if request.param == "sqlite":
            store = SQLiteStore(tmp_path / "conformance.db")
        else:
            store = RedisStore(url, name=name)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
async def store(make: Make) -> Store:
    opened = make()
    await opened.open()
    return opened


async def create(store: Store, key: str | None, limit: int = 0, **fields: object) -> str:
    body = json.dumps({"debt_id": "debt-1", "type": "call", **fields})
    return await store.enqueue_create(key, "debt-1", body, time.time(), limit)


async def claim(store: Store, n: int = 10, lease: float = 30.0, owner: str = "a") -> list[str]:
    """The keys (``-`` for none) and ops of what a claim hands out, in order."""
    taken = await store.claim(owner, n, lease, time.time())
    return [f"{entry.key or '-'}:{entry.op}:{entry.seq}" for entry in taken]


def seqs(claimed: list[str]) -> list[int]:
    return [int(text.rsplit(":", 1)[1]) for text in claimed]


async def test_a_claim_takes_the_oldest_entries_first_n_at_most(store: Store) -> None:
    for i in range(5):
        assert await create(store, f"k-{i}") == "added"
    first = await claim(store, n=3)
    assert [text.split(":")[0] for text in first] == ["k-0", "k-1", "k-2"]
    assert [text.split(":")[0] for text in await claim(store)] == ["k-3", "k-4"]
    assert await claim(store) == []


async def test_entries_behind_many_that_are_not_due_are_claimed(store: Store) -> None:
    # More entries than one read of the store at its front, all backing off: the entry
    # behind them is due, and a claim must find it.
    for i in range(1100):
        await create(store, f"wait-{i}")
    taken = await store.claim("a", 1100, 30.0, time.time())
    assert len(taken) == 1100
    later = time.time() + 600
    for entry in taken:
        await store.finish(entry.seq, "a", Outcome("pending", next_try=later), now=time.time())
    await create(store, "fresh")
    assert [text.split(":")[0] for text in await claim(store, n=5)] == ["fresh"]
    counts = await store.counts()
    assert (counts.pending, counts.in_flight) == (1100, 1)


async def test_a_full_store_refuses_new_creates_but_not_replays(store: Store) -> None:
    assert await create(store, "f-1", limit=2) == "added"
    assert await create(store, None, limit=2) == "added"
    with pytest.raises(StoreFull):
        await create(store, "f-2", limit=2)
    assert await create(store, "f-1", limit=2) == "duplicate"
