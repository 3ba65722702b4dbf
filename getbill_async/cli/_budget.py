"""``getbill budget``: what is left of the budget, as a fleet's ledger or the server sees it.

With ``--redis URL`` (``--redis-cluster`` for a Redis Cluster) it reads the shared ledger of this
OAuth client (the key ``getbill export --redis`` uses) and costs no request to the API: per
class the slots used, in flight and remaining, when the next one frees, a 429's pause, and the
lanes' shares. ``--watch`` refreshes it (a live table with the ``progress`` extra's rich, plain
lines without it). Without ``--redis`` it asks the server, with one read that it names, and
shows the ``X-RateLimit-*`` headers of the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timezone
from typing import Any

from .._client import GetBillClient
from ..budget import BudgetStatus, ClassStatus, RateLimit
from ..errors import GetBillError
from ..support import available, require
from ..telemetry import AttemptInfo, Hooks
from ._common import add_budget_options, budget_key, rate_limit

__all__ = ["add_arguments", "run"]

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Window")
COLUMNS = ("class", "used", "in flight", "remaining", "limit", "next slot", "paused", "lanes")
PROBE = "GET /followups?page=1&limit=1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``getbill budget``'s flags: the budget's (as every command's), and how to show it."""
    group = add_budget_options(parser)
    group.add_argument("--reserve", type=float, default=0.0, help="share kept for interactive")
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (--redis)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # tests
    parser.add_argument("--plain", action="store_true", help="plain lines, even with rich")


def run(args: argparse.Namespace) -> int:
    if args.watch and not args.redis:
        print("getbill budget: --watch needs --redis (each look at the server costs a read)")
        return 2
    try:
        rate = rate_limit(args)
        if args.redis:
            return asyncio.run(_shared(args, rate))
        return asyncio.run(_ask_server(args, rate))
    except (GetBillError, ValueError) as exc:
        print(f"getbill budget: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def rows(status: BudgetStatus) -> list[list[str]]:
    return [_row("reads", status.reads), _row("writes", status.writes)]


def _row(name: str, s: ClassStatus) -> list[str]:
    lanes = "/".join(str(s.lanes.get(k, 0)) for k in ("interactive", "bulk", "other"))
    if s.reserved:
        lanes += f" (reserve {s.reserved})"
    return [
        name,
        str(s.used),
        str(s.in_flight),
        f"{s.remaining} cold" if s.cold else str(s.remaining),
        f"{s.limit}/{s.window:g}s",
        "cold, waiting for the first answer"
        if s.cold and s.in_flight
        else f"{s.next_slot_in:.1f}s",
        f"{s.blocked_for:.1f}s" if s.blocked_for else "-",
        lanes,
    ]


def plain(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *table]) for i in range(len(COLUMNS))]
    lines = [list(COLUMNS), *table]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


async def _shared(args: argparse.Namespace, rate: RateLimit) -> int:
    require("redis", extra="redis", feature="getbill budget --redis")
    from ..budget.fleet import budget_from_url

    budget = budget_from_url(args.redis, rate, key=budget_key(), cluster=args.redis_cluster)
    title = f"shared budget: {budget._where()}; lanes: interactive/bulk/other"
    rich = args.watch and not args.plain and sys.stdout.isatty() and available("rich")
    live: Any = None
    try:
        if rich:
            live = require("rich.live", extra="progress", feature="getbill budget --watch")
            live = live.Live(auto_refresh=False)
            live.start()
        else:
            print(title)
        shown = 0
        while True:
            table = rows(await budget.status())
            if live is not None:
                live.update(_rich_table(title, table), refresh=True)
            elif args.watch:
                stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
                print(f"{stamp}\n{plain(table)}", flush=True)
            else:
                print(plain(table))
            shown += 1
            if not args.watch or shown == args.count:
                break
            await asyncio.sleep(args.interval)
    finally:
        if live is not None:
            live.stop()
        await budget.aclose()
    return 0


def _rich_table(title: str, table: list[list[str]]) -> Any:
    rich_table = require("rich.table", extra="progress", feature="getbill budget --watch")
    view = rich_table.Table(*COLUMNS, title=title)
    for row in table:
        view.add_row(*row)
    return view


async def _ask_server(args: argparse.Namespace, rate: RateLimit) -> int:
    seen: dict[str, str] = {}

    def keep(attempt: AttemptInfo) -> None:
        seen.update({k.lower(): v for k, v in attempt.rate_limit.items()})

    hooks = Hooks(on_response=keep)
    async with GetBillClient(base_url=args.base_url, rate_limit=rate, hooks=hooks) as client:
        print(f"asked {client.base_url}: {PROBE} (one read of this OAuth client's budget)")
        await client.followups.list(page=1, limit=1)
    if not seen:
        print("the answer carried no X-RateLimit-* headers")
        return 0
    for name in HEADERS:
        if name.lower() in seen:
            print(f"{name}: {seen[name.lower()]}")
    reset = seen.get("x-ratelimit-reset", "")
    if reset.isdigit():
        moment = datetime.fromtimestamp(int(reset), timezone.utc).isoformat(timespec="seconds")
        left = int(reset) - time.time()
        print(f"reads: the oldest counted read frees at {moment} (in {left:.0f}s)")
    print("writes: not asked (that would cost a write)")
    return 0
