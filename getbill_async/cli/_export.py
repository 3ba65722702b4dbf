"""``getbill export``: every followup (or a filtered part) to JSONL, CSV or Parquet, resumable
(see ``getbill_async.export``); ``--plan`` says how long it would take, for one read."""

from __future__ import annotations

import argparse
import os

from .._client import GetBillClient
from ..export import ExportOptions, ExportReport, Format, export_followups, make_progress
from ..models import FollowupStatus, FollowupType
from ._common import add_client_options

__all__ = ["add_arguments", "describe_export", "run_export"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output file (e.g. followups.jsonl)")
    parser.add_argument(
        "--format", choices=("jsonl", "csv", "parquet"), help="default: from --out's suffix"
    )
    parser.add_argument("--status", choices=FollowupStatus.values())
    parser.add_argument("--type", choices=FollowupType.values())
    parser.add_argument("--date-from", metavar="YYYY-MM-DD")
    parser.add_argument("--date-to", metavar="YYYY-MM-DD")
    parser.add_argument("--debt-id")
    parser.add_argument("--resume", action="store_true", help="go on from the checkpoint")
    parser.add_argument("--restart", action="store_true", help="discard an unfinished export")
    parser.add_argument(
        "--plan", action="store_true", help="print how long it would take (one read); no export"
    )
    parser.add_argument(
        "--no-formula-guard",
        action="store_true",
        help="CSV for programs: keep cells starting with = + - @ as they are (no leading ')",
    )
    parser.add_argument(
        "--commit-seconds",
        type=float,
        default=0.5,
        help="fsync and checkpoint written pages this often (0: every page; default 0.5)",
    )
    parser.add_argument(
        "--row-group-pages",
        type=int,
        default=10,
        help="Parquet: pages per row group and per commit (default 10)",
    )
    add_client_options(parser)


def describe_export(report: ExportReport) -> str:
    text = (
        f"exported {report.items:,} followups ({report.pages} pages) to {report.path} "
        f"in {report.elapsed:.1f}s: {report.requests} requests, {report.retries} retries, "
        f"{report.budget_waits} budget waits, {report.duplicates_skipped} duplicates skipped"
    )
    if report.resumed_from_page:
        text += f"; resumed after page {report.resumed_from_page}"
    if report.total_changed:
        text += (
            f"; note: the total moved from {report.total_at_start} to {report.total_at_end} "
            "during the export: run an incremental pass (--date-from) to catch up"
        )
    return text


def _format_of(out: str) -> Format:
    suffix = os.path.splitext(out)[1].lower()
    return "csv" if suffix == ".csv" else "parquet" if suffix == ".parquet" else "jsonl"


async def run_export(args: argparse.Namespace, client: GetBillClient) -> int:
    fmt: Format = args.format or _format_of(args.out)
    filters = {
        k: v
        for k, v in {
            "status": args.status,
            "type": args.type,
            "date_from": args.date_from,
            "date_to": args.date_to,
            "debt_id": args.debt_id,
        }.items()
        if v is not None
    }
    if args.plan:
        plan = await client.followups.plan_export(concurrency=args.concurrency, **filters)
        print(plan.describe(f"export to {args.out}"))
        return 0
    options = ExportOptions.of(  # every setting checked before the disk is touched
        format=fmt,
        resume=args.resume,
        restart=args.restart,
        concurrency=args.concurrency,
        formula_guard=not args.no_formula_guard,
        commit_seconds=args.commit_seconds,
        row_group_pages=args.row_group_pages,
        **filters,
    )
    report = await export_followups(
        client,
        args.out,
        options,
        progress=make_progress("export", enabled=not args.no_progress),
    )
    print(describe_export(report))
    return 0
