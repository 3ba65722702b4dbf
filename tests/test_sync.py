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
from typing import Literal

import pytest
from aiohttp import web

from getbill_async import GetBillClient, ValidationError
from getbill_async.export import ExportError
from getbill_async.sandbox import Sandbox
from tests.loopback import serve

pq = pytest.importorskip("pyarrow.parquet")


def tree(root: Path) -> dict[str, bytes]:
    """Every partition file under ``root`` and its bytes (pyarrow writes equal tables alike)."""
    return {
        f"{path.parent.name}/{path.name}": path.read_bytes()
        for path in sorted(root.glob("date=*/part.*"))
    }


def same_tree(a: Path, b: Path) -> bool:
    left = tree(a)
    return bool(left) and left == tree(b)


async def test_a_second_sync_fetches_only_the_lag_window_and_equals_a_full_one(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    # JSONL partitions: tests/test_examples.py (examples/daily_sync.py) counts their requests.
    fmt: Literal["parquet"] = "parquet"
    out, state = tmp_path / "out", tmp_path / "sync.json"
    first = await client.followups.sync(out, state=state, format=fmt, today="2024-06-10")
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
    second = await client.followups.sync(out, state=state, format=fmt, today="2024-06-12")
    window = sandbox.followup_ids(date_from="2024-06-07")
    pages = max(1, math.ceil(len(window) / 100))
    print(f"second sync ({fmt}): {sandbox.stats.requests - before} requests for {len(window)} ids")
    assert (second.full, second.date_from, second.items) == (False, "2024-06-07", len(window))
    assert sandbox.stats.requests - before == second.requests == pages

    fresh = tmp_path / "fresh"
    await client.followups.sync(fresh, state=tmp_path / "f.json", format=fmt, today="2024-06-12")
    assert same_tree(out, fresh)


async def test_sync_refuses_a_state_of_another_format(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    state.write_text('{"version": 1, "format": "jsonl", "synced_through": "2024-06-01"}')
    with pytest.raises(ExportError, match="are jsonl, not parquet: use --format jsonl"):
        await client.followups.sync(tmp_path / "o", state=state, format="parquet")
    with pytest.raises(ValidationError, match="lag_days"):
        await client.followups.sync(tmp_path / "o", state=state, format="jsonl", lag_days=-1)
    assert sandbox.stats.requests == 0


@pytest.mark.timeout(90)
async def test_sync_killed_at_random_points_ends_consistent(tmp_path: Path) -> None:
    async with Sandbox(followups=2000, seed=9, latency=0.02) as sb:
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        out, state = tmp_path / "out", tmp_path / "sync.json"
        args = [sys.executable, "-m", "getbill_async.cli", "sync", "--out", str(out)]
        args += ["--state", str(state), "--today", "2024-06-10", "--no-progress"]
        draw = random.Random(4)
        kills = 0
        for _ in range(5):
            proc = await asyncio.create_subprocess_exec(
                *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(draw.uniform(0.5, 1.5))  # in a fetch, a split or a move
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
        assert kills >= 2 and same_tree(out, tmp_path / "fresh")
        rows = sum(pq.read_table(p).num_rows for p in out.glob("date=*/part.parquet"))
        assert rows == 2000


def bad_date_app(items: list[dict[str, object]]) -> web.Application:
    """``GET /v1/followups``: ``items`` on pages of 100, whatever the filters ask."""

    async def handle(request: web.Request) -> web.Response:
        page, limit = int(request.query["page"]), int(request.query["limit"])
        data = items[(page - 1) * limit : page * limit]
        pages = -(-len(items) // limit)
        pagination = {"total": len(items), "page": page, "limit": limit, "pages": pages}
        return web.json_response({"error": False, "data": data, "pagination": pagination})

    app = web.Application()
    app.router.add_get("/v1/followups", handle)
    return app


@pytest.mark.timeout(60)
async def test_one_item_with_a_bad_date_is_kept_aside_and_the_sync_goes_on(
    tmp_path: Path,
) -> None:
    items: list[dict[str, object]] = [
        {
            "id": f"f{i}",
            "debt_id": "d",
            "status": "sent",
            "type": "call",
            "call_date": f"2024-01-{10 + i % 5}T10:30:00+00:00",
        }
        for i in range(150)
    ]
    items[70]["call_date"] = "2024-01-22 10:30"
    out, state = tmp_path / "out", tmp_path / "sync.json"
    async with serve(bad_date_app(items)) as url:
        env = {**os.environ, "GETBILL_TOKEN": "t0k3n", "GETBILL_BASE_URL": f"{url}/v1"}
        args = ["-m", "getbill_async.cli", "sync", "--out", str(out), "--state", str(state)]
        args += ["--format", "jsonl", "--no-progress"]
        for today in ("2024-01-20", "2024-01-21"):  # a full run, then a later one
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                "--today",
                today,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await proc.communicate()
            assert proc.returncode == 0, stderr.decode()
            assert b"1 with dates that do not decode kept in _rejected.jsonl" in stdout
    rejected = (out / "_rejected.jsonl").read_bytes().splitlines()
    assert len(rejected) == 1 and b'"call_date": "2024-01-22 10:30"' in rejected[0]
    filed = [
        line for part in out.glob("date=*/part.jsonl") for line in part.read_bytes().splitlines()
    ]
    assert len(filed) == 149 and not (out / ".sync").exists()


async def test_an_item_whose_date_is_mended_leaves_the_rejects(tmp_path: Path) -> None:
    items: list[dict[str, object]] = [
        {
            "id": f"f{i}",
            "debt_id": "d",
            "status": "sent",
            "type": "call",
            "call_date": "2024-01-10T10:30:00+00:00",
        }
        for i in range(3)
    ]
    items[1]["call_date"] = "yesterday"
    out, state = tmp_path / "out", tmp_path / "sync.json"
    async with serve(bad_date_app(items)) as url, GetBillClient("t", base_url=f"{url}/v1") as c:
        first = await c.followups.sync(out, state=state, format="jsonl", today="2024-01-11")
        assert first.rejected == 1 and (out / "_rejected.jsonl").exists()
        items[1]["call_date"] = "2024-01-10T11:00:00+00:00"
        second = await c.followups.sync(out, state=state, format="jsonl", today="2024-01-12")
    assert second.rejected == 0 and not (out / "_rejected.jsonl").exists()
    assert len((out / "date=2024-01-10" / "part.jsonl").read_bytes().splitlines()) == 3


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_a_date_whose_utc_day_leaves_the_calendar_is_kept_aside_not_a_crash(
    tmp_path: Path, fmt: Literal["jsonl", "parquet"]
) -> None:
    # A lying server: well-formed datetimes whose UTC instant is in year 0 or year 10000.
    def item(i: int, **dates: str) -> dict[str, object]:
        return {"id": f"f{i}", "debt_id": "d", "status": "sent", "type": "call", **dates}

    items = [
        item(0, call_date="2024-01-10T10:30:00+00:00"),
        item(1, call_date="0001-01-01T00:00:00.0+01:00"),
        item(2, scheduled_at="9999-12-31T23:30:00-01:00"),
        item(3, call_date="0001-01-01T00:30:00-01:00"),  # 01:30 UTC on day one: filed
        item(4, call_date="9999-12-31T23:59:59.999999+00:00"),  # the last instant: filed
    ]
    out, state = tmp_path / "out", tmp_path / "sync.json"
    async with serve(bad_date_app(items)) as url, GetBillClient("t", base_url=f"{url}/v1") as c:
        report = await c.followups.sync(out, state=state, format=fmt, today="2024-01-11")
    assert report.rejected == 2
    rejected = (out / "_rejected.jsonl").read_bytes().splitlines()
    assert sorted(line.split(b'"')[3] for line in rejected) == [b"f1", b"f2"]
    days = sorted(p.name for p in out.glob("date=*"))
    assert days == ["date=0001-01-01", "date=2024-01-10", "date=9999-12-31"]
