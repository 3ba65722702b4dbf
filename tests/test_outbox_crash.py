"""The outbox under SIGKILL, with real processes: nothing returned is lost, nothing doubled.

The chaos test: a service process (tests/outbox_service.py) enqueues 1,000 calls, each
created with a call_id and updated once (half while the create is pending), against a
sandbox with a tight write budget (150 writes in a sliding 1 s window: the hour compressed so
that the test ends within its 60 s) and 0.3 s latency; it is killed with SIGKILL at 20
random points and restarted each time. At the end every call exists once with its final fields, no
update came before its create, and the writes the server committed are exactly the creates
plus the updates not merged.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from getbill_async import Outbox
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import WriteLog, fast_client
from tests.outbox_service import final_fields

SERVICE = str(Path(__file__).with_name("outbox_service.py"))
CALLS = 1000
KILLS = 20
WRITES, WINDOW = 150, 1.0  # a tight budget: 150 writes a second, in a 1 s sliding window


async def spawn(sb: Sandbox, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "GETBILL_TOKEN": sb.token}
    return await asyncio.create_subprocess_exec(
        sys.executable, SERVICE, *args, "--base-url", sb.base_url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.timeout(30)
async def test_create_returned_then_sigkill_the_entry_is_there(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    async with Sandbox(followups=20) as sb:
        proc = await spawn(sb, "once", db, "--debts", sb.debt_ids()[0])
        _, err = await proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        async with fast_client(sb) as client, Outbox(client, db, poll=0.02) as outbox:
            assert (await outbox.status()).pending == 1
            await outbox.join(timeout=10)
        assert sb.created_per_call_id() == {"kill-at-once": 1}


def server_records(sb: Sandbox, debts: list[str]) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for debt in debts:
        for followup_id in sb.followup_ids(debt_id=debt):
            record = sb.followup(followup_id)
            if record is not None and str(record.get("call_id", "")).startswith("call-"):
                found[str(record["call_id"])] = record
    return found


@pytest.mark.timeout(60)
async def test_chaos_sigkill_20_times_nothing_lost_nothing_doubled(tmp_path: Path) -> None:
    rng = random.Random(20)
    db, progress = str(tmp_path / "chaos.db"), str(tmp_path / "progress")
    started = time.monotonic()
    async with (
        Sandbox(followups=200, writes=WRITES, window=WINDOW, latency=0.3) as sb,
        WriteLog() as log,
    ):
        sb.add_webhook(log.url)
        debts = sb.debt_ids()[:25]
        args = ["chaos", db, progress, "--debts", ",".join(debts), "--calls", str(CALLS)]
        args += ["--writes", str(WRITES), "--window", str(WINDOW), "--concurrency", "48"]
        kills = 0
        while kills < KILLS:
            proc = await spawn(sb, *args)
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            if proc.returncode is not None:
                break
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
        killed_by = time.monotonic() - started
        proc = await spawn(sb, *args)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        await sb.webhooks_idle(10)
        async with fast_client(sb) as client, Outbox(client, db, drain=False) as outbox:
            status = await outbox.status()
        elapsed = time.monotonic() - started
    print(f"chaos: {kills} kills in {killed_by:.1f}s, all done in {elapsed:.1f}s, {status}")
    print(f"chaos: writes committed {dict(log.count())}")
    assert kills == KILLS
    assert (status.pending, status.in_flight, status.dead, status.held) == (0, 0, 0, 0)
    created = sb.created_per_call_id()
    assert sorted(created.values()) == [1] * CALLS  # 0 lost, 0 doubled
    records = server_records(sb, debts)
    for i in range(CALLS):
        record = records[f"call-{i}"]
        assert {k: record[k] for k in ("status", "duration_ms")} == final_fields(i), i
        events = log.per_call(f"call-{i}")
        assert events[0][0] == "followup.created", (i, events)
    writes = log.count()
    assert writes["followup.created"] == CALLS
    assert writes["followup.created"] + writes["followup.updated"] == 2 * CALLS - status.merged
