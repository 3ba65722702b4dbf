"""The outbox's one lifecycle: ``close(grace)`` and ``Drainer.abort()`` cut writes off in
flight without ever resending a create that has no ``call_id``; ``open()`` after ``close()``
drains again; ``close()`` returns only once nothing of the drainer runs; a lease shorter than
what it must cover is refused when the outbox is opened.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest

from getbill_async import GetBillClient, Outbox, RetryPolicy
from getbill_async.errors import ValidationError
from getbill_async.outbox import OutboxStoreError
from getbill_async.outbox._redis_store import RedisStore
from getbill_async.outbox._sqlite_store import SQLiteStore
from getbill_async.sandbox import Sandbox
from tests.outbox_faults import FaultyStore
from tests.outbox_helpers import fast_client
from tests.redis_fixtures import RedisServer

pytestmark = pytest.mark.timeout(30)


async def wait_until_sent(sb: Sandbox, writes: int) -> None:
    for _ in range(500):
        if sb.requests_made("write") >= writes:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{writes} writes never reached the sandbox")


def keyless(sb: Sandbox) -> list[dict[str, object]]:
    return [f for f in sb.created_followups() if f.get("summary") == "keyless"]


@pytest.mark.parametrize("how", ["grace", "abort"])
async def test_a_create_without_call_id_cut_off_in_flight_is_held_not_resent(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "o.db"
    async with Sandbox(followups=20, latency=0.5) as sb:
        debt = sb.debt_ids()[0]
        async with fast_client(sb) as client:
            box = Outbox(client, db, poll=0.02)
            await box.open()
            await box.create(debt_id=debt, type="call", summary="keyless")
            await wait_until_sent(sb, 1)
            if how == "abort":
                box.drainer.abort()
            await box.close(grace=0.1)
            await asyncio.sleep(0.6)  # the sandbox commits what it received
            assert len(keyless(sb)) == 1
            async with Outbox(client, db, poll=0.02) as again:
                await again.join(timeout=5)
                status = await again.status()
                [held] = await again.dead()
        assert (status.held, status.pending, status.done) == (1, 0, 0)
        assert held.state == "held" and "call_id" in held.message
        assert len(keyless(sb)) == 1  # never sent twice


async def test_an_outbox_closed_and_opened_again_drains_again(tmp_path: Path) -> None:
    async with Sandbox(followups=20) as sb, fast_client(sb) as client:
        debt = sb.debt_ids()[0]
        box = Outbox(client, tmp_path / "o.db", poll=0.02)
        for i in range(3):
            async with box:
                await box.create(debt_id=debt, type="call", call_id=f"again-{i}")
                await box.join(timeout=5)
        assert sb.created_per_call_id() == {f"again-{i}": 1 for i in range(3)}


async def test_a_lease_shorter_than_what_it_must_cover_is_refused_at_open(
    tmp_path: Path,
) -> None:
    client = GetBillClient("t0k", base_url="http://127.0.0.1:9", allow_insecure=True)
    async with client:
        box = Outbox(client, tmp_path / "o.db", lease=20)
        with pytest.raises(ValidationError, match=r"lease: .*timeout.*lease_margin.*grace"):
            await box.open()
        assert not (tmp_path / "o.db").exists()  # refused before the store is touched
        fits = client.with_options(timeout=4.0, retry=RetryPolicy(max_tries=1))
        async with Outbox(fits, tmp_path / "o.db", lease=20):
            pass


LOCKER = (
    "import sqlite3, sys, time\n"
    "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "conn.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "conn.execute('COMMIT')\n"
)


def in_flight_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM entries WHERE state = 'in_flight'").fetchone()
    conn.close()
    return int(count)


def drainer_tasks() -> list[asyncio.Task[object]]:
    return [
        t for t in asyncio.all_tasks() if "Drainer" in getattr(t.get_coro(), "__qualname__", "")
    ]


@pytest.mark.parametrize("round_", range(3))
async def test_close_returns_once_nothing_runs_while_another_process_holds_the_lock(
    tmp_path: Path, round_: int
) -> None:
    """Entries enqueued while another process holds the file's lock are claimed by a claim
    that was waiting for the same lock when ``close()`` began: their writes too are over,
    and their outcomes recorded, when it returns."""
    db = tmp_path / "o.db"
    async with Sandbox(followups=100, latency=0.3) as sb, fast_client(sb) as client:
        debts = sb.debt_ids()[:4]
        box = Outbox(client, db, poll=0.01, concurrency=8)
        await box.open()
        for i in range(2):
            await box.create(debt_id=debts[i], type="call", call_id=f"lk-{i}")
        await wait_until_sent(sb, 2)
        await asyncio.sleep(0.1 * round_)
        locker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOCKER, str(db), "1.0", stdout=asyncio.subprocess.PIPE
        )
        assert locker.stdout is not None
        assert await locker.stdout.readline() == b"locked\n"
        more = [
            asyncio.create_task(box.create(debt_id=debts[i % 4], type="call", call_id=f"lk-{i}"))
            for i in range(2, 8)
        ]
        await asyncio.sleep(0.05)  # the drainer's next claim waits for the lock too
        await box.close(grace=0.1)
        assert drainer_tasks() == []
        await asyncio.gather(*more)
        await locker.wait()
        await asyncio.sleep(0.5)  # what the sandbox received, it has committed
        assert in_flight_rows(db) == 0  # every outcome recorded before close() returned
        async with Outbox(client, db, poll=0.01) as again:
            await again.join(timeout=10)
        assert sb.created_per_call_id() == {f"lk-{i}": 1 for i in range(8)}


async def test_the_heartbeat_outlives_any_failure_and_an_entry_is_never_held_twice(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20, latency=3.2) as sb:
        client = GetBillClient(
            sb.token, base_url=sb.base_url, timeout=3.5, retry=RetryPolicy(base=0.01, cap=0.05)
        )
        store = FaultyStore(SQLiteStore(tmp_path / "o.db"))
        store.before["renew"] = [AttributeError("'NoneType' object has no attribute 'send'")]
        async with client:
            # Renewals at 1.5 s (it fails) and 3 s: the write lands at 3.2 s.
            options = {"lease": 4.5, "lease_margin": 0.3, "grace": 0.5, "poll": 0.01}
            async with Outbox(client, store, **options) as box:  # type: ignore[arg-type]
                await box.create(debt_id=sb.debt_ids()[0], type="call", call_id="hb-1")
                await box.join(timeout=15)
        assert store.calls["renew"] >= 1  # it went on after the failure
        assert sb.created_per_call_id() == {"hb-1": 1}


async def test_an_entry_taken_back_while_its_outcome_is_being_recorded_is_not_sent_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Renewals fail and the outcome's record is slow (three failures, then it lands 1.25 s
    # on): the lease lapses meanwhile, and the next claim hands the entry (a keyed create, to
    # be looked up) back to the same drainer, which still holds it. It is left alone: sent
    # once, never looked up, and done when its outcome lands.
    async with Sandbox(followups=20) as sb:
        client = GetBillClient(
            sb.token, base_url=sb.base_url, timeout=0.5, retry=RetryPolicy(base=0.01, cap=0.05)
        )
        store = FaultyStore(RedisStore(redis_server.url, name=f"held-{uuid.uuid4().hex[:8]}"))
        lost = OutboxStoreError("a reply lost")
        store.before["renew"] = [lost] * 100
        store.before["finish"] = [lost] * 3
        async with client:
            options = {"lease": 1.2, "lease_margin": 0.3, "grace": 0.2, "poll": 0.02}
            async with Outbox(client, store, **options) as box:  # type: ignore[arg-type]
                await box.create(debt_id=sb.debt_ids()[0], type="call", call_id="back-1")
                await box.join(timeout=10)
                assert (await box.status()).done == 1
        assert sb.created_per_call_id() == {"back-1": 1}
        assert sb.requests_made("read") == 0  # no second task looked it up either
    assert any("claimed again while held; left alone" in m for m in caplog.messages)
