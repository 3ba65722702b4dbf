"""``getbill log --verify --results results.jsonl``: proof of delivery for a bulk log.

A run's outbox (``<results>.outbox``) keeps every row it created, with the fields it sent,
for ten years; this reads them back as ``getbill outbox verify`` does (by call day or by
debt, in the bulk lane) and prints what is missing, doubled or changed. Exit status: 0 when
every row created is confirmed, 1 otherwise, 2 when there is no such run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..export import make_progress
from ..outbox import Outbox, print_report
from ._log_outbox import RETENTION, outbox_path

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["verify_log"]


async def verify_log(args: argparse.Namespace, client: GetBillClient) -> int:
    """Verify the rows a ``getbill log`` run created; the exit status.

    Args:
        args: the parsed ``getbill log`` flags (``--results``, ``--json``).
        client: the client the reads go through (its bulk lane).

    Returns:
        0 all confirmed, 1 some are not, 2 no run's outbox beside ``--results``.
    """
    if args.results is None:
        print("getbill log: --verify needs --results (the run's results file)", file=sys.stderr)
        return 2
    path = outbox_path(Path(args.results))
    if not path.exists():
        print(f"getbill log: {path} not found: no run wrote {args.results}", file=sys.stderr)
        return 2
    box = Outbox(client, path, drain=False, retention=RETENTION, account=args.account)
    async with box as outbox:
        progress = make_progress("verify", enabled=not args.no_progress)
        report = await outbox.verify(concurrency=args.concurrency, progress=progress)
    return print_report(report, str(args.results), sys.stdout, as_json=args.json)
