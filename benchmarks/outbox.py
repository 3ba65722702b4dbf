"""The outbox: durable enqueue throughput, writes per call for a dialer, drain time.

Three measurements, each a ratio taken in one run:

- **Enqueue** (medians of 5 interleaved rounds): 64 concurrent producers, 200 creates
  each, ``await outbox.create(...)`` (each returns once its entry is committed, WAL +
  ``synchronous=FULL``) against a bare loop that inserts and commits one SQLite row per call
  with the same settings. Group commit is the difference. Goal >= 10x;
  the p99 latency of ``create()`` is reported too.
- **Dialer**: calls that start with a create (``in_progress``) and end with an update, while
  the outbox has a backlog longer than a call (here a time-compressed hour: the sandbox's
  window is seconds, the calls last a fraction of it). Writes per call: goal <= 1.1, against
  2.0 for calls sent as they come (measured on the same calls, sent directly).
- **Drain**: a 2,000-write backlog under a budget of 500 writes per 15 s window, against the
  ideal ``(ceil(2000 / 500) - 1) x window`` (every write the moment its window allows). Goal
  within 1.05x. The ideal counts as zero the time it takes to send the last window's 500
  writes: half a second to two seconds of client and sandbox CPU, the more the busier the
  machine. Against the real API's hour-long window that time is nothing; the benchmark
  compresses the hour, and the harder it does, the more that time weighs against the
  ideal. With a 5 s window it came to 4% on a quiet machine and up to 13% on a loaded
  one; with 15 s it is about 1% on a quiet one, and even two seconds stay under 5%. The
  same writes sent by ``create_many`` (no outbox) under the same budget, in the same run,
  show how much of the distance is that sending time, which any client pays, rather than
  the outbox.

python benchmarks/outbox.py [--json out.json] [--enqueue-only]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SandboxProcess, table, write_json  # noqa: E402

from getbill_async import FollowupCreate, GetBillClient, Outbox, RateLimit  # noqa: E402

# 12,800 creates a round: a backlog of a few hours, and a round long enough (over 0.1 s)
# that one slow fsync does not decide it.
PRODUCERS, PER_PRODUCER, BARE_ROWS = 64, 200, 1000
DRAIN_TOTAL, DRAIN_LIMIT, DRAIN_WINDOW = 2000, 500, 15.0


def bare_loop(path: Path, rows: int) -> float:
    """Rows per second: one INSERT and one COMMIT per call, WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT)")
    started = time.perf_counter()
    for i in range(rows):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO rows (body) VALUES (?)", (f'{{"call_id": "c{i}"}}',))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed


async def enqueue(client: GetBillClient, path: Path, debt: str) -> tuple[float, float]:
    """Creates per second with 64 producers, and the p99 latency of one create() (s)."""
    latencies: list[float] = []

    async def producer(outbox: Outbox, p: int) -> None:
        for i in range(PER_PRODUCER):
            started = time.perf_counter()
            await outbox.create(debt_id=debt, type="call", call_id=f"e-{p}-{i}")
            latencies.append(time.perf_counter() - started)

    async with Outbox(client, path, drain=False) as outbox:
        started = time.perf_counter()
        await asyncio.gather(*(producer(outbox, p) for p in range(PRODUCERS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return PRODUCERS * PER_PRODUCER / elapsed, latencies[int(len(latencies) * 0.99)]


async def enqueue_rounds(tmp: Path, rounds: int = 5) -> tuple[float, float, float]:
    """Medians of interleaved rounds: bare rows/s, outbox creates/s, outbox p99 (s). No
    request is sent (``drain=False``): the client is never asked to reach its base URL."""
    bares, rates, p99s = [], [], []
    offline = GetBillClient("stand-in", base_url="http://127.0.0.1:9/v1", allow_insecure=True)
    async with offline:
        for n in range(rounds):
            bares.append(bare_loop(tmp / f"bare-{n}.db", BARE_ROWS))
            rate, p99 = await enqueue(offline, tmp / f"enqueue-{n}.db", "debt-1")
            rates.append(rate)
            p99s.append(p99)
    return statistics.median(bares), statistics.median(rates), statistics.median(p99s)


async def dialer(client: GetBillClient, path: Path, debts: list[str]) -> tuple[float, float]:
    """Writes per call through the outbox (backlog longer than a call), and sent as they come."""
    rng = random.Random(7)
    calls = 150

    async def one_call(outbox: Outbox, i: int) -> None:
        await asyncio.sleep(i * 0.01)  # a call starts every 10 ms
        fields = {"debt_id": debts[i % len(debts)], "type": "call", "call_id": f"d-{i}"}
        await outbox.create(**fields, status="in_progress")
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        await outbox.update(f"d-{i}", status="deal_found", duration_ms=rng.randrange(10**5))

    async with Outbox(client, path, concurrency=16, poll=0.05) as outbox:
        for i in range(300):  # calls from before: the backlog a dialer lives with
            await outbox.create(debt_id=debts[i % len(debts)], type="call", call_id=f"old-{i}")
        before = (await outbox.status()).merged
        started = [asyncio.create_task(one_call(outbox, i)) for i in range(calls)]
        await asyncio.gather(*started)
        merged = (await outbox.status()).merged - before
        await outbox.join()
    via_outbox = (2 * calls - merged) / calls
    sent = 0
    for i in range(20):  # as they come: each call's create, then its update
        made = await client.followups.create(debt_id=debts[0], type="call", call_id=f"n-{i}")
        await client.followups.update(made.id, status="deal_found")
        sent += 2
    return via_outbox, sent / 20


async def drain(client: GetBillClient, path: Path, debts: list[str]) -> tuple[float, float]:
    """Seconds to the last of 2,000 writes done: the outbox's drainer, then, after a window
    has passed, ``create_many`` on the same number of creates (the SDK's bulk path, no
    outbox) under the same budget."""
    async with Outbox(client, path, drain=False, max_pending=10**6) as producer:
        for i in range(DRAIN_TOTAL):
            await producer.create(debt_id=debts[i % len(debts)], type="sms", call_id=f"b-{i}")
    started = time.perf_counter()
    async with Outbox(client, path, concurrency=64, poll=0.05) as outbox:
        await outbox.join()
        elapsed = time.perf_counter() - started
    await asyncio.sleep(DRAIN_WINDOW + 1)  # both windows empty again
    items = (
        FollowupCreate(debt_id=debts[i % len(debts)], type="sms", call_id=f"m-{i}")
        for i in range(DRAIN_TOTAL)
    )
    started = time.perf_counter()
    async with client.followups.create_many(items, concurrency=64) as batch:
        assert all([result.ok async for result in batch])
    return elapsed, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json")
    parser.add_argument(
        "--enqueue-only", action="store_true", help="the enqueue figures alone (no sandbox)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    bare, rate, p99 = await enqueue_rounds(tmp)
    if args.enqueue_only:
        print(f"bare loop {bare:,.0f} rows/s; outbox, {PRODUCERS} producers, {rate:,.0f} creates/s")
        print(f"{rate / bare:.1f}x the bare loop; p99 create() {p99 * 1000:.1f} ms")
        return
    writes = RateLimit(reads=10**6, writes=DRAIN_LIMIT, window=DRAIN_WINDOW)
    sandbox = {"followups": 1000, "latency": 0.02, "reads": 10**6}
    async with SandboxProcess(**sandbox, writes=DRAIN_LIMIT, window=DRAIN_WINDOW) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=writes) as client:
            debts = sorted({f.debt_id async for f in client.followups.iterate(limit=100)})[:50]
            elapsed, bare_drain = await drain(client, tmp / "drain.db", debts)
    dialer_limit = RateLimit(reads=10**6, writes=100, window=1.0)
    async with SandboxProcess(**sandbox, writes=100, window=1.0) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=dialer_limit) as c:
            debts = sorted({f.debt_id async for f in c.followups.iterate(limit=100)})[:50]
            per_call, as_they_come = await dialer(c, tmp / "dialer.db", debts)
    ideal = (math.ceil(DRAIN_TOTAL / DRAIN_LIMIT) - 1) * DRAIN_WINDOW
    report(bare, rate, p99, per_call, as_they_come, (elapsed, bare_drain, ideal), args.json)


def report(
    bare: float,
    rate: float,
    p99: float,
    per_call: float,
    as_they_come: float,
    drained: tuple[float, float, float],
    json_path: str | None,
) -> None:
    elapsed, bare_drain, ideal = drained
    rows = [
        ["bare loop, one commit per row", f"{bare:,.0f} rows/s", "1.00x", ""],
        [f"outbox, {PRODUCERS} producers", f"{rate:,.0f} creates/s", f"{rate / bare:.1f}x",
         f"p99 create() {p99 * 1000:.1f} ms"],
        ["dialer, sent as they come", f"{as_they_come:.2f} writes/call", "", ""],
        ["dialer, through the outbox", f"{per_call:.2f} writes/call", "", ""],
        [f"drain {DRAIN_TOTAL} writes, {DRAIN_LIMIT}/{DRAIN_WINDOW:g} s", f"{elapsed:.1f} s",
         f"{elapsed / ideal:.3f}x ideal", f"ideal {ideal:g} s"],
        ["same writes by create_many(64), no outbox", f"{bare_drain:.1f} s",
         f"{bare_drain / ideal:.3f}x ideal", f"outbox / create_many {elapsed / bare_drain:.3f}"],
    ]  # fmt: skip
    print("Outbox: SQLite WAL + synchronous=FULL on this machine's disk; sandbox in a process\n")
    print(table(["case", "figure", "ratio", "note"], rows))
    write_json(
        json_path,
        [
            {"benchmark": "outbox", "metric": "enqueue: 64 producers vs bare loop",
             "ratio": round(rate / bare, 2), "goal": 10.0, "better": "higher"},
            {"benchmark": "outbox", "metric": "dialer: writes per call",
             "ratio": round(per_call, 3), "goal": 1.1, "better": "lower"},
            {"benchmark": "outbox", "metric": "drain 2,000 writes vs ideal",
             "ratio": round(elapsed / ideal, 3), "goal": 1.05, "better": "lower"},
            {"benchmark": "outbox", "metric": "drain 2,000 writes vs create_many (no outbox)",
             "ratio": round(elapsed / bare_drain, 3), "goal": None, "better": "lower"},
        ],
    )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
