"""Instructions per page: the SDK's request path against the hand-written loop, counted.

Wall and CPU times on a shared machine move by more than the gap they judge (fresh processes
of the same code gave 1.01x to 1.25x in ``pipeline.py``). An instruction count does not move
with the weather: the same code on the same interpreter and libraries executes nearly the
same instructions, however busy the machine is. So this benchmark counts them.

The sandbox runs in its own process (not counted, no latency, the budget out of the way).
One child process runs under ``valgrind --tool=callgrind`` with a fixed ``PYTHONHASHSEED``:
it fetches pages of 100 followups one after another with ``client.followups.list`` and with
the hand-written loop (the two functions ``pipeline.py`` times, from ``_sides.py``), warm
first, then in four measured stretches (SDK, hand, hand, SDK). Before each stretch it calls
``os.getppid()``, which nothing else on this path calls, and callgrind
(``--dump-before=getppid``) closes a part there: each part's total is the instructions
(``Ir``) of one stretch, start-up and imports left out. Per side: the stretches' sum over
their pages.

Guard: ``pipeline_instructions.json`` holds the committed figures. A row whose figure grows
more than 5% over the committed one is marked (its goal is the committed figure x 1.05), so
the request path cannot grow a few microseconds a turn unnoticed. Counts depend on the
Python version and on aiohttp's and msgspec's; the output names both the committed and the
current versions, and a change of those is a reason to record the figures again:

    python benchmarks/pipeline_instructions.py [--pages 40] [--json out.json] [--record]

Callgrind runs the child some 50x slower than usual: 40 pages a stretch is about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import SandboxProcess, table, write_json  # noqa: E402

COMMITTED = HERE / "pipeline_instructions.json"
HASH_SEED = "0"
GROWTH = 1.05  # a figure more than 5% over the committed one is marked
HUGE = 10**9
STRETCHES = ("sdk", "hand", "hand", "sdk")
WARM = 10


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "aiohttp": version("aiohttp"),
        "msgspec": version("msgspec"),
    }


# --- the child, under callgrind --------------------------------------------------------------


async def child(base_url: str, token: str, pages: int) -> None:
    import aiohttp
    import msgspec
    from _sides import LIMIT, hand_pages, sdk_pages

    from getbill_async import GetBillClient, RateLimit
    from getbill_async.models import Followup, Page

    numbers = [n % 10 + 1 for n in range(pages)]
    rate = RateLimit(reads=HUGE, writes=HUGE)
    decoder = msgspec.json.Decoder(Page[Followup])
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    assert LIMIT == 100
    async with (
        GetBillClient(token, base_url=base_url, rate_limit=rate) as client,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http,
    ):

        async def run(side: str, count: int) -> None:
            if side == "sdk":
                await sdk_pages(client, numbers[:count])
            else:
                await hand_pages(http, base_url, headers, decoder, numbers[:count])

        for side in ("sdk", "hand"):  # warm: connections, caches, first-call paths
            await run(side, WARM)
        for side in STRETCHES:
            os.getppid()  # callgrind closes a part here (--dump-before=getppid)
            await run(side, pages)
        os.getppid()


# --- the parent ------------------------------------------------------------------------------


def part_totals(folder: Path, prefix: str) -> list[int]:
    """The ``totals:`` of each numbered part callgrind dumped, in order."""
    found: dict[int, int] = {}
    for path in folder.glob(f"{prefix}.*"):
        number = path.name.rsplit(".", 1)[1]
        if not number.isdigit():
            continue
        total = re.search(r"^totals:\s*(\d+)", path.read_text(errors="replace"), re.M)
        if total is not None:
            found[int(number)] = int(total.group(1))
    return [found[n] for n in sorted(found)]


async def count(pages: int) -> dict[str, float]:
    """Instructions per page of each side, from one callgrind run."""
    async with SandboxProcess(followups=1_000, reads=HUGE, writes=HUGE) as server:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            args = [
                "valgrind",
                "--tool=callgrind",
                "--dump-before=getppid",
                f"--callgrind-out-file={folder / 'cg.out'}",
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                server.base_url,
                server.token,
                "--pages",
                str(pages),
            ]
            env = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
            proc = await asyncio.create_subprocess_exec(
                *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"callgrind run failed:\n{err.decode()[-2000:]}")
            totals = part_totals(folder, "cg.out")
    # Part 1: start-up to the first stretch; then one part per stretch; the exit has no number.
    if len(totals) < len(STRETCHES) + 1:
        raise RuntimeError(f"callgrind dumped {len(totals)} parts, expected {len(STRETCHES) + 1}")
    per_side: dict[str, list[int]] = {}
    for side, total in zip(STRETCHES, totals[1 : len(STRETCHES) + 1], strict=True):
        per_side.setdefault(side, []).append(total)
    for side, parts in per_side.items():
        shown = " / ".join(f"{part / pages:,.0f}" for part in parts)
        print(f"{side}: per page in each stretch {shown}")
    return {side: sum(parts) / (len(parts) * pages) for side, parts in per_side.items()}


def load_committed() -> dict[str, Any] | None:
    if not COMMITTED.exists():
        return None
    committed: dict[str, Any] = json.loads(COMMITTED.read_text())
    return committed


def record(figures: dict[str, float], pages: int) -> None:
    body = {
        "sdk_per_page": round(figures["sdk"]),
        "hand_per_page": round(figures["hand"]),
        "ratio": round(figures["sdk"] / figures["hand"], 4),
        "pages_per_stretch": pages,
        "hash_seed": HASH_SEED,
        "versions": versions(),
        "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    COMMITTED.write_text(json.dumps(body, indent=1) + "\n")
    print(f"recorded the figures in {COMMITTED.name}")


def report(figures: dict[str, float], committed: dict[str, Any] | None, path: str | None) -> None:
    sdk, hand = figures["sdk"], figures["hand"]
    ratio = sdk / hand
    rows: list[list[object]] = [
        ["SDK `followups.list(limit=100)`", f"{sdk:,.0f}"],
        ["hand-written aiohttp + msgspec", f"{hand:,.0f}"],
        ["SDK over hand, per page", f"{sdk - hand:,.0f}"],
        ["SDK / hand", f"{ratio:.3f}x"],
    ]
    if committed is not None:
        rows[0].append(f"{committed['sdk_per_page']:,}")
        rows[1].append(f"{committed['hand_per_page']:,}")
        rows[2].append(f"{committed['sdk_per_page'] - committed['hand_per_page']:,}")
        rows[3].append(f"{committed['ratio']:.3f}x")
    headers = ["instructions per page (callgrind Ir)", "this run"]
    if committed is not None:
        headers.append(f"committed ({committed['recorded']})")
    print(table(headers, rows))
    now = versions()
    print(f"\nthis run: {', '.join(f'{k} {v}' for k, v in now.items())}")
    if committed is not None:
        then = committed["versions"]
        print(f"committed: {', '.join(f'{k} {v}' for k, v in then.items())}")
        if then != now:
            print("(versions differ: the counts are not comparable until recorded again)")
    results: list[dict[str, object]] = []
    if committed is not None:
        grew_sdk = sdk / committed["sdk_per_page"]
        grew_ratio = ratio / committed["ratio"]
        results = [
            _row("SDK instructions/page vs committed", grew_sdk, GROWTH),
            _row("SDK vs hand-written, instructions/page", ratio, committed["ratio"] * GROWTH),
        ]
        for name, grew in (("SDK instructions/page", grew_sdk), ("SDK / hand", grew_ratio)):
            mark = "GREW more than 5%" if grew > GROWTH else "within 5%"
            print(f"- {name}: {grew:.3f}x the committed figure: {mark}")
    else:
        results = [_row("SDK vs hand-written, instructions/page", ratio, None)]
        print(f"- no {COMMITTED.name}: nothing to guard against (--record writes it)")
    write_json(path, results)


def _row(metric: str, ratio: float, goal: float | None) -> dict[str, object]:
    rounded = None if goal is None else round(goal, 3)
    return {
        "benchmark": "pipeline_instructions",
        "metric": metric,
        "ratio": round(ratio, 3),
        "goal": rounded,
        "better": "lower",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=40, help="pages per stretch (40)")
    parser.add_argument("--json", help="write the ratios here")
    parser.add_argument("--record", action="store_true", help=f"write {COMMITTED.name}")
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child[0], args.child[1], args.pages))
        return
    if shutil.which("valgrind") is None:
        print("valgrind not found: no instruction counts (apt-get install valgrind)")
        write_json(args.json, [])
        return
    figures = asyncio.run(count(args.pages))
    print(
        f"sequential pages of 100, {args.pages} a stretch, stretches {'/'.join(STRETCHES)}; "
        f"asyncio loop, PYTHONHASHSEED={HASH_SEED}, sandbox in its own process\n"
    )
    if args.record:
        record(figures, args.pages)
    report(figures, load_committed(), args.json)


if __name__ == "__main__":
    main()
