"""A dialer-like service for the outbox crash tests, run as its own process.

``once DB``: enqueue one create, then SIGKILL itself the moment ``create()`` returned.
``drain URL --name N``: drain an outbox until nothing is pending, then print what it sent.
``keyless DB``: enqueue ``--calls`` creates without call_id (summaries ``kl-0``...), drain
until SIGTERM, then ``close(grace=--grace)`` and exit.
``chaos DB PROGRESS``: enqueue ``--calls`` calls (each created with a call_id; the even ones
updated at once, while their create is still pending; the odd ones updated after the first
backlog drained), draining as it goes. It records the index of its next step in PROGRESS
(atomically) so that, killed and restarted, it replays at most its last step, which the
outbox makes harmless (a repeated create or an update that changes nothing is a no-op).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from getbill_async import GetBillClient, Outbox, RateLimit, RetryPolicy

Step = tuple[str, int]


def steps(calls: int) -> list[Step]:
    first: list[Step] = []
    for i in range(calls):
        first.append(("create", i))
        if i % 2 == 0:
            first.append(("update", i))
    later = [("update", i) for i in range(1, calls, 2)]
    return [*first, ("join", 0), *later, ("join", 0)]


def final_fields(i: int) -> dict[str, object]:
    """What call ``i`` must look like at the end."""
    if i % 2 == 0:
        return {"status": "deal_found", "duration_ms": 1000 + i}
    return {"status": "no_answer", "duration_ms": 2000 + i}


def outbox(client: GetBillClient, args: argparse.Namespace, name: str = "default") -> Outbox:
    """The service's outbox: a short lease, the margin and the grace a tenth of it each (the
    client's timeout is half of it: see ``main``)."""
    lease = args.lease
    grace = lease / 10 if args.grace is None else args.grace
    return Outbox(
        client, args.db, name=name, concurrency=args.concurrency, poll=0.05,
        lease=lease, lease_margin=lease / 10, grace=grace,
    )  # fmt: skip


def read_progress(path: Path) -> int:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def write_progress(path: Path, index: int) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(str(index))
    os.replace(temp, path)


async def chaos(args: argparse.Namespace, client: GetBillClient) -> None:
    debts = args.debts.split(",")
    progress = Path(args.progress)
    plan = steps(args.calls)
    async with outbox(client, args) as box:
        for index in range(read_progress(progress), len(plan)):
            kind, i = plan[index]
            if kind == "create":
                debt = debts[i % len(debts)]
                fields = {"status": "in_progress", "call_id": f"call-{i}"}
                await box.create(debt_id=debt, type="call", **fields)
            elif kind == "update":
                await box.update(f"call-{i}", **final_fields(i))
            else:
                await box.join()
            write_progress(progress, index + 1)
        print("drained", flush=True)


async def once(args: argparse.Namespace, client: GetBillClient) -> None:
    async with Outbox(client, args.db, drain=False) as box:
        await box.create(debt_id=args.debts, type="call", call_id="kill-at-once")
        os.kill(os.getpid(), signal.SIGKILL)


async def drain(args: argparse.Namespace, client: GetBillClient) -> None:
    async with outbox(client, args, args.name) as box:
        print("draining", flush=True)
        await box.join()
        counters = box.drainer.counters
        print(f"sent {counters.sent} looked_up {counters.looked_up}", flush=True)


async def keyless(args: argparse.Namespace, client: GetBillClient) -> None:
    debts = args.debts.split(",")
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    box = outbox(client, args)
    await box.open()
    for i in range(args.calls):
        await box.create(debt_id=debts[i % len(debts)], type="call", summary=f"kl-{i}")
    print("enqueued", flush=True)
    waits = [asyncio.ensure_future(box.join()), asyncio.ensure_future(stopped.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    await box.close(grace=args.grace)
    print("closed", flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("once", "chaos", "drain", "keyless"))
    parser.add_argument("db")
    parser.add_argument("progress", nargs="?", default="progress.txt")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--debts", default="")
    parser.add_argument("--name", default="default")
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--window", type=float, default=3600.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    limit = RateLimit(reads=100_000, writes=args.writes, window=args.window)
    retry = RetryPolicy(base=0.01, cap=0.2)
    token = os.environ["GETBILL_TOKEN"]
    timeout = args.lease / 2
    client = GetBillClient(
        token, base_url=args.base_url, rate_limit=limit, retry=retry, timeout=timeout
    )
    async with client as c:
        modes = {"once": once, "chaos": chaos, "drain": drain, "keyless": keyless}
        await modes[args.mode](args, c)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
