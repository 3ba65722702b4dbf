"""The ``getbill`` command: ``sandbox``, ``export``, ``log`` and ``demo``.

Credentials come from the environment (``GETBILL_TOKEN``, or ``GETBILL_CLIENT_ID`` +
``GETBILL_CLIENT_SECRET``), never from the command line, where other users of the machine
could read them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from . import __version__
from ._budget import Budget, RateLimit
from ._client import GetBillClient
from ._constants import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY, LOGGER_NAME
from ._progress import make_progress
from .errors import GetBillError
from .export import ExportReport, Format, export_followups
from .models import FollowupStatus, FollowupType

__all__ = ["main"]


def _client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        default=os.environ.get("GETBILL_BASE_URL", DEFAULT_BASE_URL),
        help="API base URL (env GETBILL_BASE_URL; default %(default)s)",
    )
    group.add_argument("--reads", type=int, default=1000, help="reads per window (1000)")
    group.add_argument("--writes", type=int, default=500, help="writes per window (500)")
    group.add_argument("--window", type=float, default=3600.0, help="window seconds (3600)")
    group.add_argument("--redis", metavar="URL", help="share the budget through Redis")
    group.add_argument("--redis-cluster", action="store_true", help="--redis is a cluster node")
    group.add_argument(
        "--redis-fallback",
        action="store_true",
        help="if Redis is unreachable, go on with a local share of the budget",
    )
    group.add_argument(
        "--expected-workers",
        type=_workers,
        default=4,
        metavar="N",
        help="with --redis-fallback, the fleet's size: each worker falls back to 1/N (4)",
    )
    group.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight"
    )
    group.add_argument("--no-progress", action="store_true", help="no progress output")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _workers(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return int(value)


def budget_key() -> str:
    """The Redis key of this OAuth client's budget: every worker of one client shares it.

    From ``GETBILL_CLIENT_ID``, or a digest of ``GETBILL_TOKEN`` (never the token itself).
    """
    client_id = os.environ.get("GETBILL_CLIENT_ID")
    if client_id:
        return f"getbill:{client_id}"
    token = os.environ.get("GETBILL_TOKEN", "")
    return "getbill:token-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _budget(args: argparse.Namespace) -> RateLimit | Budget:
    rate = RateLimit(reads=args.reads, writes=args.writes, window=args.window)
    if not args.redis:
        return rate
    from ._extras import require

    require("redis", extra="redis", feature="--redis (a budget shared through Redis)")
    from ._redis_budget import budget_from_url

    return budget_from_url(
        args.redis,
        rate,
        fallback=args.redis_fallback,
        expected_workers=args.expected_workers,
        key=budget_key(),
        cluster=args.redis_cluster,
    )


def make_client(args: argparse.Namespace, token: str | None = None) -> GetBillClient:
    return GetBillClient(token, base_url=args.base_url, rate_limit=_budget(args))


def _export_parser(parser: argparse.ArgumentParser) -> None:
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
    _client_options(parser)


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
    report = await export_followups(
        client,
        args.out,
        format=fmt,
        resume=args.resume,
        restart=args.restart,
        concurrency=args.concurrency,
        progress=make_progress("export", enabled=not args.no_progress),
        formula_guard=not args.no_formula_guard,
        commit_seconds=args.commit_seconds,
        row_group_pages=args.row_group_pages,
        **filters,
    )
    print(describe_export(report))
    return 0


async def _with_client(args: argparse.Namespace) -> int:
    client = make_client(args)
    try:
        async with client:
            # The command's work is bulk work: a service sharing the OAuth client through
            # Redis keeps the reserve of every window for its interactive calls.
            bulk = client.with_options(priority="bulk")
            if args.command == "export":
                return await run_export(args, bulk)
            if args.command == "sync":
                from ._cli_sync import run_sync

                return await run_sync(args, bulk)
            from ._cli_log import run_log

            return await run_log(args, bulk)
    finally:
        closer = getattr(client.budget, "aclose", None)  # a RedisBudget owns a connection
        if closer is not None:
            await closer()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="getbill", description="GetBill's API from the shell")
    parser.add_argument("--version", action="version", version=f"getbill-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from .sandbox._cli import add_arguments as sandbox_arguments

    sandbox_arguments(commands.add_parser("sandbox", help="serve the embedded sandbox API"))
    _export_parser(commands.add_parser("export", help="export followups: JSONL, CSV, Parquet"))

    from ._cli_log import add_arguments as log_arguments

    log = commands.add_parser("log", help="create followups from a CSV or JSONL file")
    log_arguments(log)
    _client_options(log)

    from ._cli_sync import add_arguments as sync_arguments

    sync = commands.add_parser("sync", help="keep a directory of day partitions current")
    sync_arguments(sync)
    _client_options(sync)

    from ._cli_budget import add_arguments as budget_arguments

    budget_arguments(commands.add_parser("budget", help="the budget left: shared or the server's"))

    from ._demo import add_arguments as demo_arguments

    demo_arguments(commands.add_parser("demo", help="export and log against a local sandbox"))
    return parser


def _run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, on uvloop when it is installed (the ``fast`` extra): the client's
    CPU time per page is a few per cent lower on it (benchmarks/pipeline.py)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger(LOGGER_NAME).setLevel(logging.DEBUG)
    if args.command == "sandbox":
        from .sandbox._cli import run

        return run(args)
    if args.command == "demo":
        from ._demo import run_demo

        return _run(run_demo(args))
    if args.command == "budget":
        from ._cli_budget import run as run_budget

        return run_budget(args)
    try:
        return _run(_with_client(args))
    except GetBillError as exc:
        print(f"getbill {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a missing folder, a full disk, no permission: one line, no trace
        print(f"getbill {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"getbill {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
