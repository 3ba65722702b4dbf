"""``getbill log --plan``: check every row and say how long the writes would take.

No write is sent: one read (a ``limit=1`` probe, for the round trip and the server's headers)
and the simulation of ``getbill_async.export.plan_writes``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..export import plan_writes
from ..resources import probe_list
from ._log_rows import InputError, print_bad, read_rows

if TYPE_CHECKING:
    from .._client import GetBillClient
    from ._log_options import LogOptions

__all__ = ["plan_log"]


async def plan_log(options: LogOptions, client: GetBillClient) -> int:
    """Print each bad row and the plan; 2 when rows are invalid (and not ``--skip-invalid``).

    Args:
        options: the ``getbill log`` options (``results`` is not needed).
        client: the client the probe goes through.

    Returns:
        The exit status: 0, or 2 when the input has bad rows or cannot be read.
    """
    source = options.input
    try:
        rows = read_rows(source)
    except InputError as exc:
        print(f"getbill log: {source}:{exc}", file=sys.stderr)
        return 2
    bad = print_bad(source, rows)
    writes = len(rows) - len(bad)
    plan = plan_writes(await probe_list(client), writes, options.concurrency)
    print(
        f"log {source}: {len(rows):,} rows, {len(bad):,} invalid, {writes:,} writes needed"
        + ("" if not bad or options.skip_invalid else " (once the invalid rows are fixed)")
    )
    print(plan.describe("log"))
    return 2 if bad and not options.skip_invalid else 0
