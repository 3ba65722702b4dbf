"""Walking pages at 30 ms of latency: concurrency against naive loops, in one run.

The sandbox runs in its own process with 30 ms added to every answer and the budget out of
the way; each client walks the same pages, in rounds, and the median items/s is reported.

    python benchmarks/throughput.py [--pages 120] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import pydantic_page_model  # noqa: E402
from _common import SandboxProcess, median, table, write_json  # noqa: E402

from getbill_async import GetBillClient, RateLimit  # noqa: E402

LIMIT = 100
Walker = Callable[[str, str, int], Awaitable[int]]


async def sdk_walk(base_url: str, token: str, pages: int, concurrency: int) -> int:
    rate = RateLimit(reads=10**9, writes=10**9)
    async with GetBillClient(token, base_url=base_url, rate_limit=rate) as client:
        count = 0
        walk = client.followups.iterate(limit=LIMIT, concurrency=concurrency)
        async with walk:
            async for _ in walk:
                count += 1
                if count >= pages * LIMIT:
                    break
        return count


async def naive_aiohttp(base_url: str, token: str, pages: int) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    count = 0
    async with aiohttp.ClientSession() as http:
        for page in range(1, pages + 1):
            url = f"{base_url}/followups?page={page}&limit={LIMIT}"
            async with http.get(url, headers=headers) as resp:
                body = json.loads(await resp.read())
            count += len(body["data"])
    return count


async def naive_httpx_pydantic(base_url: str, token: str, pages: int) -> int:
    import httpx

    page_model = pydantic_page_model()
    count = 0
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        for page in range(1, pages + 1):
            resp = await http.get(f"{base_url}/followups", params={"page": page, "limit": LIMIT})
            count += len(page_model.model_validate_json(resp.content).data)
    return count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--json")
    args = parser.parse_args()
    clients: dict[str, Walker] = {
        "naive aiohttp + json.loads (sequential)": naive_aiohttp,
        "naive httpx + pydantic (sequential)": naive_httpx_pydantic,
        "getbill-async iterate(concurrency=1)": lambda u, t, p: sdk_walk(u, t, p, 1),
        "getbill-async iterate(concurrency=8)": lambda u, t, p: sdk_walk(u, t, p, 8),
    }
    rates: dict[str, list[float]] = {name: [] for name in clients}
    options = dict(followups=args.pages * LIMIT, latency=args.latency, reads=10**9)
    async with SandboxProcess(**options) as sb:
        for _ in range(args.rounds):
            for name, walk in clients.items():
                started = time.perf_counter()
                items = await walk(sb.base_url, sb.token, args.pages)
                rates[name].append(items / (time.perf_counter() - started))
    naive = max(median(rates[n]) for n in list(clients)[:2])
    rows = [[name, f"{median(r):,.0f}", f"{median(r) / naive:.2f}x"] for name, r in rates.items()]
    print(
        f"{args.pages} pages of {LIMIT}, {args.latency * 1000:g} ms latency, "
        f"median of {args.rounds} rounds; ratio vs the faster naive loop\n"
    )
    print(table(["client", "items/s", "vs naive"], rows))
    best = median(rates["getbill-async iterate(concurrency=8)"])
    write_json(
        args.json,
        [
            {
                "benchmark": "throughput",
                "metric": "iterate(concurrency=8) vs naive loops (items/s)",
                "ratio": round(best / naive, 2),
                "goal": 5.0,
                "better": "higher",
            }
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
