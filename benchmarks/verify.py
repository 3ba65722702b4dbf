"""Proof of delivery: the reads ``Outbox.verify`` spends against one GET per entry.

2,000 calls over 7 days (on 200 debts) are logged through an outbox into the sandbox, whose
seeded followups fill the same days (everyone else's calls: about 34 a day in the default
account of 25,000 followups, about 340 a day in a busy one of 250,000). Then ``plan_verify``
and ``verify`` run, and the reads the sandbox saw are counted. One GET per entry would be
2,000 reads: two hours of a 1,000-an-hour read budget.

    python benchmarks/verify.py [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from getbill_async import GetBillClient, Outbox, RateLimit  # noqa: E402
from getbill_async.sandbox import Sandbox  # noqa: E402

ENTRIES = 2_000
DAYS = [f"2024-06-{day:02d}" for day in range(3, 10)]
DEBTS = 200
GOAL = 0.2


@dataclass
class Case:
    name: str
    followups: int


CASES = [Case("default account (25,000 followups)", 25_000)]
CASES += [Case("busy account (250,000 followups)", 250_000)]


async def log_calls(client: GetBillClient, db: Path, debts: list[str]) -> None:
    async with Outbox(client, db, concurrency=16, poll=0.02) as outbox:
        for i in range(ENTRIES):
            when = f"{DAYS[i % len(DAYS)]}T{8 + i % 10:02d}:{i % 60:02d}:00+00:00"
            await outbox.create(
                debt_id=debts[i % len(debts)],
                type="call",
                status="deal_found" if i % 4 else "no_answer",
                call_date=when,
                duration_ms=30_000 + i,
                call_id=f"bench-{i}",
            )
        await outbox.join(timeout=300)


async def run(case: Case, workdir: Path) -> list[object]:
    rate = RateLimit(reads=100_000, writes=100_000, window=3600.0)
    async with Sandbox(followups=case.followups, writes=100_000, reads=100_000) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            debts = sb.debt_ids()[:DEBTS]
            db = workdir / f"{case.followups}.db"
            await log_calls(client, db, debts)
            others = sum(len(sb.followup_ids(date_from=d, date_to=d)) for d in DAYS) - ENTRIES
            async with Outbox(client, db, drain=False) as outbox:
                plan = await outbox.plan_verify()
                before = sb.requests_made("read")
                started = time.monotonic()
                report = await outbox.verify()
                seconds = time.monotonic() - started
                reads = sb.requests_made("read") - before
    assert report.checked == report.confirmed == ENTRIES, report
    assert reads == report.reads and reads <= plan.reads
    return [case.name, others, plan.reads, reads, f"{reads / ENTRIES:.3f}", f"{seconds:.1f}"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            rows.append(await run(case, Path(tmp)))
    worst = max(float(str(row[4])) for row in rows)
    print(f"verify of {ENTRIES:,} entries over {len(DAYS)} days on {DEBTS} debts,")
    print(f"against {ENTRIES:,} reads for one GET per entry\n")
    headers = ["case", "others' followups those days", "planned", "reads", "per entry", "s"]
    print(table(headers, rows))
    print(f"\nworst reads per entry: {worst:.3f} (goal <= {GOAL})")
    write_json(
        args.json,
        [
            {
                "benchmark": "verify",
                "metric": "verify reads / one GET per entry (2,000 entries, 7 days)",
                "ratio": round(worst, 3),
                "goal": GOAL,
                "better": "lower",
            }
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
