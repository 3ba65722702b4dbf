"""Decoding a page: bytes of 100 followups to objects, side by side in one run.

The page is the sandbox's own answer to ``GET /followups?limit=100`` (fetched once, before any
timing). Each decoder turns those bytes into objects; rounds interleave the decoders (the order
rotates each round) and each round's ratio is taken against the bare msgspec decode of that
same round, so a machine that slows down mid-run slows both sides of a ratio alike. The
collector stays on, as in a real program.

- getbill-async: the SDK's own module-level decoder, ``Page[Followup]``;
- bare msgspec: a plain ``msgspec.Struct`` with the same 24 fields and types, no options;
- ``json.loads`` and ``orjson.loads``: dicts of strings (no datetimes, no checks);
- pydantic v2: ``BaseModel.model_validate_json`` with the same fields and types.

    python benchmarks/decode.py [--rounds 15] [--seconds 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import bare_page_type, pydantic_page_model  # noqa: E402
from _common import median, table, write_json  # noqa: E402

from getbill_async.resources._reads import _page_decoder  # noqa: E402
from getbill_async.sandbox import Sandbox  # noqa: E402

SDK = "getbill-async (Page[Followup])"
BARE = "bare msgspec Struct"
SAMPLE_SECONDS = 0.03  # one timed sample: long enough for the clock, short enough to interleave


def decoders() -> dict[str, Callable[[bytes], Any]]:
    found: dict[str, Callable[[bytes], Any]] = {
        SDK: _page_decoder.decode,
        BARE: msgspec.json.Decoder(bare_page_type()).decode,
        "json.loads (dicts)": json.loads,
    }
    try:
        import orjson

        found["orjson.loads (dicts)"] = orjson.loads
    except ImportError:
        print("orjson not installed: skipped", file=sys.stderr)
    pyd = pydantic_page_model()
    if pyd is not None:
        found["pydantic v2 model_validate_json"] = pyd.model_validate_json
    else:
        print("pydantic not installed: skipped", file=sys.stderr)
    return found


async def sandbox_page(limit: int = 100) -> bytes:
    """The sandbox's answer to one list request, as bytes."""
    async with Sandbox(followups=1_000) as sb, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {sb.token}"}
        url = f"{sb.base_url}/followups?page=1&limit={limit}"
        async with http.get(url, headers=headers) as resp:
            resp.raise_for_status()
            return await resp.read()


def items_in(decoded: Any) -> int:
    data = decoded["data"] if isinstance(decoded, dict) else decoded.data
    return len(data)


def per_call(decode: Callable[[bytes], Any], page: bytes, number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        decode(page)
    return (time.perf_counter() - started) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (15)")
    parser.add_argument("--seconds", type=float, default=40.0, help="stop rounds after (40)")
    parser.add_argument("--json", help="write the ratios here")
    args = parser.parse_args()

    page = asyncio.run(sandbox_page())
    found = decoders()
    numbers: dict[str, int] = {}
    for name, decode in found.items():
        if items_in(decode(page)) != 100:
            raise SystemExit(f"{name}: did not decode 100 items")
        numbers[name] = max(1, round(SAMPLE_SECONDS / per_call(decode, page, 20)))

    gc.enable()
    times: dict[str, list[float]] = {name: [] for name in found}
    ratios: dict[str, list[float]] = {name: [] for name in found}
    names = list(found)
    deadline = time.monotonic() + args.seconds
    for rnd in range(args.rounds):
        if rnd >= 3 and time.monotonic() > deadline:
            break
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        sample = {name: per_call(found[name], page, numbers[name]) for name in order}
        for name in names:
            times[name].append(sample[name])
            ratios[name].append(sample[name] / sample[BARE])

    rounds = len(times[BARE])
    rows = []
    for name in names:
        seconds = median(times[name])
        rows.append(
            [
                name,
                f"{seconds * 1e6:,.0f}",
                f"{len(page) / seconds / 1e6:,.0f}",
                f"{median(ratios[name]):.2f}x",
            ]
        )
    print(
        f"Decoding one page of 100 followups ({len(page) / 1000:.0f} KB, the sandbox's answer); "
        f"median of {rounds} interleaved rounds, ratio to the bare msgspec decode in each round\n"
    )
    print(table(["decoder", "µs per page", "MB/s", "vs bare msgspec"], rows))
    sdk = median(ratios[SDK])
    print(f"\ngetbill-async decode vs bare msgspec: {sdk:.2f}x (goal <= 1.1x)")
    results: list[dict[str, object]] = [
        {
            "benchmark": "decode",
            "metric": "SDK decode vs bare msgspec (time per page)",
            "ratio": round(sdk, 3),
            "goal": 1.1,
            "better": "lower",
        }
    ]
    for name in names:
        if name not in (SDK, BARE):
            results.append(
                {
                    "benchmark": "decode",
                    "metric": f"{name} vs bare msgspec (time per page)",
                    "ratio": round(median(ratios[name]), 3),
                    "goal": None,
                    "better": "lower",
                }
            )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
