"""Peak memory of an export does not grow with its size: 100,000 vs 1,000,000 followups.

Each export runs in a fresh child process (so each peak RSS is its own) against a sandbox in
another process, without latency and with the budget out of the way; JSONL, then Parquet
(row groups of 10 pages; skipped without pyarrow).

    python benchmarks/export_memory.py [--small 100000] [--large 1000000]
        [--formats jsonl,parquet] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SandboxProcess, table, write_json  # noqa: E402

CHILD = """
import asyncio, resource, sys, time
from getbill_async import GetBillClient, RateLimit

async def main(base_url, token, path, count, fmt):
    rate = RateLimit(reads=10**9, writes=10**9)
    async with GetBillClient(token, base_url=base_url, rate_limit=rate) as client:
        started = time.perf_counter()
        report = await client.followups.export(path, format=fmt, concurrency=8)
        assert report.items == count, (report.items, count)
        elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(report.items, peak_kib, f"{elapsed:.2f}")

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
"""


async def export_in_child(count: int, workdir: Path, fmt: str) -> tuple[int, int, float]:
    async with SandboxProcess(followups=count, reads=10**9) as sb:
        out = workdir / f"export-{count}.{fmt}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            sb.base_url,
            sb.token,
            str(out),
            str(count),
            fmt,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"export of {count} failed")
        items, peak_kib, elapsed = stdout.split()
        out.unlink()
        return int(items), int(peak_kib), float(elapsed)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--formats", default="jsonl,parquet")
    parser.add_argument("--json")
    args = parser.parse_args()
    formats = args.formats.split(",")
    if "parquet" in formats and importlib.util.find_spec("pyarrow") is None:
        print("pyarrow not installed: Parquet skipped", file=sys.stderr)
        formats.remove("parquet")
    rows = []
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            peaks = []
            for count in (args.small, args.large):
                items, peak_kib, elapsed = await export_in_child(count, Path(tmp), fmt)
                peaks.append(peak_kib)
                rows.append(
                    [
                        fmt,
                        f"{items:,}",
                        f"{peak_kib / 1024:.1f}",
                        f"{elapsed:.1f}",
                        f"{items / elapsed:,.0f}",
                    ]
                )
            ratios.append((fmt, peaks[1] / peaks[0]))
    print("Export, concurrency 8, sandbox in its own process, no latency\n")
    print(table(["format", "followups", "peak RSS MiB", "seconds", "items/s"], rows))
    print()
    for fmt, ratio in ratios:
        print(f"{fmt}: peak RSS ratio large/small: {ratio:.2f}x (goal <= 1.2x)")
    write_json(
        args.json,
        [
            {
                "benchmark": "export_memory",
                "metric": f"{fmt} peak RSS {args.large:,} vs {args.small:,}",
                "ratio": round(ratio, 2),
                "goal": 1.2,
                "better": "lower",
            }
            for fmt, ratio in ratios
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
