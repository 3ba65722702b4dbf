"""Daily incremental sync: day partitions of every followup, kept current by `sync`.

Run it once a day (cron): the first run exports everything, each later one fetches only the
days since the last run plus the three before it, and replaces those partitions atomically.

    python examples/daily_sync.py followups/ [--format jsonl] [--today 2024-06-30]
    duckdb -c "SELECT date, count(*) FROM read_parquet('followups/*/*.parquet') GROUP BY date"
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from _sandbox_or_env import connect


async def main(out: Path, fmt: str, today: str | None) -> None:
    async with connect() as client:
        report = await client.followups.sync(
            out, state=out / "sync.json", format=fmt, lag_days=3, today=today
        )
    scope = "everything" if report.full else f"the days from {report.date_from}"
    print(f"synced {scope}: {report.items} followups, {report.requests} requests")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    parser.add_argument("--today", help="the run's day, YYYY-MM-DD (default: today, UTC)")
    args = parser.parse_args()
    asyncio.run(main(args.out, args.format, args.today))
