"""Logging followups at 30 ms of latency: create_many(concurrency=16) vs a sequential loop.

python benchmarks/create_many.py [--creates 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SandboxProcess, table, write_json  # noqa: E402

from getbill_async import FollowupCreate, GetBillClient, RateLimit  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--creates", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--json")
    args = parser.parse_args()
    rate = RateLimit(reads=10**9, writes=10**9)
    n = args.creates
    async with SandboxProcess(followups=1000, latency=args.latency, writes=10**9) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            debts = sorted({f.debt_id async for f in client.followups.iterate(limit=100)})[:50]

            def item(tag: str, i: int) -> FollowupCreate:
                return FollowupCreate(
                    debt_id=debts[i % len(debts)], type="call", call_id=f"{tag}-{i}"
                )

            started = time.perf_counter()
            for i in range(n):
                await client.followups.create(item("seq", i))
            sequential = time.perf_counter() - started

            started = time.perf_counter()
            results = [
                r
                async for r in client.followups.create_many(
                    (item("many", i) for i in range(n)), concurrency=16
                )
            ]
            concurrent = time.perf_counter() - started
            assert all(r.ok for r in results) and len(results) == n
    ratio = sequential / concurrent
    print(f"{n} creates, {args.latency * 1000:g} ms latency, sandbox in its own process\n")
    print(
        table(
            ["client", "seconds", "creates/s", "speed-up"],
            [
                [
                    "sequential await create()",
                    f"{sequential:.2f}",
                    f"{n / sequential:,.0f}",
                    "1.00x",
                ],
                [
                    "create_many(concurrency=16)",
                    f"{concurrent:.2f}",
                    f"{n / concurrent:,.0f}",
                    f"{ratio:.2f}x",
                ],
            ],
        )
    )
    write_json(
        args.json,
        [
            {
                "benchmark": "create_many",
                "metric": "create_many(16) vs sequential (creates/s)",
                "ratio": round(ratio, 2),
                "goal": 10.0,
                "better": "higher",
            }
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
