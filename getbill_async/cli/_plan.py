"""``getbill log --plan``: check every row and say how long the writes would take.

No write is sent: one read (a ``limit=1`` probe, for the round trip and the server's headers)
and the simulation of ``getbill_async.export.plan_writes``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..export import plan_writes
from ..resources import probe_list
from ._log_rows import read_rows

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = ["plan_log"]


async def plan_log(args: argparse.Namespace, client: GetBillClient) -> int:
    """Print each bad row and the plan; 2 when rows are invalid (and not ``--skip-invalid``)."""
    source = Path(args.input)
    rows = read_rows(source)
    bad = [r for r in rows if r.problem is not None]
    for row in bad:
        assert row.problem is not None
        print(f"{source}:{row.line}: {row.problem.message}", file=sys.stderr)  # names the field
    writes = len(rows) - len(bad)
    plan = plan_writes(await probe_list(client), writes, args.concurrency)
    print(
        f"log {source}: {len(rows):,} rows, {len(bad):,} invalid, {writes:,} writes needed"
        + ("" if not bad or args.skip_invalid else " (once the invalid rows are fixed)")
    )
    print(plan.describe("log"))
    return 2 if bad and not args.skip_invalid else 0
