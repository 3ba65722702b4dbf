"""``getbill outbox verify`` and ``getbill outbox requeue --missing``: proof of delivery from a
shell, and the printing ``getbill log --verify`` shares.

``verify`` reads through a client made from the environment (``GETBILL_TOKEN``, or
``GETBILL_CLIENT_ID`` + ``GETBILL_CLIENT_SECRET``), prints a summary and a table of what is
not confirmed (``--json``: the report), and exits 0 when everything is confirmed, 1 otherwise:
a cron job can alert on it. ``--plan`` prints the plan and reads nothing more. Interrupted
(Ctrl-C, a kill), it goes on from its checkpoint when run again with the same flags.
``requeue --missing`` puts the followups the last verify found missing back to pending (no
request: a drainer sends them, looking each up by ``call_id`` first).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any, TextIO

from ..export import make_progress
from ._delivery_store import verifiable
from ._store import Store
from ._verify_api import resend
from ._verify_types import DeliveryFinding, DeliveryReport

__all__ = ["add_verify_arguments", "print_report", "requeue_missing", "run_verify"]


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``getbill outbox verify`` (the store's are added by the caller)."""
    parser.add_argument("--since", type=_moment, help="ISO 8601 date or datetime (UTC if bare)")
    parser.add_argument("--until", type=_moment, help="ISO 8601 date or datetime (UTC if bare)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plan", action="store_true", help="print the plan; read nothing more")
    parser.add_argument("--restart", action="store_true", help="do not resume an interrupted run")
    parser.add_argument("--reads", type=int, default=None, help="reads per window (1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="groups read at once (4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or datetime (e.g. 2024-06-01T08:00:00+00:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _cells(state: str, finding: DeliveryFinding) -> list[str]:
    changes = "; ".join(
        f"{name}: {json.dumps(written)} -> {json.dumps(found)}"
        for name, (written, found) in finding.fields.items()
    )
    return [state, finding.key, ", ".join(finding.followup_ids), finding.debt_id or "-", changes]


def print_report(report: DeliveryReport, where: str, out: TextIO, *, as_json: bool) -> int:
    """Print ``report`` (a summary and a table, or JSON); the exit status: 0 when every
    followup checked is confirmed, 1 otherwise."""
    if as_json:
        print(json.dumps(report.as_dict(), indent=2), file=out)
        return 0 if report.ok else 1
    print(
        f"verify {where}: {report.checked:,} checked, {report.confirmed:,} confirmed, "
        f"{len(report.missing):,} missing, {len(report.doubled):,} doubled, "
        f"{len(report.diverged):,} diverged; {report.reads:,} reads (planned "
        f"{report.planned:,})" + (", resumed" if report.resumed else ""),
        file=out,
    )
    rows = [
        _cells(state, finding)
        for state in ("missing", "doubled", "diverged")
        for finding in getattr(report, state)
    ]
    if rows:
        rows.insert(0, ["state", "key", "followup ids", "debt", "fields (written -> found)"])
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[4]]).rstrip(), file=out)
    return 0 if report.ok else 1


async def run_verify(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``getbill outbox verify``; the exit status (see the module docstring)."""
    from .._client import GetBillClient
    from .._constants import DEFAULT_READS
    from ..budget import RateLimit
    from ._outbox import Outbox

    reads = args.reads or DEFAULT_READS
    if reads < 1 or args.concurrency < 1:
        name = "--reads" if reads < 1 else "--concurrency"
        print(f"getbill outbox verify: {name} must be an integer >= 1", file=out)
        return 2
    rate = RateLimit(reads=reads, writes=args.writes, window=args.window)
    async with GetBillClient(base_url=args.base_url, rate_limit=rate) as client:
        box = Outbox(client, args.db, name=args.name, drain=False, account=args.account)
        async with box as outbox:
            if args.plan:
                plan = await outbox.plan_verify(args.since, until=args.until)
                print(plan.describe(), file=out)
                return 0
            progress = make_progress("verify", enabled=not args.no_progress)
            report = await outbox.verify(
                args.since,
                until=args.until,
                concurrency=args.concurrency,
                progress=progress,
                resume=not args.restart,
            )
    return print_report(report, args.db if "@" not in args.db else "outbox", out, as_json=args.json)


async def requeue_missing(outbox_store: Store, out: TextIO) -> int:
    """Put back to pending the followups the last finished verify found missing."""
    from ._verify import read_state

    store = verifiable(outbox_store)
    state: dict[str, Any] | None = await read_state(store)
    if state is None or state.get("phase") != "done":
        print("no finished verify in this outbox: run `getbill outbox verify` first", file=out)
        return 1
    if state.get("requeued"):
        print("the missing followups of the last verify were requeued already", file=out)
        return 0
    report = DeliveryReport.of(state["report"])
    count = await resend(store, report.missing)
    await store.save_verify_state(json.dumps({**state, "requeued": True}))
    print(
        f"requeued {count} of {len(report.missing)} missing followups (each is looked up by "
        "its call_id before it is sent); `getbill outbox drain` sends them",
        file=out,
    )
    return 0
