"""Incremental daily sync: fetch only the days not synced yet, remembering the last one.

Each run asks for the followups dated from the day after the last synced day up to
yesterday (a day still under way is fetched again tomorrow), appends them to a JSONL file,
and records the last day in a small state file.

    python examples/daily_sync.py followups-daily.jsonl --since 2024-06-01 --until 2024-06-30
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

import msgspec
from _sandbox_or_env import connect


async def main(out: Path, since: date, until: date) -> None:
    state_path = out.with_name(out.name + ".state.json")
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    first = date.fromisoformat(state["last_day"]) + timedelta(days=1) if state else since
    if first > until:
        print(f"up to date (last synced day {state['last_day']})")
        return
    encoder = msgspec.json.Encoder()
    async with connect() as client:
        walk = client.followups.iterate(date_from=first, date_to=until)
        count = 0
        with open(out, "ab") as handle:
            async for followup in walk:
                handle.write(encoder.encode(followup) + b"\n")
                count += 1
    state_path.write_text(json.dumps({"last_day": until.isoformat()}))
    print(f"synced {count} followups dated {first} .. {until} into {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--since", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument(
        "--until", type=date.fromisoformat, default=date.today() - timedelta(days=1)
    )
    args = parser.parse_args()
    asyncio.run(main(args.out, args.since, args.until))
