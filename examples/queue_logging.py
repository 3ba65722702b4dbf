"""A service that logs its calls through a durable outbox.

A dialer creates a followup when a call starts (``in_progress``) and updates it when the call
ends. Each ``create()``/``update()`` returns once the entry is on disk (``outbox.db``), so a
deploy, a crash or an OOM kill loses nothing that was enqueued; the outbox drains in the
background under the write budget, and an update that arrives while its create still waits is
merged into it: one write for the call instead of two. Each call carries the dialer's
``call_id``, which is how a write interrupted by a crash is looked up instead of sent twice.

    python examples/queue_logging.py --calls 50 [--db outbox.db]
"""

from __future__ import annotations

import argparse
import asyncio
import random

from _sandbox_or_env import connect

from getbill_async import GetBillClient, Outbox


async def one_call(outbox: Outbox, debt: str, i: int) -> None:
    """Stands in for one call of the dialer: logged when it starts and when it ends."""
    call_id = f"dialer-{i:06d}"
    await outbox.create(debt_id=debt, type="call", status="in_progress", call_id=call_id)
    await asyncio.sleep(random.uniform(0.0, 0.2))  # the conversation
    outcome = "no_answer" if i % 3 else "deal_found"
    await outbox.update(call_id, status=outcome, duration_ms=1000 * (30 + i % 200))


async def serve(client: GetBillClient, n: int, db: str) -> None:
    debts = sorted({f.debt_id async for f in client.followups.iterate(limit=100, concurrency=2)})
    async with Outbox(client, db, concurrency=8) as outbox:
        calls = [one_call(outbox, debts[i % 20], i) for i in range(n)]
        await asyncio.gather(*calls)
        await outbox.join()  # a service would keep running; the example waits for the backlog
        status = await outbox.status()
        dead = await outbox.dead()
    for entry in dead:
        print(f"call {entry.key} ({entry.op}) refused: {entry.status} {entry.message}")
    failed = sum(1 for entry in dead if entry.op == "create")
    print(f"logged {n - failed} calls, {failed} failed")
    print(f"{2 * n - status.merged} writes for {n} calls ({status.merged} saved by merging)")


async def main(n: int, db: str) -> None:
    async with connect() as client:
        await serve(client, n, db)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--db", default="outbox.db", help="the outbox's SQLite file")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.db))
