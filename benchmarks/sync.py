"""The sync face's cost: a blocking call against the same call awaited, and threads on one
budget.

1. Overhead per request: the same sequential ``followups.get`` calls through the async client
   (awaited in its loop) and through ``getbill_async.sync.GetBillClient`` (each call a trip
   into the sync face's loop and back), against one sandbox in its own process, the budget
   out of the way, both clients warm. Within a round the two sides take turns by chunks of
   ``CHUNK`` requests (which goes first alternates), so a machine that slows down slows both;
   the overhead is the median, over rounds, of the difference in wall time per request (the
   goal: under 50 µs), and in CPU time (this process's threads). Beside them: the floor,
   each call run to its end by a ``run_forever`` of its own and nothing else (what any
   blocking call over an asyncio loop pays at least), and a call that does nothing, through
   the portal.
2. Threads: 8 threads share one sync client and make ``TOTAL`` reads through a server window
   of ``LIMIT`` reads per ``WINDOW`` seconds; the elapsed time against the budget's ideal
   (``(TOTAL - 1) // LIMIT`` windows), the 429s, and the most arrivals in any window.
   Goal: within 1.05x of the ideal, no 429, never over the limit.

    python benchmarks/sync.py [--requests 400] [--rounds 9] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import max_in_window, table, write_json  # noqa: E402

from getbill_async import GetBillClient, RateLimit  # noqa: E402
from getbill_async import sync as sync_face  # noqa: E402
from getbill_async.sandbox import STATIC_CLIENT  # noqa: E402
from tests.sync_helpers import ThreadedSandbox  # noqa: E402

THREADS, TOTAL, LIMIT, WINDOW = 8, 200, 40, 2.0
CHUNK = 20  # requests a side takes in turn within a round
OPEN = RateLimit(reads=1_000_000, writes=1_000_000, window=3600.0)


class SandboxProcess:
    """``getbill sandbox`` in a process of its own, so it does not share this one's GIL."""

    def __init__(self) -> None:
        args = [sys.executable, "-m", "getbill_async.cli", "sandbox", "--port", "0"]
        args += ["--followups", "200", "--reads", "1000000", "--writes", "1000000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.base_url = self.token = ""
        assert self.proc.stdout is not None
        while not (self.base_url and self.token):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the sandbox process ended before it was ready")
            if line.startswith("base URL:"):
                self.base_url = line.split()[-1]
            elif line.startswith("static token:"):
                self.token = line.split()[-1]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


Timing = tuple[float, float]  # wall seconds, CPU seconds (this process, all threads)


class AsyncSide:
    """The async client on a loop of its own, kept across chunks (warm, like the sync one)."""

    def __init__(self, sb: SandboxProcess) -> None:
        self.loop = asyncio.new_event_loop()
        client = GetBillClient(sb.token, base_url=sb.base_url, rate_limit=OPEN)
        self.client = self.loop.run_until_complete(client.__aenter__())

    def chunk(self, ids: list[str]) -> Timing:
        """Wall and CPU seconds for ``ids`` fetched one after another, awaited in the loop."""

        async def run() -> Timing:
            wall, cpu = time.perf_counter(), time.process_time()
            for followup_id in ids:
                await self.client.followups.get(followup_id)
            return time.perf_counter() - wall, time.process_time() - cpu

        return self.loop.run_until_complete(run())

    def driven(self, ids: list[str]) -> Timing:
        """The floor: each call run to its end by a ``run_forever`` of its own, the loop
        stopping in the call's last step, nothing else (what any blocking call over an
        asyncio loop pays at least)."""
        loop, get = self.loop, self.client.followups.get

        async def then_stop(followup_id: str) -> None:
            try:
                await get(followup_id)
            finally:
                loop.stop()

        wall, cpu = time.perf_counter(), time.process_time()
        for followup_id in ids:
            task = loop.create_task(then_stop(followup_id))
            loop.run_forever()
            task.result()
        return time.perf_counter() - wall, time.process_time() - cpu

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def sync_chunk(client: sync_face.GetBillClient, ids: list[str]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    for followup_id in ids:
        client.followups.get(followup_id)
    return time.perf_counter() - wall, time.process_time() - cpu


def one_round(
    side: AsyncSide, client: sync_face.GetBillClient, ids: list[str], chunk: int
) -> list[Timing]:
    """The sides over ``ids`` in turns by chunks (the order turns round every chunk), so
    that all see the same machine; per request, (wall, CPU) of: the async client awaited,
    the sync client, the floor (``AsyncSide.driven``)."""
    sides = (side.chunk, lambda p: sync_chunk(client, p), side.driven)
    totals = [[0.0, 0.0] for _ in sides]
    for n, start in enumerate(range(0, len(ids), chunk)):
        part = ids[start : start + chunk]
        order = list(enumerate(sides))
        for k, measure in order if n % 2 else order[::-1]:
            wall, cpu = measure(part)
            totals[k][0] += wall
            totals[k][1] += cpu
    return [(wall / len(ids), cpu / len(ids)) for wall, cpu in totals]


def hop_alone(portal: object, n: int = 5000) -> float:
    async def nothing() -> None:
        return None

    run = portal.run  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(n):
        run(nothing())
    return (time.perf_counter() - started) / n


def overhead(requests: int, rounds: int) -> tuple[list[list[object]], float, float, float]:
    sb = SandboxProcess()
    try:
        with sync_face.GetBillClient(sb.token, base_url=sb.base_url, rate_limit=OPEN) as client:
            ids = [f.id for f in client.followups.list(limit=100).data]
            ids = (ids * (requests // len(ids) + 1))[:requests]
            client.followups.get(ids[0])
            side = AsyncSide(sb)
            try:
                side.chunk(ids[:1])
                pairs = [one_round(side, client, ids, CHUNK) for _ in range(rounds)]
            finally:
                side.close()
            hop = statistics.median(hop_alone(client._portal) for _ in range(3))
    finally:
        sb.close()
    rows: list[list[object]] = []
    names = ("async client, awaited", "sync client, blocking", "floor: each call run_forever")
    for k, name in enumerate(names):
        wall = statistics.median(p[k][0] for p in pairs)
        cpu = statistics.median(p[k][1] for p in pairs)
        rows.append([name, f"{wall * 1e6:.0f}", f"{cpu * 1e6:.0f}"])
    extra = statistics.median(p[1][0] - p[0][0] for p in pairs)
    extra_cpu = statistics.median(p[1][1] - p[0][1] for p in pairs)
    rows.append(["sync - async", f"{extra * 1e6:+.0f}", f"{extra_cpu * 1e6:+.0f}"])
    floor = statistics.median(p[2][0] - p[0][0] for p in pairs)
    floor_cpu = statistics.median(p[2][1] - p[0][1] for p in pairs)
    rows.append(["floor - async", f"{floor * 1e6:+.0f}", f"{floor_cpu * 1e6:+.0f}"])
    rows.append(["a call that does nothing, through the portal", f"{hop * 1e6:.0f}", ""])
    return rows, extra, extra_cpu, floor


def threads() -> tuple[list[object], float, int, int]:
    with ThreadedSandbox(followups=100, reads=LIMIT, window=WINDOW) as sb:
        rate = RateLimit(reads=LIMIT, writes=10, window=WINDOW)
        with sync_face.GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            per_thread = TOTAL // THREADS

            def work(k: int) -> None:
                for n in range(per_thread):
                    client.followups.list(page=(k + n) % 5 + 1, limit=10)

            workers = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
            started = time.monotonic()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.monotonic() - started
        refused = sb.read(lambda s: s.stats.by_status.get(429, 0))
        most = max_in_window(sb.read(lambda s: s.arrivals(STATIC_CLIENT, "read")), WINDOW)
    ideal = (TOTAL - 1) // LIMIT * WINDOW
    row: list[object] = [
        f"{THREADS} threads, one sync client",
        refused,
        f"{elapsed:.2f}",
        f"{elapsed / ideal:.3f}x",
        f"{most} / {LIMIT}",
    ]
    return row, elapsed / ideal, refused, most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="requests per side a round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="write the ratios here")
    args = parser.parse_args()
    rows, extra, extra_cpu, floor = overhead(args.requests, args.rounds)
    print(f"{args.requests} sequential GET /followups/{{id}} per side, {args.rounds} rounds,")
    print("sandbox in its own process, budget out of the way (medians):\n")
    print(table(["side", "wall µs per request", "CPU µs per request"], rows))
    row, ratio, refused, most = threads()
    print(f"\n{TOTAL} reads from {THREADS} threads, server window {LIMIT} reads / {WINDOW:g} s;")
    print(f"ideal {(TOTAL - 1) // LIMIT * WINDOW:g} s\n")
    print(table(["client", "429s", "elapsed s", "vs ideal", "max in a window"], [row]))
    results: list[dict[str, object]] = [
        {
            "benchmark": "sync",
            "metric": "sync call overhead per request vs 50 µs",
            "ratio": round(extra / 50e-6, 3),
            "goal": 1.0,
            "better": "lower",
        },
        {
            "benchmark": "sync",
            "metric": "sync call overhead per request, CPU time, vs 50 µs",
            "ratio": round(extra_cpu / 50e-6, 3),
            "goal": None,
            "better": "lower",
        },
        {
            "benchmark": "sync",
            "metric": "floor (each call run_forever, no sync face) overhead vs 50 µs",
            "ratio": round(floor / 50e-6, 3),
            "goal": None,
            "better": "lower",
        },
        {
            "benchmark": "sync",
            "metric": f"{THREADS} threads on one sync client: elapsed vs ideal",
            "ratio": round(ratio, 3),
            "goal": 1.05,
            "better": "lower",
        },
        {
            "benchmark": "sync",
            "metric": f"{THREADS} threads on one sync client: max in a window vs limit",
            "ratio": round(most / LIMIT, 3),
            "goal": 1.0,
            "better": "lower",
        },
    ]
    if refused:
        print(f"\n{refused} requests refused with 429")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
