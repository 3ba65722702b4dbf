"""Export CPU per item: typed decode and re-encode vs lossless raw bytes vs a bare loop.

The sandbox runs in its own process (no latency, the budget out of the way); this process
reads the same followups page by page (concurrency 1) in each way below, rounds interleaved
and their order rotated, and measures this process's CPU time (user + system) per item:

- typed (the SDK's export before it became lossless): ``client.followups.pages()`` decodes
  each item into ``Followup`` and ``encode_lines`` writes it back (unknown fields lost);
- lossless: the real ``client.followups.export(...)`` to JSONL, items kept as the server's
  bytes; it also commits (fsync, a digest of the tail, the checkpoint) every half second;
- lossless walk alone (context): the SDK's raw page walk (budget, auth, retries, duplicate
  skipping) with nothing written: how much of the export's cost is the request path;
- bare aiohttp: a plain loop of ``session.get`` for each page, writing the body as it came
  (no decode, no checks, no budget, no retries, no checkpoint): the baseline;
- two more context rows that split the distance to it: the bare loop that also decodes each
  page once as ``Page[msgspec.Raw]`` (the least any lossless export does: one line per item
  needs each item's bounds), and the SDK's request path alone (budget, auth, retries, the
  answer's checks) with the body not decoded at all.

Ratios are medians of per-round ratios against the bare loop of the same round. The export's
guard is against the floor instead: the bare loop plus one decode of each page, the least any
lossless export does (a goal of <= 1.2x the bare loop lay below that floor, 1.19-1.24x, and
is retired). The export must stay within 2x of the floor; a regression shows there first.

    python benchmarks/export_cpu.py [--followups 30000] [--rounds 9] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SandboxProcess, median, table, write_json  # noqa: E402

from getbill_async import GetBillClient, Page, RateLimit  # noqa: E402
from getbill_async.export._formats import raw_pages  # noqa: E402
from getbill_async.transport import CallStats, Request  # noqa: E402
from getbill_async.transport._answers import Decodes  # noqa: E402

TYPED = "typed (decode Followup + re-encode)"
LOSSLESS = "lossless export (raw bytes, fsync, checkpoint)"
BARE = "bare aiohttp loop (page bytes)"
WALK = "lossless walk alone, no file (context)"
PARSE = "bare loop + one Page[Raw] decode per page (context)"
PATH = "SDK request path alone, body not decoded (context)"
LIMIT = 100


async def typed(client: GetBillClient, base_url: str, token: str, out: Path) -> int:
    encoder = msgspec.json.Encoder()
    items = 0
    with open(out, "wb") as handle:
        async with client.followups.pages(limit=LIMIT, concurrency=1) as walk:
            async for page in walk:
                handle.write(encoder.encode_lines(page.data))
                handle.flush()
                items += len(page.data)
    return items


async def walk_only(client: GetBillClient, base_url: str, token: str, out: Path) -> int:
    out.touch()
    items = 0
    walk = raw_pages(client, limit=LIMIT, concurrency=1, start_page=1, known_ids=(), filters={})
    async with walk:
        async for page in walk:
            items += len(page.data)
    return items


async def lossless(client: GetBillClient, base_url: str, token: str, out: Path) -> int:
    report = await client.followups.export(out, concurrency=1, restart=True)
    return report.items


class _Numbers(msgspec.Struct):
    total: int
    pages: int


class _Head(msgspec.Struct):
    pagination: _Numbers  # the data is skipped, not decoded


_head = msgspec.json.Decoder(_Head)
_pages_as_raw = msgspec.json.Decoder(Page[msgspec.Raw])
Fetch = Callable[[int], Awaitable[bytes]]


async def _write_pages(fetch: Fetch, out: Path, decoder: Decodes[Any], every_page: bool) -> int:
    """Every page's body as it came, a line each; ``decoder`` reads the pagination (of page 1
    only, unless ``every_page``: the loop must learn when to stop, and page 1 says)."""
    with open(out, "wb") as handle:
        page = pages = total = 1
        while page <= pages:
            body = await fetch(page)
            if every_page or page == 1:
                numbers = decoder.decode(body).pagination
                pages, total = numbers.pages, numbers.total
            handle.write(body + b"\n")
            handle.flush()
            page += 1
    return total


async def _bare_loop(base_url: str, token: str, out: Path, parse_every_page: bool) -> int:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

        async def fetch(page: int) -> bytes:
            params = {"page": str(page), "limit": str(LIMIT)}
            async with session.get(f"{base_url}/followups", params=params) as resp:
                return await resp.read()

        if parse_every_page:
            return await _write_pages(fetch, out, _pages_as_raw, every_page=True)
        return await _write_pages(fetch, out, _head, every_page=False)


async def bare(client: GetBillClient, base_url: str, token: str, out: Path) -> int:
    return await _bare_loop(base_url, token, out, parse_every_page=False)


async def bare_and_parse(client: GetBillClient, base_url: str, token: str, out: Path) -> int:
    return await _bare_loop(base_url, token, out, parse_every_page=True)


class _Undecoded:
    def decode(self, buf: bytes, /) -> bytes:
        return buf


async def request_path(client: GetBillClient, base_url: str, token: str, out: Path) -> int:
    undecoded, stats = _Undecoded(), CallStats()

    async def fetch(page: int) -> bytes:
        params = {"limit": str(LIMIT), "page": str(page)}
        request = Request("GET", "/followups", params=params, bulk=True)
        return await client.send(request, undecoded, stats)

    return await _write_pages(fetch, out, _head, every_page=False)


Way = Callable[[GetBillClient, str, str, Path], Awaitable[int]]


async def measure(way: Way, client: GetBillClient, sb: SandboxProcess, out: Path) -> float:
    started = time.process_time()
    items = await way(client, sb.base_url, sb.token, out)
    spent = time.process_time() - started
    out.unlink()
    return spent / items * 1e6  # microseconds per item


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--followups", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json")
    args = parser.parse_args()
    ways: dict[str, Way] = {
        TYPED: typed,
        LOSSLESS: lossless,
        WALK: walk_only,
        PATH: request_path,
        PARSE: bare_and_parse,
        BARE: bare,
    }
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    ratios: dict[str, list[float]] = {name: [] for name in ways}
    over_floor: list[float] = []
    async with SandboxProcess(followups=args.followups, reads=10**9) as sb:
        rate = RateLimit(reads=10**9, writes=10**9)
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            with tempfile.TemporaryDirectory() as tmp:
                await measure(lossless, client, sb, Path(tmp) / "warm.jsonl")  # warm both sides
                for round_ in range(args.rounds):
                    names = list(ways)
                    names = names[round_ % len(names) :] + names[: round_ % len(names)]
                    this = {n: await measure(ways[n], client, sb, Path(tmp) / "x") for n in names}
                    for name, value in this.items():
                        cpu[name].append(value)
                        ratios[name].append(value / this[BARE])
                    over_floor.append(this[LOSSLESS] / this[PARSE])
    rows = [[name, f"{median(cpu[name]):.1f}", f"{median(ratios[name]):.2f}x"] for name in ways]
    print(
        f"JSONL export of {args.followups:,} followups, pages of {LIMIT}, concurrency 1, "
        f"sandbox in its own process; {args.rounds} interleaved rounds, medians\n"
    )
    print(table(["way", "CPU us/item", "vs bare loop"], rows))
    lossless_ratio = median(ratios[LOSSLESS])
    typed_ratio = median(ratios[TYPED])
    parse_ratio = median(ratios[PARSE])
    path_ratio = median(ratios[PATH])
    floor_ratio = median(over_floor)
    print(
        f"\nlossless / floor (bare loop + one page decode): {floor_ratio:.2f}x (guard <= 2x)"
        f"\nlossless / bare: {lossless_ratio:.2f}x; typed / bare: {typed_ratio:.2f}x"
        f"\nthe bare loop plus one decode of each page, no budget, no checks: {parse_ratio:.2f}x"
    )
    write_json(
        args.json,
        [
            {
                "benchmark": "export_cpu",
                "metric": "lossless export CPU/item vs the floor (bare loop + one page decode)",
                "ratio": round(floor_ratio, 2),
                "goal": 2.0,
                "better": "lower",
            },
            {
                "benchmark": "export_cpu",
                "metric": "lossless export CPU/item vs bare aiohttp loop (context)",
                "ratio": round(lossless_ratio, 2),
                "goal": None,
                "better": "lower",
            },
            {
                "benchmark": "export_cpu",
                "metric": "typed decode+re-encode CPU/item vs bare aiohttp loop",
                "ratio": round(typed_ratio, 2),
                "goal": None,
                "better": "lower",
            },
            {
                "benchmark": "export_cpu",
                "metric": "bare loop + one Page[Raw] decode per page vs bare loop (context)",
                "ratio": round(parse_ratio, 2),
                "goal": None,
                "better": "lower",
            },
            {
                "benchmark": "export_cpu",
                "metric": "SDK request path alone, body not decoded, vs bare loop (context)",
                "ratio": round(path_ratio, 2),
                "goal": None,
                "better": "lower",
            },
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
