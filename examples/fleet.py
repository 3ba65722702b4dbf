"""A fleet of worker processes exporting followups by date range, under one shared budget.

Every worker takes one slice of the date range and writes its followups as JSON lines to
``OUT/part-N.jsonl``. They all use one OAuth client, so they share one rate budget: a
``RedisBudget`` on the same key keeps the whole fleet inside the server's window.

    python examples/fleet.py                 # starts a sandbox and a throwaway redis-server
    python examples/fleet.py --workers 4 --redis redis://localhost:6379/0 \\
        --base-url https://getbill.io/external-api/v1 --key getbill:my-client-id
        # token from GETBILL_TOKEN; limits default to the documented 1,000 reads an hour

Followups with neither a call date nor a scheduled date match no date range; export those
with a walk without date filters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import msgspec

from getbill_async import GetBillClient, RateLimit, RedisBudget
from getbill_async.sandbox import Sandbox


def slices(first: date, last: date, n: int) -> list[tuple[date, date]]:
    """``n`` contiguous date ranges covering ``first..last`` (both ends included)."""
    days = (last - first).days + 1
    bounds = [first + timedelta(days=days * i // n) for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1] - timedelta(days=1)) for i in range(n)]


async def export_slice(args: argparse.Namespace) -> dict[str, object]:
    """One worker: every followup of its date range, to its own JSONL file."""
    rate = RateLimit(reads=args.reads, window=args.window)
    encode = msgspec.json.Encoder().encode
    started = time.monotonic()
    rows = 0
    async with (
        RedisBudget(args.redis, args.key, rate) as budget,
        GetBillClient(args.token, base_url=args.base_url, rate_limit=budget) as client,
    ):
        with open(args.part, "wb") as out:
            async for followup in client.followups.iterate(
                date_from=args.date_from, date_to=args.date_to
            ):
                out.write(encode(followup) + b"\n")
                rows += 1
        stats = client.stats
    return {
        "rows": rows,
        "requests": stats.requests,
        "waited": round(stats.budget_wait_seconds, 2),
        "elapsed": round(time.monotonic() - started, 2),
    }


async def run_fleet(args: argparse.Namespace, base_url: str, token: str) -> list[dict[str, object]]:
    """Start one worker process per slice and wait for all of them."""
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GETBILL_TOKEN": token}
    procs = []
    for n, (low, high) in enumerate(slices(args.date_from, args.date_to, args.workers)):
        command = [
            sys.executable, __file__, "--worker", "--redis", args.redis, "--key", args.key,
            "--base-url", base_url, "--reads", str(args.reads), "--window", str(args.window),
            "--from", low.isoformat(), "--to", high.isoformat(),
            "--part", str(args.out / f"part-{n}.jsonl"),
        ]  # fmt: skip
        procs.append(
            (low, high, await asyncio.create_subprocess_exec(*command, env=env, stdout=-1))
        )
    results = []
    for low, high, proc in procs:
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"worker for {low}..{high} failed (exit {proc.returncode})")
        results.append({"dates": f"{low}..{high}", **json.loads(out)})
    return results


@contextmanager
def throwaway_redis() -> Iterator[str]:
    """A redis-server on a free loopback port, without persistence, for this run only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install the 'redis-server' package or --redis")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data,
                   "--save", "", "--appendonly", "no", "--loglevel", "warning"]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            for _ in range(250):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    if args.base_url:
        token = os.environ.get("GETBILL_TOKEN", "")
        results = await run_fleet(args, args.base_url, token)
        refused = "?"
    else:
        # A sandbox with a compressed window, so the shared budget has something to do.
        async with Sandbox(followups=args.followups, reads=args.reads, window=args.window) as sb:
            results = await run_fleet(args, sb.base_url, sb.token)
            refused = str(sb.stats.by_status.get(429, 0))
    print("| worker | dates | rows | requests | budget wait s | elapsed s |")
    print("|---|---|---|---|---|---|")
    for n, r in enumerate(results):
        print(f"| {n} | {r['dates']} | {r['rows']} | {r['requests']} | {r['waited']} "
              f"| {r['elapsed']} |")  # fmt: skip
    total = sum(int(str(r["rows"])) for r in results)
    print(f"\n{total} followups in {args.out}/ in {time.monotonic() - started:.1f} s; "
          f"budget {args.reads} reads / {args.window:g} s shared by {args.workers} workers; "
          f"429s: {refused}")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    parser.add_argument("--redis", help="Redis URL (default: start a throwaway redis-server)")
    parser.add_argument("--key", default="getbill:example", help="budget key, one per client")
    parser.add_argument("--base-url", help="API base URL (default: start a sandbox)")
    parser.add_argument("--reads", type=int, help="reads per window (sandbox: 20, else 1000)")
    parser.add_argument("--window", type=float, help="window in seconds (sandbox: 2, else 3600)")
    parser.add_argument("--followups", type=int, default=4000, help="sandbox size (4000)")
    parser.add_argument("--from", dest="date_from", type=date.fromisoformat,
                        default=date(2023, 1, 1), help="first day (2023-01-01)")  # fmt: skip
    parser.add_argument("--to", dest="date_to", type=date.fromisoformat,
                        default=date(2024, 12, 31), help="last day (2024-12-31)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("fleet-export"), help="output folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sandbox = args.base_url is None
    args.reads = args.reads or (20 if sandbox else 1000)
    args.window = args.window or (2.0 if sandbox else 3600.0)
    args.token = os.environ.get("GETBILL_TOKEN")
    return args


if __name__ == "__main__":
    options = parse()
    if options.worker:
        print(json.dumps(asyncio.run(export_slice(options))))
    elif options.redis:
        asyncio.run(main(options))
    else:
        with throwaway_redis() as url:
            options.redis = url
            asyncio.run(main(options))
