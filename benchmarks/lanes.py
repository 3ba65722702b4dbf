"""A service and a bulk job on one budget: first come first served, against lanes and a reserve.

The scenario (issue 11): a strict sandbox with 40 reads per 4 s; a background walk of 120 pages
(``iterate(concurrency=8)``) and, while it runs, one interactive ``get()`` every 0.6 s (about 7
a window, within a reserve of 0.2 x 40 = 8). Setups, each on a fresh sandbox, with a
``LocalBudget`` and with a ``RedisBudget`` (a throwaway redis-server, started here):

- FIFO: one queue for everything (``reserve=0``, and the walk put in the interactive lane with
  ``client.with_options(priority="interactive")``), the old budget;
- lanes: ``RateLimit(reserve=0.2)``, each call in its own lane (walks are bulk, a get is
  interactive), on one client.

Reported: 429s; the worst interactive wait (call to answer) and its share of the window; the
bulk job's time against its ideal ``ceil(120 / 40) x 4 s`` (the job alone at the full limit).
Goals: the worst wait <= 1/8 of the window and the bulk job within 1.5x, with lanes.

    python benchmarks/lanes.py      # a markdown table, in about a minute and a half
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from _common import table, write_json  # noqa: E402

from getbill_async import (  # noqa: E402
    Budget,
    GetBillClient,
    LocalBudget,
    RateLimit,
    RedisBudget,
)
from getbill_async.sandbox import Sandbox  # noqa: E402
from tests.redis_fixtures import RedisServer  # noqa: E402

LIMIT, WINDOW, RESERVE = 40, 4.0, 0.2
PAGES, PAGE_SIZE, CONCURRENCY = 120, 10, 8
EVERY = 0.6  # seconds between interactive calls
IDEAL = math.ceil(PAGES / LIMIT) * WINDOW


async def run(kind: str, lanes: bool, redis_url: str) -> list[object]:
    rate = RateLimit(reads=LIMIT, window=WINDOW, reserve=RESERVE if lanes else 0.0)
    shared: Budget
    if kind == "redis":
        shared = RedisBudget(redis_url, f"bench:{uuid.uuid4().hex[:8]}", rate)
    else:
        shared = LocalBudget(rate)
    async with Sandbox(followups=PAGES * PAGE_SIZE, reads=LIMIT, window=WINDOW) as sb:
        ids = sb.followup_ids()[:50]
        waits: list[float] = []
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=shared) as client:
            await client.followups.get(ids[0])  # the cold start, out of the measurement
            walker = client if lanes else client.with_options(priority="interactive")
            started = time.monotonic()

            async def walk() -> float:
                async for _ in walker.followups.iterate(limit=PAGE_SIZE, concurrency=CONCURRENCY):
                    pass
                return time.monotonic() - started

            job = asyncio.ensure_future(walk())
            calls = 0
            while not job.done():
                asked = time.monotonic()
                await client.followups.get(ids[calls % len(ids)])
                waits.append(time.monotonic() - asked)
                calls += 1
                await asyncio.sleep(max(0.0, EVERY - (time.monotonic() - asked)))
            elapsed = await job
        refused = sb.stats.rate_limited
    if isinstance(shared, RedisBudget):
        await shared.aclose()
    worst = max(waits)
    return [
        f"{'lanes, reserve 0.2' if lanes else 'FIFO'}",
        kind,
        refused,
        calls,
        f"{worst:.2f}",
        f"{worst / WINDOW:.3f}",
        f"{elapsed:.2f}",
        f"{elapsed / IDEAL:.2f}x",
    ]


async def main(json_path: str | None) -> None:
    with RedisServer() as redis:
        rows = [
            await run(kind, lanes, redis.url)
            for kind in ("local", "redis")
            for lanes in (False, True)
        ]
    print(f"{PAGES}-page walk, concurrency {CONCURRENCY}, plus a get() every {EVERY} s; "
          f"server window {LIMIT} reads / {WINDOW:g} s; bulk ideal {IDEAL:g} s\n")  # fmt: skip
    headers = ["budget", "ledger", "429s", "interactive calls", "worst wait s",
               "worst wait / window", "bulk s", "bulk vs ideal"]  # fmt: skip
    print(table(headers, rows))
    ratios: list[dict[str, object]] = []
    for row in rows:
        name = f"{row[0]} ({row[1]})"
        lanes = str(row[0]).startswith("lanes")
        ratios += [
            {"benchmark": "lanes", "metric": f"{name}: worst interactive wait / window",
             "ratio": float(str(row[5])), "goal": 0.125 if lanes else None, "better": "lower"},
            {"benchmark": "lanes", "metric": f"{name}: bulk job vs ideal",
             "ratio": float(str(row[7]).rstrip("x")), "goal": 1.5 if lanes else None,
             "better": "lower"},
        ]  # fmt: skip
    write_json(json_path, ratios)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the ratios here (see run_all.py)")
    asyncio.run(main(parser.parse_args().json))
