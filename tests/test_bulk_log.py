"""create_many and ``getbill log``: bounded, resumable, every row accounted for."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from getbill_async import FollowupCreate, GetBillClient, ValidationError
from getbill_async.sandbox import Sandbox


async def test_create_many_reads_input_lazily_and_reports_every_item(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    debt = sandbox.debt_ids()[0]
    pulled = 0

    def items() -> Iterator[FollowupCreate | dict[str, object]]:
        nonlocal pulled
        for i in range(60):
            pulled += 1
            if i == 13:
                yield {"debt_id": debt, "type": "fax"}  # bad: reported, not raised
            else:
                yield FollowupCreate(debt_id=debt, type="sms", call_id=f"sms-{i}")

    seen: list[int] = []
    async for result in client.followups.create_many(items(), concurrency=4):
        assert pulled - len(seen) <= 4 + 1, "input is read only as slots free up"
        seen.append(result.index)
        if result.index == 13:
            assert isinstance(result.error, ValidationError) and result.followup is None
        else:
            assert result.ok and result.followup is not None
            assert result.followup.call_id == f"sms-{result.index}"
    assert sorted(seen) == list(range(60))
    assert len(sandbox.created_per_call_id()) == 59


async def test_create_many_takes_an_async_iterable(client: GetBillClient, sandbox: Sandbox) -> None:
    debt = sandbox.debt_ids()[1]

    async def items() -> AsyncIterator[FollowupCreate]:
        for i in range(5):
            await asyncio.sleep(0)
            yield FollowupCreate(debt_id=debt, type="email", summary=str(i))

    results = [r async for r in client.followups.create_many(items(), concurrency=2)]
    assert sorted(r.followup.summary or "" for r in results if r.followup) == list("01234")


def run_cli(sb: Sandbox, *args: str) -> tuple[int, str, str]:
    import subprocess

    env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    done = subprocess.run(
        [sys.executable, "-m", "getbill_async.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def stop_after_creates(sb: Sandbox, calls: Path, results: Path, count: int) -> tuple[int, str, str]:
    """Run ``getbill log`` with a budget of ``count`` writes and SIGINT it once they are done."""
    import subprocess
    import time

    env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    argv = ["log", "--in", str(calls), "--results", str(results), "--no-progress"]
    with subprocess.Popen(
        [sys.executable, "-m", "getbill_async.cli", *argv, "--writes", str(count), "--grace", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if results.exists() and results.read_bytes().count(b'"created"') >= count:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@pytest.mark.timeout(90)
async def test_log_cli_validates_everything_first(tmp_path: Path) -> None:
    async with Sandbox(followups=50) as sb:
        debt = sb.debt_ids()[0]
        calls = tmp_path / "calls.csv"
        calls.write_text(
            "debt_id,type,status,call_date,duration_ms,call_id\n"
            f"{debt},call,deal_found,2024-06-01T10:00:00+00:00,1000,c1\n"
            f"{debt},fax,deal_found,,,c2\n"
            f"{debt},call,won,2024-06-01T10:00:00+00:00,10,c3\n"
            f"{debt},call,sent,June 1st,,c4\n"
            f"{debt},call,sent,,-3,c5\n"
        )
        results = tmp_path / "results.jsonl"
        code, out, err = await asyncio.to_thread(
            run_cli, sb, "log", "--in", str(calls), "--results", str(results)
        )
        assert code == 2
        for line, field in ((3, "type"), (4, "status"), (5, "call_date"), (6, "duration_ms")):
            assert f"calls.csv:{line}: {field}:" in err
        assert "4 invalid row(s) of 5; nothing sent" in err
        assert sb.stats.requests == 0 and not results.exists()
        code, out, err = await asyncio.to_thread(
            run_cli, sb, "log", "--in", str(calls), "--results", str(results), "--skip-invalid"
        )
        assert code == 0 and "created 1" in out and "invalid 4" in out
        assert list(sb.created_per_call_id()) == ["c1"]


@pytest.mark.timeout(90)
async def test_log_cli_resumes_without_creating_twice(tmp_path: Path) -> None:
    async with Sandbox(followups=50) as sb:
        debts = sb.debt_ids()
        calls = tmp_path / "calls.jsonl"
        rows = [{"debt_id": debts[i % 3], "type": "call", "call_id": f"k{i}"} for i in range(12)]
        calls.write_bytes(b"\n".join(msgspec.json.encode(r) for r in rows) + b"\n")
        results = tmp_path / "results.jsonl"
        # An earlier run got through the first five rows before it was stopped: a budget of
        # five writes holds the sixth back until Ctrl-C. (The results file is this input's
        # alone, so the earlier run is on the same file, not on a shorter one.)
        code, out, _ = await asyncio.to_thread(stop_after_creates, sb, calls, results, 5)
        assert code == 130 and "created 5" in out
        code, out, err = await asyncio.to_thread(
            run_cli, sb, "log", "--in", str(calls), "--results", str(results)
        )
        assert code == 2 and "pass --resume" in err
        code, out, _ = await asyncio.to_thread(
            run_cli, sb, "log", "--in", str(calls), "--results", str(results), "--resume"
        )
        assert code == 0 and "created 7" in out and "already done 5" in out
        counts = sb.created_per_call_id()
        assert len(counts) == 12 and set(counts.values()) == {1}
        lines = [msgspec.json.decode(x) for x in results.read_bytes().splitlines()]
        assert sorted(x["line"] for x in lines if x.get("status") == "created") == list(
            range(1, 13)
        )
