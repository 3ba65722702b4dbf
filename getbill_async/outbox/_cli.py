"""``getbill outbox status|watch|dead|requeue|drain|verify --db PATH``: an outbox from a shell.

``status``, ``watch``, ``dead`` and ``requeue`` work on the store alone: they need no
credentials and send no request (the ETA assumes the budget given by ``--writes`` and
``--window`` is free now). ``drain`` sends the backlog through a client made from the
environment (``GETBILL_TOKEN``, or ``GETBILL_CLIENT_ID`` + ``GETBILL_CLIENT_SECRET``) and
stops when nothing is pending or in flight. ``watch`` draws a live table on a terminal when
rich (the ``progress`` extra) is installed, and plain lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, TextIO

from .._constants import DEFAULT_BASE_URL, DEFAULT_WINDOW, DEFAULT_WRITES
from ..errors import GetBillError
from ..support import available, require
from ._eta import status_of
from ._options import store_for
from ._outbox import Outbox
from ._store import Store
from ._types import OutboxStatus
from ._verify_cli import add_verify_arguments, requeue_missing, run_verify

__all__ = [
    "add_account_argument",
    "add_parser",
    "dead",
    "drain",
    "requeue",
    "run",
    "run_async",
    "status",
    "watch",
]


def add_parser(subparsers: Any) -> None:
    """Add ``outbox`` and its sub-commands to ``subparsers`` (``add_subparsers()``'s result).

    Args:
        subparsers: the action returned by ``ArgumentParser.add_subparsers``.
    """
    parser = subparsers.add_parser("outbox", help="a durable outbox: status, dead letters, drain")
    _store_options(parser, argparse.SUPPRESS)
    actions = parser.add_subparsers(dest="outbox_command", required=True)
    # The store's flags are taken before the action or after it (`outbox status --db PATH`).
    helps = {
        "status": "counts by state, writes saved, oldest age, ETA",
        "watch": "status, refreshed until Ctrl-C",
        "dead": "the dead letters and held entries, one JSON line each",
        "requeue": "send dead entries again after a fix",
        "drain": "send the backlog now, then stop",
        "verify": "read back what was written: missing, doubled, diverged (exit 1 if any)",
    }
    made = {name: actions.add_parser(name, help=text) for name, text in helps.items()}
    for action in made.values():
        _store_options(action, argparse.SUPPRESS)
    made["watch"].add_argument("--interval", type=float, default=1.0, help="seconds (1)")
    made["watch"].add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # tests
    made["watch"].add_argument("--plain", action="store_true", help="plain lines, even with rich")
    made["requeue"].add_argument("keys", nargs="*", help="call_ids (or followup ids)")
    made["requeue"].add_argument(
        "--id", type=int, action="append", default=[], dest="ids", help="an entry id (repeatable)"
    )
    made["requeue"].add_argument("--held", action="store_true", help="held entries too")
    made["requeue"].add_argument(
        "--missing", action="store_true", help="the followups the last verify found missing"
    )
    add_verify_arguments(made["verify"])
    drain_parser = made["drain"]
    drain_parser.add_argument("--concurrency", type=int, default=4, help="writes in flight (4)")
    drain_parser.add_argument("--timeout", type=float, default=None, help="give up after seconds")
    for command in ("drain", "verify"):
        made[command].add_argument(
            "--base-url",
            default=os.environ.get("GETBILL_BASE_URL", DEFAULT_BASE_URL),
            help="API base URL (env GETBILL_BASE_URL)",
        )
        add_account_argument(made[command])
    parser.set_defaults(handler=run)


_STORE_DEFAULTS = {"name": "default", "writes": DEFAULT_WRITES, "window": DEFAULT_WINDOW}


def add_account_argument(parser: argparse.ArgumentParser) -> None:
    """``--account NAME``: the account an outbox is bound to (see ``Outbox(account=...)``)."""
    parser.add_argument(
        "--account",
        default=os.environ.get("GETBILL_ACCOUNT"),
        help="a name for the GetBill account the outbox belongs to; needed to tell two "
        "accounts apart with a static token (env GETBILL_ACCOUNT)",
    )


def _store_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """The store's flags; their defaults are filled in by ``run`` (given on either side of
    the action, a flag must not be reset by the side where it is absent)."""
    parser.add_argument("--db", default=default, metavar="PATH", help="SQLite file or redis:// URL")
    parser.add_argument("--name", default=default, help="the outbox's name in a Redis store")
    parser.add_argument(
        "--writes", type=int, default=default, help=f"writes per window ({DEFAULT_WRITES})"
    )
    parser.add_argument(
        "--window", type=float, default=default, help=f"window seconds ({DEFAULT_WINDOW:g})"
    )


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    for name, value in _STORE_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def run(args: argparse.Namespace) -> int:
    """Run ``getbill outbox ...``; 0 on success, 1 on an error (printed in one line)."""
    try:
        return asyncio.run(run_async(args))
    except KeyboardInterrupt:
        return 130


async def run_async(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``run`` on a running loop, printing to ``out`` (stdout by default).

    Args:
        args: the parsed arguments (see ``add_parser``).
        out: where to print.

    Returns:
        The exit status.
    """
    out = out or sys.stdout
    args = _with_defaults(args)
    if getattr(args, "db", None) is None:
        print(f"getbill outbox {args.outbox_command}: --db PATH is required", file=sys.stderr)
        return 2
    try:
        if args.outbox_command == "drain":
            return await drain(args, out)
        if args.outbox_command == "verify":
            return await run_verify(args, out)
        store = store_for(args.db, args.name)
        await store.open()
        try:
            handlers = {"status": status, "watch": watch, "dead": dead, "requeue": requeue}
            return await handlers[args.outbox_command](store, args, out)
        finally:
            await store.close()
    except (GetBillError, TimeoutError) as exc:
        print(f"getbill outbox {args.outbox_command}: {exc}", file=sys.stderr)
        return 1


async def _status(store: Store, args: argparse.Namespace) -> OutboxStatus:
    from ..budget import LocalBudget, RateLimit

    budget = LocalBudget(RateLimit(writes=args.writes, window=args.window))
    return status_of(await store.counts(), (await budget.status()).writes)


def _rows(shown: OutboxStatus) -> list[tuple[str, str]]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} s"

    return [
        ("pending", f"{shown.pending:,}"),
        ("in flight", f"{shown.in_flight:,}"),
        ("done", f"{shown.done:,}"),
        ("dead", f"{shown.dead:,}"),
        ("held", f"{shown.held:,}"),
        ("writes saved by merging", f"{shown.merged:,}"),
        ("pending without call_id", f"{shown.unkeyed:,}"),
        ("oldest pending", seconds(shown.oldest_age)),
        ("eta (budget free now)", seconds(shown.eta)),
    ]


async def status(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    """Print the outbox's counts, one ``name: value`` line each."""
    for name, value in _rows(await _status(store, args)):
        print(f"{name}: {value}", file=out)
    return 0


async def watch(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    """``status`` every ``--interval`` seconds (``--count`` times, or until Ctrl-C)."""
    live_table = not args.plain and out is sys.stdout and out.isatty() and available("rich")
    shown = 0
    if live_table:
        live = require("rich.live", extra="progress", feature="getbill outbox watch")
        table = require("rich.table", extra="progress", feature="getbill outbox watch")
        with live.Live(auto_refresh=False) as screen:
            while not args.count or shown < args.count:
                view = table.Table("", "", title=f"outbox {args.db}")
                for row in _rows(await _status(store, args)):
                    view.add_row(*row)
                screen.update(view, refresh=True)
                shown += 1
                await asyncio.sleep(args.interval)
        return 0
    while not args.count or shown < args.count:
        line = ", ".join(f"{k} {v}" for k, v in _rows(await _status(store, args)))
        print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)
        shown += 1
        if not args.count or shown < args.count:
            await asyncio.sleep(args.interval)
    return 0


async def dead(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    """Print each dead or held entry as one JSON line (id, key, op, state, API answer)."""
    for entry in await store.dead_entries():
        line = {
            "id": entry.id,
            "key": entry.key,
            "op": entry.op,
            "state": entry.state,
            "status": entry.status,
            "message": entry.message,
            "details": entry.details,
            "fields": entry.fields,
        }
        print(json.dumps(line), file=out)
    return 0


async def requeue(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    """Put dead entries (and held ones with ``--held``) back to pending: those of the given
    keys and entry ids, or all of them when none is given; with ``--missing``, the
    followups the last verify found missing."""
    if getattr(args, "missing", False):
        return await requeue_missing(store, out)
    count = await store.requeue(list(args.keys), list(args.ids), args.held)
    print(f"requeued {count} entries", file=out)
    return 0


async def drain(args: argparse.Namespace, out: TextIO) -> int:
    """Drain the backlog through a client from the environment, then print what was sent."""
    from .._client import GetBillClient
    from ..budget import RateLimit

    rate = RateLimit(writes=args.writes, window=args.window)
    async with GetBillClient(base_url=args.base_url, rate_limit=rate) as client:
        box = Outbox(
            client, args.db, name=args.name, concurrency=args.concurrency, account=args.account
        )
        async with box:
            await box.join(timeout=args.timeout)
            left = await box.status()
        counters = box.drainer.counters
    print(
        f"sent {counters.sent} writes, looked up {counters.looked_up}, "
        f"dead {left.dead}, held {left.held}",
        file=out,
    )
    return 0
