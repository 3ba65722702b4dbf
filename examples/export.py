"""Export the delivered calls to CSV, resumably: run it again after a crash and it goes on.

GETBILL_BASE_URL=... GETBILL_TOKEN=... python examples/export.py delivered-calls.csv
"""

from __future__ import annotations

import asyncio
import sys

from _sandbox_or_env import connect

from getbill_async.export import ExportError


async def main(path: str) -> None:
    async with connect() as client:
        try:
            report = await client.followups.export(path, format="csv", status="delivered")
        except ExportError:
            # An earlier run was cut short: pick it up where it stopped.
            report = await client.followups.export(
                path, format="csv", status="delivered", resume=True
            )
        print(f"{report.items} followups -> {report.path} ({report.requests} requests)")
        if report.total_changed:
            print("followups changed during the export: schedule an incremental pass")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "delivered-calls.csv"))
