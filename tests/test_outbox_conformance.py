"""One set of cases for every outbox store: SQLite, Redis on one node, Redis on a 3-node
cluster, through the ``Store`` protocol alone, so the SQL and the Lua cannot drift: claim
order and the per-key rule, merging, leases and taking back, dead, held and requeued entries,
pruning, tags.

Times: the SQLite store takes the caller's clock and Redis its own, so the cases use leases
and delays in seconds, never a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from getbill_async import FollowupCreate, GetBillClient, Outbox
from getbill_async.outbox._redis_lua_common import INDEX_STEP
from getbill_async.outbox._redis_store import RedisStore
from getbill_async.outbox._sqlite_store import SQLiteStore
from getbill_async.outbox._store import Store, StoreFull
from getbill_async.outbox._types import Outcome
from tests.redis_fixtures import RedisServer

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


async def update(store: Store, key: str, limit: int = 0, **fields: object) -> str:
    return await store.enqueue_update(key, dict(fields), time.time(), limit)


async def finish(store: Store, seq: int, outcome: Outcome, owner: str = "a") -> None:
    await store.finish(seq, owner, outcome, now=time.time())


async def test_creates_and_updates_merge_while_pending(store: Store) -> None:
    assert await create(store, "m-1", status="in_progress") == "added"
    assert await create(store, "m-1") == "duplicate"
    assert await update(store, "m-1", status="deal_found") == "merged"
    assert await update(store, "m-1", status="deal_found") == "unchanged"
    assert await update(store, "solo", notes="a") == "added"  # a followup id: no create here
    assert await update(store, "solo", notes="b", duration_ms=5) == "merged"
    taken = await store.claim("a", 10, 30.0, time.time())
    assert [(e.key, e.op, e.target) for e in taken] == [
        ("m-1", "create", None),
        ("solo", "update", "solo"),
    ]
    assert taken[0].fields["status"] == "deal_found"
    assert taken[1].fields == {"notes": "b", "duration_ms": 5}
    assert (await store.counts()).merged == 2


async def test_an_update_waits_for_its_create_in_flight_then_goes_to_its_followup(
    store: Store,
) -> None:
    await create(store, "w-1")
    [first] = await store.claim("a", 10, 30.0, time.time())
    assert await update(store, "w-1", status="failed") == "added"  # never into one in flight
    await create(store, "w-2")
    assert [text.split(":")[0] for text in await claim(store)] == ["w-2"]  # w-1's waits
    await finish(store, first.seq, Outcome("done", followup_id="f-9"))
    [second] = await store.claim("a", 10, 30.0, time.time())
    assert (second.key, second.op, second.target) == ("w-1", "update", "f-9")


async def test_a_lease_that_ends_gives_entries_back_to_be_looked_up_or_held(
    make: Make, store: Store
) -> None:
    await create(store, None)
    await create(store, "l-1")
    assert len(await store.claim("gone", 10, 0.3, time.time())) == 2
    other = make()
    await other.open()
    assert await other.claim("b", 10, 30.0, time.time()) == []  # the lease holds
    await asyncio.sleep(0.5)
    await other.reclaim(time.time())
    counts = await other.counts()
    assert (counts.held, counts.pending, counts.in_flight) == (1, 1, 0)
    [taken] = await other.claim("b", 10, 30.0, time.time())
    assert (taken.key, taken.check, taken.attempts) == ("l-1", True, 2)
    [held] = await other.dead_entries()
    assert (held.state, held.key, held.status) == ("held", None, None)
    await finish(other, taken.seq, Outcome("done"), owner="gone")  # not its owner: ignored
    assert (await other.counts()).in_flight == 1


async def test_a_renewed_lease_holds(make: Make, store: Store) -> None:
    await create(store, "r-1")
    [taken] = await store.claim("a", 10, 0.5, time.time())
    assert await store.renew("a", [taken.seq], time.time() + 30) == [taken.seq]
    await asyncio.sleep(0.7)
    other = make()
    await other.open()
    assert await other.claim("b", 10, 30.0, time.time()) == []


async def test_a_lease_taken_over_is_not_renewed(make: Make, store: Store) -> None:
    # A drainer that stood still past its lease (SIGSTOP) renews nothing another took over:
    # its own clock's deadline for the entry stays lapsed, so it never sends it.
    await create(store, "t-1")
    [taken] = await store.claim("a", 10, 0.2, time.time())
    await asyncio.sleep(0.4)
    other = make()
    await other.open()
    assert [e.seq for e in await other.claim("b", 10, 30.0, time.time())] == [taken.seq]
    assert await store.renew("a", [taken.seq], time.time() + 30) == []
    assert await other.renew("b", [taken.seq], time.time() + 30) == [taken.seq]


async def test_a_dead_create_takes_its_waiting_updates_and_requeue_brings_them_back(
    store: Store,
) -> None:
    await create(store, "d-1")
    [taken] = await store.claim("a", 10, 30.0, time.time())
    await update(store, "d-1", status="failed")
    error = {"status": 404, "message": "no such debt", "details": {"debt_id": ["unknown"]}}
    await finish(store, taken.seq, Outcome("dead", error=error))
    dead = await store.dead_entries()
    assert [(d.op, d.status, d.message) for d in dead][0] == ("create", 404, "no such debt")
    assert dead[0].details == {"debt_id": ["unknown"]}
    assert dead[1].op == "update" and "the create of 'd-1' is dead" in dead[1].message
    assert (await store.counts()).dead == 2
    assert await store.requeue(["d-1"], [], False) == 2
    assert [text.split(":")[:2] for text in await claim(store)] == [["d-1", "create"]]


async def test_held_entries_go_back_only_when_asked(store: Store) -> None:
    await create(store, None)
    [taken] = await store.claim("a", 10, 30.0, time.time())
    await finish(store, taken.seq, Outcome("held", error={"message": "unknown"}))
    assert await store.requeue([], [], False) == 0
    assert await store.requeue([], [taken.seq], True) == 1
    [again] = await store.claim("a", 10, 30.0, time.time())
    assert (again.seq, again.check) == (taken.seq, False)


async def test_a_retry_waits_for_its_time_and_keeps_its_key_blocked(store: Store) -> None:
    await create(store, "t-1")
    [taken] = await store.claim("a", 10, 30.0, time.time())
    await update(store, "t-1", notes="later")
    await finish(store, taken.seq, Outcome("pending", next_try=time.time() + 0.5, check=True))
    assert await claim(store) == []  # not due, and its update waits behind it
    await asyncio.sleep(0.7)
    [again] = await store.claim("a", 10, 30.0, time.time())
    assert (again.key, again.op, again.check) == ("t-1", "create", True)


async def test_done_entries_are_pruned_after_their_time(store: Store) -> None:
    await create(store, "p-1")
    await create(store, None)
    for entry in await store.claim("a", 10, 30.0, time.time()):
        await finish(store, entry.seq, Outcome("done", followup_id="f-1"))
    assert await store.prune(time.time() - 60) == 0
    await asyncio.sleep(0.1)
    assert await store.prune(time.time()) == 2
    counts = await store.counts()
    assert (counts.done, counts.pending) == (0, 0)
    assert await create(store, "p-1") == "added"  # forgotten: a new create


async def test_tagged_creates_are_unique_by_tag_and_listed_with_their_outcome(
    store: Store,
) -> None:
    body = json.dumps({"debt_id": "debt-1", "type": "call"})
    tagged = store.enqueue_tagged
    assert await tagged("line-1", "t-1", "debt-1", body, time.time(), check=False) == "added"
    assert await tagged("line-1", "t-1", "debt-1", body, time.time(), check=False) == "duplicate"
    assert await tagged("line-2", "t-1", "debt-2", body, time.time(), check=True) == "added"
    assert await tagged("line-3", None, "debt-1", body, time.time(), check=False) == "added"
    assert await create(store, "t-1") == "added"  # an untagged create is unique by key alone
    taken = await store.claim("a", 10, 30.0, time.time())
    assert [(e.tag, e.key, e.check) for e in taken] == [
        ("line-1", "t-1", False),
        ("line-3", None, False),
    ]
    await finish(store, taken[0].seq, Outcome("done", followup_id="f-1"))
    events = await store.tagged()
    assert [(e.tag, e.state, e.followup_id, e.check) for e in events] == [
        ("line-1", "done", "f-1", False),
        ("line-2", "pending", None, True),
        ("line-3", "in_flight", None, False),
    ]
    assert (await store.counts()).unkeyed == 0  # the keyless one is in flight


async def test_counts_report_every_state(store: Store) -> None:
    await create(store, None)
    await create(store, "c-1")
    await create(store, "c-2")
    await create(store, "c-3")
    first, second = await store.claim("a", 2, 30.0, time.time())
    await finish(store, first.seq, Outcome("held"))
    await finish(store, second.seq, Outcome("dead", error={"status": 422, "message": "no"}))
    await store.claim("a", 1, 30.0, time.time())
    counts = await store.counts()
    assert (counts.pending, counts.in_flight, counts.held, counts.dead) == (1, 1, 1, 1)
    assert counts.oldest_enqueued is not None and abs(counts.oldest_enqueued - time.time()) < 5


async def test_an_outbox_on_redis_takes_tagged_creates_and_reclaims(
    redis_server: RedisServer,
) -> None:
    # Nothing above the store asks which store it has: what ``getbill log`` needs works on
    # Redis too.
    async with GetBillClient("t", base_url="http://127.0.0.1:9/v1", allow_insecure=True) as client:
        url, name = redis_server.url, f"tags-{uuid.uuid4().hex[:8]}"
        async with Outbox(client, url, name=name, drain=False) as outbox:
            item = FollowupCreate(debt_id="debt-1", type="call", call_id="rt-1")
            assert await outbox.create_tagged("line-1", item) is True
            assert await outbox.create_tagged("line-1", item) is False
            await outbox.reclaim()
            assert [(e.tag, e.state) for e in await outbox.tagged()] == [("line-1", "pending")]


async def test_dead_letters_are_pruned_after_their_time_and_held_ones_kept(store: Store) -> None:
    await create(store, "x-1")
    await create(store, None)
    dead, held = await store.claim("a", 10, 30.0, time.time())
    await update(store, "x-1", status="failed")  # buried with its create
    await finish(store, dead.seq, Outcome("dead", error={"status": 404, "message": "no"}))
    await finish(store, held.seq, Outcome("held"))
    assert await store.prune(time.time() - 60) == 0
    await asyncio.sleep(0.1)
    assert await store.prune(time.time()) == 2
    assert [(d.state, d.key) for d in await store.dead_entries()] == [("held", None)]
    counts = await store.counts()
    assert (counts.dead, counts.held) == (0, 1)


async def test_a_redis_store_of_an_earlier_release_is_indexed_a_step_a_call(
    redis_server: RedisServer,
) -> None:
    # A store made before the indexes (creates without call_id; the sets a claim takes from):
    # no script may read it whole at once, which would stall a Redis the fleet shares.
    store = RedisStore(redis_server.url, name=f"old-{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        total = INDEX_STEP * 2 + 500
        for _ in range(total):
            await create(store, None)
        direct = Redis.from_url(redis_server.url)
        await direct.delete(*(f"{store.prefix}:{s}" for s in ("unkeyed", "ready", "later")))
        await direct.hdel(f"{store.prefix}:meta", "unkeyed", "indexed")
        await direct.aclose()
        seen = [(await store.counts()).unkeyed for _ in range(4)]
        assert seen == [INDEX_STEP, 2 * INDEX_STEP, total, total]
        assert len(await store.claim("a", 5, 30.0, time.time())) == 5
    finally:
        await store.close()


async def test_a_dead_letter_of_an_earlier_release_gets_its_retention_from_when_it_died(
    redis_server: RedisServer,
) -> None:
    # An earlier release scored dead letters by id, not by time: taken for a time, every one
    # would look decades old and be pruned at once.
    store = RedisStore(redis_server.url, name=f"olddead-{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        await create(store, "o-1")
        [taken] = await store.claim("a", 1, 30.0, time.time())
        await finish(store, taken.seq, Outcome("dead", error={"status": 404, "message": "no"}))
        direct = Redis.from_url(redis_server.url)
        await direct.zadd(f"{store.prefix}:dead", {str(taken.seq): taken.seq})
        await direct.aclose()
        assert await store.prune(time.time() - 60) == 0
        assert [d.key for d in await store.dead_entries()] == ["o-1"]
    finally:
        await store.close()
