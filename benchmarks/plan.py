"""Plan vs actual: ``plan_export`` before an export, then the export itself, side by side.

For a few sizes and budget windows, against a sandbox in its own process: a fresh client
plans (one ``limit=1`` read), then runs the export it planned (concurrency 4) and the wall
times are compared. "busy" cases let another client of the same account spend part of the
window first, so the plan starts from a window that is not empty.

    python benchmarks/plan.py [--json out.json]
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
from _common import SandboxProcess, table, write_json  # noqa: E402

from getbill_async import GetBillClient, RateLimit  # noqa: E402


@dataclass
class Case:
    name: str
    followups: int
    reads: int
    window: float
    latency: float
    spent_before: int = 0


CASES = [
    Case("network-bound, 50 pages", 5_000, 1000, 3600.0, 0.03),
    Case("network-bound, 200 pages", 20_000, 1000, 3600.0, 0.03),
    Case("budget-bound, 30 pages / 10 a 2 s window", 3_000, 10, 2.0, 0.02),
    Case("budget-bound, busy window (6 of 10 spent)", 3_000, 10, 2.0, 0.02, 6),
    Case("budget-bound, 40 pages / 25 a 3 s window", 4_000, 25, 3.0, 0.02),
]


async def run(case: Case, workdir: Path) -> tuple[float, float, bool, int]:
    async with SandboxProcess(
        followups=case.followups, reads=case.reads, window=case.window, latency=case.latency
    ) as sb:
        rate = RateLimit(reads=case.reads, window=case.window)
        if case.spent_before:
            async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as other:
                for _ in range(case.spent_before):
                    await other.followups.list(limit=1)
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            plan = await client.followups.plan_export(concurrency=4)
            started = time.monotonic()
            report = await client.followups.export(workdir / "plan.jsonl", concurrency=4)
            actual = time.monotonic() - started
            assert report.items == plan.items
    return plan.seconds, actual, plan.budget_bound, plan.requests


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            planned, actual, bound, requests = await run(case, Path(tmp))
            error = planned / actual - 1
            worst = max(worst, abs(error))
            rows.append(
                [
                    case.name,
                    requests,
                    "yes" if bound else "no",
                    f"{planned:.2f}",
                    f"{actual:.2f}",
                    f"{error:+.0%}",
                ]
            )
    print("plan_export, then the export it planned (concurrency 4), sandbox in its own process\n")
    print(table(["case", "requests", "budget-bound", "plan s", "actual s", "plan error"], rows))
    print(f"\nworst plan error: {worst:.0%} (goal within 30%)")
    write_json(
        args.json,
        [
            {
                "benchmark": "plan",
                "metric": "worst plan error, abs(plan / actual - 1)",
                "ratio": round(worst, 2),
                "goal": 0.3,
                "better": "lower",
            }
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
