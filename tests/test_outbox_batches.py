"""Creates queued together in a SQLite outbox go to the file as one statement, and are
answered as if each had run alone: duplicates within the batch and in the file, the backlog
limit row by row, a cancelled caller, a failing operation in the same batch."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from getbill_async import GetBillClient, Outbox, OutboxFullError
from getbill_async.outbox import OutboxStoreError
from getbill_async.outbox._sqlite import Batch
from getbill_async.outbox._sqlite_store import SQLiteStore
from getbill_async.outbox._store import StoreFull

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "b.db")
    await store.open()
    yield store
    await store.close()


async def creates(store: SQLiteStore, keys: list[str | None], limit: int = 0) -> list[Any]:
    """Each key's answer (or its StoreFull), the creates queued in one turn of the loop."""
    now = time.time()
    queued = [store.enqueue_create(key, "debt-1", "{}", now, limit) for key in keys]
    return await asyncio.gather(*queued, return_exceptions=True)


def rows(store: SQLiteStore) -> list[tuple[str | None, str]]:
    with sqlite3.connect(store.path) as conn:
        found = conn.execute("SELECT key, op FROM entries ORDER BY seq").fetchall()
    conn.close()
    return found


async def test_a_key_twice_in_one_batch_is_added_once_the_first_time(
    store: SQLiteStore,
) -> None:
    answers = await creates(store, ["a", "b", "a", None, None, "b", "c"])
    assert answers == ["added", "added", "duplicate", "added", "added", "duplicate", "added"]
    assert [key for key, _ in rows(store)] == ["a", "b", None, None, "c"]


async def test_keys_already_in_the_file_are_duplicates_among_new_ones(
    store: SQLiteStore,
) -> None:
    assert await creates(store, ["old-1", "old-2"]) == ["added", "added"]
    answers = await creates(store, ["new-1", "old-2", None, "new-2", "new-1", "old-1"])
    assert answers == ["added", "duplicate", "added", "added", "duplicate", "duplicate"]
    assert [key for key, _ in rows(store)] == ["old-1", "old-2", "new-1", None, "new-2"]
    assert await creates(store, ["old-1", "new-2"]) == ["duplicate", "duplicate"]


async def test_the_limit_is_applied_row_by_row_and_replays_pass_when_full(
    store: SQLiteStore,
) -> None:
    assert await creates(store, [f"k-{i}" for i in range(8)], limit=10) == ["added"] * 8
    await store.enqueue_tagged("line-1", "tagged", "debt-1", "{}", time.time(), check=False)
    answers = await creates(store, ["n-1", "k-3", "n-2", "n-1", "n-3", "tagged", None], limit=11)
    assert answers[:4] == ["added", "duplicate", "added", "duplicate"]
    assert isinstance(answers[4], StoreFull) and isinstance(answers[6], StoreFull)
    assert answers[5] == "duplicate"  # a key with a create, even a tagged one, is a replay
    assert len(rows(store)) == 11


async def test_more_creates_than_one_statement_holds_all_commit(store: SQLiteStore) -> None:
    keys: list[str | None] = [f"m-{i}" for i in range(300)]
    keys += ["m-7", None]
    answers = await creates(store, keys, limit=1000)
    assert answers == ["added"] * 300 + ["duplicate", "added"]
    assert len(rows(store)) == 301


async def test_a_failing_operation_in_the_batch_rolls_back_alone(store: SQLiteStore) -> None:
    def broken(conn: sqlite3.Connection, batch: Batch) -> None:
        conn.execute("INSERT INTO entries (key, op) VALUES ('half', 'create')")  # no state
        raise AssertionError("not reached")

    now = time.time()
    before = [store.enqueue_create(f"f-{i}", "debt-1", "{}", now, 100) for i in range(3)]
    failing = store.writer.run(broken)
    after = [store.enqueue_create(f"f-{i}", "debt-1", "{}", now, 100) for i in range(2, 6)]
    answers = await asyncio.gather(*before, failing, *after, return_exceptions=True)
    assert answers[:3] == ["added"] * 3
    assert isinstance(answers[3], OutboxStoreError)  # the documented error, naming the file
    assert isinstance(answers[3].__cause__, sqlite3.IntegrityError)
    assert answers[4:] == ["duplicate", "added", "added", "added"]
    assert [key for key, _ in rows(store)] == [f"f-{i}" for i in range(6)]


async def test_a_cancelled_creator_does_not_fail_the_others_in_its_batch(
    client: GetBillClient, tmp_path: Path
) -> None:
    async with Outbox(client, tmp_path / "c.db", drain=False) as outbox:
        tasks = [
            asyncio.create_task(outbox.create(debt_id="d", type="call", call_id=f"c-{i}"))
            for i in range(20)
        ]
        await asyncio.sleep(0)  # every create is queued for the same batch
        tasks[5].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[5], asyncio.CancelledError)
        assert done[:5] + done[6:] == [None] * 19
        # Its entry was queued before it gave up: the batch commits it all the same, and a
        # replay of it is a no-op.
        await outbox.create(debt_id="d", type="call", call_id="c-5")
        assert (await outbox.status()).pending == 20


async def test_a_full_outbox_raises_for_the_creates_over_the_limit_only(
    client: GetBillClient, tmp_path: Path
) -> None:
    async with Outbox(
        client, tmp_path / "l.db", drain=False, max_pending=5, when_full="raise"
    ) as box:
        made = [box.create(debt_id="d", type="call", call_id=f"l-{i}") for i in range(8)]
        done = await asyncio.gather(*made, return_exceptions=True)
        assert done[:5] == [None] * 5
        assert all(isinstance(result, OutboxFullError) for result in done[5:])
        await box.create(debt_id="d", type="call", call_id="l-2")  # a replay, even when full
        assert (await box.status()).pending == 5


async def test_a_batch_whose_statement_fails_midway_adds_each_create_at_most_once(
    store: SQLiteStore,
) -> None:
    # A trigger that fails the statement at one row, after the rows before it were written:
    # a real partial write. Whatever the batch then does, each keyless create it answered
    # "added" is in the file once, and none it did not answer so.
    with sqlite3.connect(store.path) as conn:
        conn.execute(
            "CREATE TRIGGER boom AFTER INSERT ON entries WHEN NEW.key = 'boom' "
            "BEGIN SELECT RAISE(FAIL, 'boom'); END"
        )
    conn.close()
    answers = await creates(store, [None, None, "boom", None], limit=100)
    added = sum(1 for answer in answers if answer == "added")
    assert [key for key, _ in rows(store)] == [None] * added
    assert isinstance(answers[2], OutboxStoreError)
