"""Four worker processes on one OAuth client: a shared RedisBudget against per-process ledgers.

Each setup gets a fresh sandbox with a compressed window (40 reads per 4 s) and the same job:
four worker processes making 200 list requests between them, split unevenly (70, 55, 45, 30),
four at a time each. Setups:

- one ``RedisBudget`` shared by the four (a throwaway redis-server, started here);
- the same on a 3-node Redis Cluster (started here too);
- the same on one redis-server that restarts (without persistence, so the ledger is lost) once
  the first window is spent and every worker waits: the cold-start rule rebuilds the count
  from the first answer's headers instead of letting the four workers burst;
- each worker with its own ``LocalBudget`` of the whole limit (what a fleet gets without a
  shared store: each believes it has the budget to itself);
- each worker with its own ``LocalBudget`` of a quarter of the limit (a static split: safe, but
  a busy worker cannot use what an idle one leaves).

Reported: the 429s the server sent, calls that failed in the end, elapsed (from "go" to the
last worker's last answer) against the ideal ``(ceil(200 / 40) - 1) x 4 s`` (every request
sent the moment the server's window allows it), and the most requests the server counted in
any window.

    python benchmarks/fleet.py             # prints a markdown table, in about 2 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from _common import max_in_window, table, write_json  # noqa: E402

from getbill_async import (  # noqa: E402
    Budget,
    GetBillClient,
    GetBillError,
    LocalBudget,
    RateLimit,
    RedisBudget,
    RetryPolicy,
)
from getbill_async.sandbox import STATIC_CLIENT, Sandbox  # noqa: E402
from tests.redis_fixtures import RedisCluster, RedisServer  # noqa: E402

LIMIT, WINDOW = 40, 4.0
SHARES = (70, 55, 45, 30)
TOTAL = sum(SHARES)
CONCURRENCY = 4
DEADLINE = 40.0  # seconds a worker may take before it gives up on the rest


async def work(config: dict[str, Any]) -> dict[str, Any]:
    """One worker process: ``requests`` list calls, ``CONCURRENCY`` at a time."""
    budget: Budget
    if config["budget"] == "redis":
        rate = RateLimit(reads=LIMIT, window=WINDOW)
        budget = RedisBudget(config["redis"], config["key"], rate, cluster=config["cluster"])
    else:
        budget = LocalBudget(RateLimit(reads=config["limit"], window=WINDOW))
    pages = list(range(1, config["requests"] + 1))
    failed = 0
    retry = RetryPolicy(max_time=DEADLINE)
    async with GetBillClient(
        config["token"], base_url=config["base_url"], rate_limit=budget, retry=retry
    ) as client:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.monotonic()

        async def one_at_a_time() -> None:
            nonlocal failed
            while pages:
                page = pages.pop()
                try:
                    await client.followups.list(page=page % 50 + 1, limit=10)
                except GetBillError:
                    failed += 1

        try:
            await asyncio.wait_for(
                asyncio.gather(*(one_at_a_time() for _ in range(CONCURRENCY))), DEADLINE
            )
        except asyncio.TimeoutError:
            failed += len(pages)
        elapsed = time.monotonic() - started
        sent = client.stats.requests
    if isinstance(budget, RedisBudget):
        await budget.aclose()
    return {"elapsed": elapsed, "failed": failed, "sent": sent}


async def run_setup(
    name: str, budget: dict[str, Any], redis_url: str, restart: RedisServer | None = None
) -> list[object]:
    async with Sandbox(followups=500, reads=LIMIT, window=WINDOW) as sb:
        common = {
            "base_url": sb.base_url, "token": sb.token, "redis": redis_url, "cluster": False,
            **budget,
        }  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                json.dumps({**common, "requests": n}),
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )  # fmt: skip
            for n in SHARES
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                if await asyncio.wait_for(proc.stdout.readline(), 60) != b"ready\n":
                    raise RuntimeError(f"{name}: a worker did not start")
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
            if restart is not None:
                await restart_when_spent(sb, restart)
            outputs = await asyncio.wait_for(
                asyncio.gather(*(proc.communicate() for proc in procs)), DEADLINE + 20
            )
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        results = [json.loads(out) for out, _ in outputs]
        arrivals = sb.arrivals(STATIC_CLIENT, "read")
        refused = sb.stats.by_status.get(429, 0)
    elapsed = max(r["elapsed"] for r in results)
    ideal = (math.ceil(TOTAL / LIMIT) - 1) * WINDOW
    return [
        name,
        refused,
        sum(r["failed"] for r in results),
        sum(r["sent"] for r in results),
        f"{elapsed:.2f}",
        f"{elapsed / ideal:.2f}x",
        f"{max_in_window(arrivals, WINDOW)} / {LIMIT}",
    ]


async def restart_when_spent(sb: Sandbox, server: RedisServer) -> None:
    """Restart Redis once the first window is spent and every worker waits for it."""
    while len(sb.arrivals(STATIC_CLIENT, "read")) < LIMIT:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)


def ratio_row(metric: str, ratio: float, goal: float | None) -> dict[str, object]:
    return {"benchmark": "fleet", "metric": metric, "ratio": ratio, "goal": goal, "better": "lower"}


def shared(**extra: object) -> dict[str, Any]:
    return {"budget": "redis", "key": f"bench:{uuid.uuid4().hex[:8]}", **extra}


async def main(json_path: str | None) -> None:
    with RedisServer() as redis, RedisCluster() as cluster:
        rows = [
            await run_setup("shared RedisBudget", shared(), redis.url),
            await run_setup("shared RedisBudget, 3-node cluster", shared(cluster=True),
                            cluster.url),
            await run_setup("shared RedisBudget, Redis restarted mid-run", shared(), redis.url,
                            restart=redis),
            await run_setup("own LocalBudget each, full limit",
                            {"budget": "local", "limit": LIMIT}, redis.url),
            await run_setup("own LocalBudget each, 1/4 of the limit",
                            {"budget": "local", "limit": LIMIT // 4}, redis.url),
        ]  # fmt: skip
    ideal = (math.ceil(TOTAL / LIMIT) - 1) * WINDOW
    print(f"4 worker processes, {TOTAL} list requests split {'/'.join(map(str, SHARES))}, "
          f"{CONCURRENCY} at a time each; server window {LIMIT} reads / {WINDOW:g} s; "
          f"ideal {ideal:g} s\n")  # fmt: skip
    headers = ["budget", "429s", "failed calls", "requests sent", "elapsed s", "vs ideal",
               "max in a window"]  # fmt: skip
    print(table(headers, rows))
    # Goals: (elapsed vs ideal, 429s) per row; the per-process ledgers are context.
    goals = [(1.25, 0.0), (1.25, 0.0), (1.5, 1.0), (None, None), (None, None)]
    ratios: list[dict[str, object]] = []
    for row, (pace_goal, refused_goal) in zip(rows, goals, strict=True):
        metric = f"{row[0]}: elapsed vs ideal"
        ratio = float(str(row[5]).rstrip("x"))
        ratios.append(ratio_row(metric, ratio, pace_goal))
        if refused_goal is not None:
            ratios.append(ratio_row(f"{row[0]}: 429s met", float(str(row[1])), refused_goal))
    write_json(json_path, ratios)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the ratios here (see run_all.py)")
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(asyncio.run(work(json.loads(options.worker)))))
    else:
        asyncio.run(main(options.json))
