"""Incremental sync: day partitions, a second run that fetches only the lag window, kills."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from getbill_async import GetBillClient, ValidationError
from getbill_async.sandbox import Sandbox

pq = pytest.importorskip("pyarrow.parquet")


def tree(root: Path) -> dict[str, bytes | object]:
    """Every partition file under ``root``: its bytes (JSONL) or its table (Parquet)."""
    found: dict[str, bytes | object] = {}
    for path in sorted(root.glob("date=*/part.*")):
        key = f"{path.parent.name}/{path.name}"
        found[key] = pq.read_table(path) if path.suffix == ".parquet" else path.read_bytes()
    return found


def same_tree(a: Path, b: Path) -> bool:
    left, right = tree(a), tree(b)
    if left.keys() != right.keys():
        return False
    return all(
        x == y if isinstance(x, bytes) else x.equals(y)  # type: ignore[attr-defined]
        for x, y in zip(left.values(), right.values(), strict=True)
    )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
async def test_a_second_sync_fetches_only_the_lag_window_and_equals_a_full_one(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path, fmt: str
) -> None:
    out, state = tmp_path / "out", tmp_path / "sync.json"
    first = await client.followups.sync(out, state=state, format=fmt, today="2024-06-10")  # type: ignore[arg-type]
    assert first.full and first.items == 1000 and first.requests == 10
    assert (out / "date=2024-06-09").is_dir() and not (out / ".sync").exists()
    dated = set(sandbox.followup_ids(date_from="1970-01-01"))
    undated = [i for i in sandbox.followup_ids() if i not in dated]
    if undated:
        assert (out / "date=__HIVE_DEFAULT_PARTITION__").is_dir()

    # Meanwhile: new calls on new days, and statuses and dates changed inside the lag window.
    debt = sandbox.debt_ids()[0]
    for day in (9, 11, 12):
        when = datetime(2024, 6, day, 15, tzinfo=timezone.utc)
        await client.followups.create(debt_id=debt, type="call", status="sent", call_date=when)
    recent = sandbox.followup_ids(date_from="2024-06-07", date_to="2024-06-09")
    await client.followups.update(recent[0], status="deal_found", notes="paid")
    moved = datetime(2024, 6, 13, 9, tzinfo=timezone.utc)
    await client.followups.update(recent[1], call_date=moved, scheduled_at=moved)

    before = sandbox.stats.requests
    second = await client.followups.sync(out, state=state, format=fmt, today="2024-06-12")  # type: ignore[arg-type]
    window = sandbox.followup_ids(date_from="2024-06-07")
    pages = max(1, math.ceil(len(window) / 100))
    print(f"second sync ({fmt}): {sandbox.stats.requests - before} requests for {len(window)} ids")
    assert (second.full, second.date_from, second.items) == (False, "2024-06-07", len(window))
    assert sandbox.stats.requests - before == second.requests == pages

    fresh = tmp_path / "fresh"
    await client.followups.sync(fresh, state=tmp_path / "f.json", format=fmt, today="2024-06-12")  # type: ignore[arg-type]
    assert same_tree(out, fresh)


async def test_sync_refuses_a_state_of_another_format(
    client: GetBillClient, tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    await client.followups.sync(tmp_path / "o", state=state, format="jsonl", today="2024-06-01")
    with pytest.raises(Exception, match="are jsonl, not parquet"):
        await client.followups.sync(tmp_path / "o", state=state, format="parquet")
    with pytest.raises(ValidationError, match="lag_days"):
        await client.followups.sync(tmp_path / "o", state=state, format="jsonl", lag_days=-1)


@pytest.mark.timeout(90)
async def test_sync_killed_at_random_points_ends_consistent(tmp_path: Path) -> None:
    async with Sandbox(followups=3000, seed=9, latency=0.02) as sb:
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        out, state = tmp_path / "out", tmp_path / "sync.json"
        args = [sys.executable, "-m", "getbill_async.cli", "sync", "--out", str(out)]
        args += ["--state", str(state), "--today", "2024-06-10", "--no-progress"]
        draw = random.Random(4)
        kills = 0
        for _ in range(6):
            proc = await asyncio.create_subprocess_exec(
                *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(draw.uniform(0.4, 1.6))
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            await proc.communicate()
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            await client.followups.sync(
                tmp_path / "fresh", state=tmp_path / "f.json", today="2024-06-10"
            )
        assert kills >= 3 and same_tree(out, tmp_path / "fresh")
        rows = sum(pq.read_table(p).num_rows for p in out.glob("date=*/part.parquet"))
        assert rows == 3000
