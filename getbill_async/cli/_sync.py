"""``getbill sync``: keep a directory of day partitions current (see ``export._sync``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..export import REJECTED, make_progress, sync_followups

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["add_arguments", "run_sync"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the partitions' directory")
    parser.add_argument("--state", required=True, help="the sync's state file (e.g. sync.json)")
    parser.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    parser.add_argument(
        "--lag-days", type=int, default=3, help="recent days fetched again each run (3)"
    )
    parser.add_argument("--today", metavar="YYYY-MM-DD", help="the run's day (default: today, UTC)")


async def run_sync(args: argparse.Namespace, client: GetBillClient) -> int:
    report = await sync_followups(
        client,
        args.out,
        state=args.state,
        format=args.format,
        lag_days=args.lag_days,
        today=args.today,
        concurrency=args.concurrency,
        progress=make_progress("sync", enabled=not args.no_progress),
    )
    scope = "everything" if report.full else f"days from {report.date_from}"
    print(
        f"synced {scope} into {args.out}: {report.items:,} followups in {report.requests} "
        f"requests; {report.partitions_written} partitions written, "
        f"{report.partitions_removed} removed"
        + ("; finished an earlier run" if report.resumed else "")
        + (
            f"; {report.rejected} with dates that do not decode kept in {REJECTED}"
            if report.rejected
            else ""
        )
    )
    return 0
