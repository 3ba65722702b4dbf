"""An asyncio service that logs calls from a queue as followups, concurrently.

Producers (a dialer's event handler, say) put finished calls on a queue; ``create_many``
drains it with a bounded number of creates in flight, under the write budget. Each call
carries its provider ``call_id``, so a create whose answer is lost is looked up rather than
sent twice.

    python examples/queue_logging.py --calls 50
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone

from _sandbox_or_env import connect

from getbill_async import FollowupCreate, GetBillClient

DONE = None


async def calls_from(queue: asyncio.Queue[FollowupCreate | None]) -> AsyncIterator[FollowupCreate]:
    while (call := await queue.get()) is not DONE:
        yield call


async def dialer(queue: asyncio.Queue[FollowupCreate | None], debts: list[str], n: int) -> None:
    """Stands in for the system that finishes calls."""
    for i in range(n):
        await queue.put(
            FollowupCreate(
                debt_id=debts[i % len(debts)],
                type="call",
                status="no_answer" if i % 3 else "deal_found",
                call_date=datetime.now(timezone.utc),
                call_id=f"dialer-{i:06d}",
                duration_ms=1000 * (30 + i % 200),
                direction="outbound",
            )
        )
        await asyncio.sleep(0)  # calls arrive over time
    await queue.put(DONE)


async def serve(client: GetBillClient, n: int) -> None:
    debts = sorted({f.debt_id async for f in client.followups.iterate(limit=100, concurrency=2)})
    queue: asyncio.Queue[FollowupCreate | None] = asyncio.Queue(maxsize=100)
    producer = asyncio.create_task(dialer(queue, debts[:20], n))
    created = failed = 0
    async for result in client.followups.create_many(calls_from(queue), concurrency=8):
        if result.ok:
            created += 1
        else:
            failed += 1
            print(f"call #{result.index} not logged: {result.error}")
    await producer
    print(f"logged {created} calls, {failed} failed")


async def main(n: int) -> None:
    async with connect() as client:
        await serve(client, n)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50)
    asyncio.run(main(parser.parse_args().calls))
