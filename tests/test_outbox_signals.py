"""The outbox under real signals, with real processes (tests/outbox_service.py):

- SIGTERM with a short grace against a slow API: the creates without ``call_id`` that were
  cut off in flight are held, never sent twice (graceful must not be worse than a kill);
- SIGSTOP past the lease: a frozen drainer that wakes up sends nothing for the entries
  another drainer took over meanwhile (a drainer never sends past its own lease).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from getbill_async import Outbox
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import fast_client

SERVICE = str(Path(__file__).with_name("outbox_service.py"))


async def spawn(sb: Sandbox, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "GETBILL_TOKEN": sb.token}
    return await asyncio.create_subprocess_exec(
        sys.executable, SERVICE, *args, "--base-url", sb.base_url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def line(proc: asyncio.subprocess.Process, expected: bytes) -> None:
    assert proc.stdout is not None
    got = await asyncio.wait_for(proc.stdout.readline(), 20)
    if got != expected:
        _, err = await proc.communicate()
        raise AssertionError(f"{got!r} instead of {expected!r}: {err.decode()[-2000:]}")


async def writes_reach(sb: Sandbox, count: int) -> None:
    for _ in range(2000):
        if sb.requests_made("write") >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"fewer than {count} writes reached the sandbox")


def summaries(sb: Sandbox) -> Counter[str]:
    return Counter(str(f.get("summary")) for f in sb.created_followups())


@pytest.mark.timeout(60)
async def test_sigterm_with_a_short_grace_sends_no_keyless_create_twice(tmp_path: Path) -> None:
    calls, db = 60, tmp_path / "o.db"
    async with Sandbox(followups=100, latency=1.5) as sb:
        debts = ",".join(sb.debt_ids()[:5])
        args = ["keyless", str(db), "--debts", debts, "--calls", str(calls)]
        proc = await spawn(sb, *args, "--concurrency", "16", "--lease", "10", "--grace", "0.5")
        await line(proc, b"enqueued\n")
        await writes_reach(sb, 17)  # a round landed, the next is on the wire
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()[-2000:]
        await asyncio.sleep(1.7)  # what the sandbox received, it has committed
        async with fast_client(sb) as client, Outbox(client, db, poll=0.02) as outbox:
            await outbox.join(timeout=30)
            status = await outbox.status()
    made = summaries(sb)
    assert [s for s, n in made.items() if n > 1] == []  # none twice
    assert status.held > 0  # some were cut off on the wire: held for a person
    assert status.done + status.held == calls
    assert sum(made.values()) >= status.done


@pytest.mark.timeout(60)
async def test_a_drainer_frozen_past_its_lease_sends_nothing_when_it_wakes(
    tmp_path: Path,
) -> None:
    db, entries = tmp_path / "o.db", 8
    # The API admits 4 writes in 3 s; the frozen drainer's client believes in 500 an hour.
    async with Sandbox(followups=100, latency=0.05, writes=4, window=3.0) as sb:
        debts = sb.debt_ids()[:4]
        async with fast_client(sb) as client:
            async with Outbox(client, db, drain=False) as producer:
                for i in range(entries):
                    await producer.create(debt_id=debts[i % 4], type="call", call_id=f"fz-{i}")
            frozen = await spawn(sb, "drain", str(db), "--lease", "2", "--concurrency", "8")
            await line(frozen, b"draining\n")
            await writes_reach(sb, 5)  # four created, four waiting on a 429
            frozen.send_signal(signal.SIGSTOP)
            try:
                options = {"lease": 2.0, "lease_margin": 0.2, "grace": 0.2, "poll": 0.02}
                taker = client.with_options(timeout=1.0)
                async with Outbox(taker, db, **options) as other:  # type: ignore[arg-type]
                    await asyncio.sleep(4.0)  # past the frozen drainer's lease
                    await other.join(timeout=20)
            finally:
                frozen.send_signal(signal.SIGCONT)
            _, err = await asyncio.wait_for(frozen.communicate(), 30)
            assert frozen.returncode == 0, err.decode()[-2000:]
    assert sb.created_per_call_id() == {f"fz-{i}": 1 for i in range(entries)}
