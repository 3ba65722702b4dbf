"""How much of each benchmark's time the sandbox itself takes.

The sandbox runs in its own process; its CPU time is read from ``/proc`` around each timed
loop, so its share is measured rather than guessed:

- raw pages: a bare aiohttp loop that only reads the bytes (pages of 100 and of 10), which
  gives the sandbox's cost per page and the most pages a second it can serve;
- the loop of ``pipeline.py`` (``client.followups.list(limit=100)``, one after another);
- the walk of ``throughput.py`` (``iterate(concurrency=8)`` at 30 ms of latency): there the
  share is how busy the sandbox is, and near 100% it would be the limit being measured;
- ``budget.py``: its requests (pages of 10) times the sandbox's cost of one, over the ideal
  time of its job (an upper bound: its clients take at least the ideal time);
- ``decode.py`` times bytes fetched before the clock starts: no sandbox at all.

Goal: under half of any benchmark's time, so that what a benchmark compares is the clients.

    python benchmarks/sandbox_share.py [--pages 80] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import fmean

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import budget as budget_bench  # noqa: E402
from _common import median, table, write_json  # noqa: E402
from pipeline import HUGE, Server, cpu_of, server_process  # noqa: E402

from getbill_async import GetBillClient, RateLimit  # noqa: E402

GOAL = 0.5
THROUGHPUT_LATENCY, THROUGHPUT_CONCURRENCY = 0.03, 8  # throughput.py's defaults


async def per_page(
    server: Server, pages: int, rounds: int, run: Callable[[int], Awaitable[int]]
) -> tuple[float, float]:
    """(median wall, mean sandbox CPU) seconds per page of ``run(pages)`` over ``rounds``."""
    await run(min(pages, 10))  # warm: connections, caches
    walls, cpus = [], []
    for _ in range(rounds):
        cpu0, wall0 = cpu_of(server.pid), time.perf_counter()
        done = await run(pages)
        walls.append((time.perf_counter() - wall0) / done)
        cpus.append((cpu_of(server.pid) - cpu0) / done)
    return median(walls), fmean(cpus)  # a mean smooths /proc's 10 ms ticks


def raw_pages(
    http: aiohttp.ClientSession, server: Server, limit: int
) -> Callable[[int], Awaitable[int]]:
    headers = {"Authorization": f"Bearer {server.token}"}

    async def run(pages: int) -> int:
        for n in range(pages):
            url = URL(f"{server.base_url}/followups?page={n % 10 + 1}&limit={limit}", encoded=True)
            async with http.get(url, headers=headers) as resp:
                await resp.read()
        return pages

    return run


def sdk_pages(client: GetBillClient) -> Callable[[int], Awaitable[int]]:
    async def run(pages: int) -> int:
        for n in range(pages):
            await client.followups.list(page=n % 10 + 1, limit=100)
        return pages

    return run


def sdk_walk(client: GetBillClient) -> Callable[[int], Awaitable[int]]:
    async def run(pages: int) -> int:
        seen = 0
        walk = client.followups.pages(limit=100, concurrency=THROUGHPUT_CONCURRENCY)
        async with walk:
            async for _ in walk:
                seen += 1
                if seen >= pages:
                    break
        return seen

    return run


async def measure(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    rate = RateLimit(reads=HUGE, writes=HUGE)
    found: dict[str, tuple[float, float]] = {}
    with server_process() as server:
        async with aiohttp.ClientSession() as http:
            for limit in (100, 10):
                # Pages of 10 cost a tenth: ten times as many keep /proc's 10 ms ticks small.
                pages = args.pages * 100 // limit
                run = raw_pages(http, server, limit)
                found[f"raw{limit}"] = await per_page(server, pages, args.rounds, run)
        async with GetBillClient(server.token, base_url=server.base_url, rate_limit=rate) as c:
            found["pipeline"] = await per_page(server, args.pages, args.rounds, sdk_pages(c))
    with server_process(followups=10_000, latency=THROUGHPUT_LATENCY) as server:
        async with GetBillClient(server.token, base_url=server.base_url, rate_limit=rate) as c:
            found["throughput"] = await per_page(server, args.pages, args.rounds, sdk_walk(c))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=80, help="pages per timed loop (80)")
    parser.add_argument("--rounds", type=int, default=5, help="timed loops per row (5)")
    parser.add_argument("--json", help="write the shares here")
    args = parser.parse_args()
    found = asyncio.run(measure(args))

    raw_rows = []
    for limit in (100, 10):
        wall, cpu = found[f"raw{limit}"]
        raw_rows.append(
            [
                f"bare aiohttp, raw bytes, limit={limit}",
                f"{wall * 1000:.2f}",
                f"{cpu * 1000:.2f}",
                f"{cpu / wall:.0%}",
                f"{1 / cpu:,.0f}" if cpu else "n/a",
            ]
        )
    print("The sandbox (own process) serving pages one after another; medians\n")
    print(
        table(
            ["client", "ms/page", "sandbox CPU ms/page", "sandbox share", "max pages/s"],
            raw_rows,
        )
    )

    ideal = (budget_bench.TOTAL - 1) // budget_bench.LIMIT * budget_bench.WINDOW
    shares = {
        "decode": (0.0, "measured: the page is fetched before timing starts"),
        "pipeline": (
            found["pipeline"][1] / found["pipeline"][0],
            "measured: sandbox CPU / SDK time per page of 100",
        ),
        "throughput": (
            found["throughput"][1] / found["throughput"][0],
            f"measured: sandbox busy time in an {THROUGHPUT_CONCURRENCY}-wide walk at "
            f"{THROUGHPUT_LATENCY * 1000:g} ms latency",
        ),
        "budget": (
            budget_bench.TOTAL * found["raw10"][1] / ideal,
            f"{budget_bench.TOTAL} pages of 10 x sandbox CPU per page / ideal {ideal:g} s "
            "(upper bound)",
        ),
    }
    print()
    rows = [[name, f"{share:.0%}", how] for name, (share, how) in shares.items()]
    print(table(["benchmark", "sandbox share of its time", "how"], rows))
    print(f"\ngoal: under {GOAL:.0%} each, so the clients are what is measured")
    write_json(
        args.json,
        [
            {
                "benchmark": "sandbox_share",
                "metric": f"sandbox share of {name}.py's time",
                "ratio": round(share, 3),
                "goal": GOAL,
                "better": "lower",
            }
            for name, (share, _) in shares.items()
        ],
    )


if __name__ == "__main__":
    main()
