"""The outbox's SQLite file: foreign or corrupt files are refused untouched; two drainers
sharing one file never send an entry twice; processes that open one new file at once all
get it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from getbill_async import GetBillClient, Outbox
from getbill_async.outbox import OutboxStoreError
from getbill_async.outbox._sqlite_schema import connect
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import fast_client, indexes

pytestmark = pytest.mark.timeout(30)


async def test_a_corrupt_file_is_refused_by_name_and_left_untouched(
    client: GetBillClient, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.db"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    with pytest.raises(OutboxStoreError, match=f"{path} is not an outbox database"):
        async with Outbox(client, path):
            pass
    assert path.read_bytes() == garbage


async def test_a_broken_sqlite_file_is_refused_and_left_untouched(
    client: GetBillClient, tmp_path: Path
) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    before = path.read_bytes()
    with pytest.raises(OutboxStoreError, match="broken.db is not an outbox database"):
        async with Outbox(client, path):
            pass
    assert path.read_bytes() == before


async def test_another_programs_database_is_refused_and_left_untouched(
    client: GetBillClient, tmp_path: Path
) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('x')")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(OutboxStoreError, match="it holds other tables: users"):
        async with Outbox(client, path):
            pass
    assert path.read_bytes() == before
    assert not (tmp_path / "app.db-wal").exists()


async def test_two_drainers_on_one_file_send_each_entry_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    # 50 ms a write: one drainer cannot empty the backlog before the other has started.
    async with (
        Sandbox(followups=50, seed=3, latency=0.05) as sandbox,
        fast_client(sandbox) as client,
    ):
        debts = sandbox.debt_ids()[:4]
        async with Outbox(client, path, drain=False) as producer:
            for i in range(120):
                await producer.create(debt_id=debts[i % 4], type="sms", call_id=f"s-{i}")
        async with (
            Outbox(client, path, poll=0.01, concurrency=8) as first,
            Outbox(client, path, poll=0.01, concurrency=8) as second,
        ):
            await first.join(timeout=20)
            sent = (first.drainer.counters.sent, second.drainer.counters.sent)
        assert sum(sent) == 120 and min(sent) > 0
        assert sorted(sandbox.created_per_call_id().values()) == [1] * 120


async def test_a_dead_create_takes_its_waiting_update_with_it_and_requeue_restores_both(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20, latency=0.3) as sb:
        async with fast_client(sb) as client, Outbox(client, tmp_path / "d.db", poll=0.01) as box:
            await box.create(debt_id="unknown", type="call", call_id="dd-1")
            while not (await box.status()).in_flight:
                await asyncio.sleep(0.01)
            await box.update("dd-1", status="failed")  # waits behind the create in flight
            await box.join(timeout=10)
            dead = await box.dead()
            assert [(d.op, d.status) for d in dead] == [("create", 422), ("update", None)]
            assert "the create of 'dd-1' is dead" in dead[1].message
            assert await box.requeue("dd-1") == 2


async def test_group_commit_shares_fsyncs_between_concurrent_creates(
    sandbox: Sandbox, client: GetBillClient, tmp_path: Path
) -> None:
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, tmp_path / "g.db", drain=False) as outbox:
        writer = outbox._store.writer  # type: ignore[attr-defined]
        before = writer.commits
        creates = (outbox.create(debt_id=debt, type="call", call_id=f"g-{i}") for i in range(64))
        await asyncio.gather(*creates)
        assert writer.commits - before < 16
        assert (await outbox.status()).pending == 64


async def test_a_dead_drainers_entries_are_looked_up_or_held(
    sandbox: Sandbox, client: GetBillClient, tmp_path: Path
) -> None:
    path = tmp_path / "h.db"
    debt = sandbox.debt_ids()[0]
    finished = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await finished.wait()  # its pid is now one of no running process
    dead_owner = f"{socket.gethostname()}:{finished.pid}:gone"
    async with Outbox(client, path, drain=False) as producer:
        await producer.create(debt_id=debt, type="call", summary="no call_id")
        await producer.create(debt_id=debt, type="call", call_id="h-1")
        claimed = await producer._store.claim(dead_owner, 10, 300.0, time.time())
        assert [entry.key for entry in claimed] == [None, "h-1"]
    await client.followups.create(debt_id=debt, type="call", call_id="h-1")  # it had been sent
    async with Outbox(client, path, poll=0.02) as drainer:
        await drainer.join(timeout=10)
        status = await drainer.status()
        assert (status.done, status.held, status.pending) == (1, 1, 0)
        counters = drainer.drainer.counters
        assert (counters.looked_up, counters.found, counters.sent) == (1, 1, 0)
        [held] = await drainer.dead()
        assert (held.state, held.key) == ("held", None)
        assert "no call_id" in held.message
        assert await drainer.requeue(held.id, held=True) == 1  # a person checked: not there
        await drainer.join(timeout=10)
    assert sandbox.created_per_call_id()["h-1"] == 1


async def test_a_cancelled_join_ends_even_when_progress_races_the_cancel(tmp_path: Path) -> None:
    # join() waits for the drainer's progress; a cancel that lands as progress is signalled
    # must still cancel it (a wait that swallowed it would leave join() waiting for good).
    async with Sandbox(followups=20, seed=4) as sb, fast_client(sb) as client:
        async with Outbox(client, tmp_path / "o.db", drain=False) as outbox:
            await outbox.create(debt_id=sb.debt_ids()[0], type="sms", call_id="c-1")
            progress = outbox._drainer.progress
            for _ in range(30):
                joining = asyncio.ensure_future(outbox.join())
                await asyncio.sleep(0.01)  # join() is now waiting for progress
                progress.set()
                joining.cancel()
                done, _ = await asyncio.wait({joining}, timeout=2)
                assert done, "join() went on waiting after it was cancelled"
                assert joining.cancelled()


# The layout of the previous release: two indexes on ``key``, one of them the unique one
# for untagged creates.
_TWO_KEY_INDEXES = (
    "DROP INDEX entries_by_key;"
    "CREATE INDEX entries_key ON entries (key, seq);"
    "CREATE UNIQUE INDEX entries_create_key ON entries (key) WHERE op = 'create' AND tag IS NULL;"
)


async def test_a_file_with_two_key_indexes_gets_one_and_keeps_its_rules(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    debt = sandbox.debt_ids()[0]
    path = tmp_path / "before.db"
    async with Outbox(client, path, drain=False) as outbox:
        await outbox.create(debt_id=debt, type="call", call_id="k-1")
    with sqlite3.connect(path) as conn:
        conn.executescript(_TWO_KEY_INDEXES)
    conn.close()
    assert indexes(path) == {"entries_key", "entries_create_key", "entries_state", "entries_tag"}
    # Two processes open it at once: one brings it up to date, the other finds it done.
    first, second = Outbox(client, path, drain=False), Outbox(client, path, drain=False)
    await asyncio.gather(first.__aenter__(), second.__aenter__())
    try:
        assert indexes(path) == {"entries_by_key", "entries_state", "entries_tag"}
        await second.create(debt_id=debt, type="call", call_id="k-1")  # a replay: no new entry
        await first.update("k-1", status="deal_found")  # merged into the pending create
        await first.update("k-1", duration_ms=5)
        await second.create(debt_id=debt, type="sms", call_id="k-2")
        status = await first.status()
        assert (status.pending, status.merged) == (2, 2)
    finally:
        await asyncio.gather(first.__aexit__(None, None, None), second.__aexit__(None, None, None))
    with sqlite3.connect(path) as conn:
        # A release from before the change still finds a second untagged create refused.
        added = conn.execute(
            "INSERT OR IGNORE INTO entries (key, op, state, debt_id, fields, enqueued) "
            "VALUES ('k-1', 'create', 'pending', ?, '{}', 0)",
            (debt,),
        ).rowcount
        rows = conn.execute("SELECT key, op, fields FROM entries ORDER BY seq").fetchall()
    conn.close()
    assert added == 0
    assert [(key, op) for key, op, _ in rows] == [("k-1", "create"), ("k-2", "create")]
    assert json.loads(rows[0][2]) == {
        "debt_id": debt,
        "type": "call",
        "call_id": "k-1",
        "status": "deal_found",
        "duration_ms": 5,
    }


def test_openers_of_one_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    # The loser of the race to make a new file an outbox (a WAL file) hears "database is
    # locked" at once, without a wait: it tries again instead of failing, or of calling the
    # file foreign. Six connections (each as a process of its own would open it) at once,
    # on 80 new files: before, some 6% of the files failed an opener.
    failures: list[str] = []
    for round_ in range(80):
        path = str(tmp_path / f"new-{round_}.db")
        barrier = threading.Barrier(6)

        def open_it(path: str = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                connect(path).close()
            except OutboxStoreError as exc:
                failures.append(str(exc))

        openers = [threading.Thread(target=open_it) for _ in range(6)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
    assert failures == []
