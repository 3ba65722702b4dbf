"""Bulk logging over hours: Ctrl-C, SIGTERM, kill -9 and resume, with no create lost or doubled.

These run the real ``getbill log`` in a subprocess against a sandbox on loopback (which, like
the real API, finishes a create whose caller hung up) and send it real signals.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from getbill_async import (
    AmbiguousWriteError,
    FollowupCreate,
    GetBillClient,
    WriteNotSentError,
)
from getbill_async.bulk import CreateBatch
from getbill_async.models import Followup
from getbill_async.sandbox import Sandbox


def write_calls(path: Path, debts: list[str], count: int, *, call_ids: bool = True) -> None:
    rows = [
        {"debt_id": debts[i % len(debts)], "type": "call", "summary": f"row {i}"}
        | ({"call_id": f"chaos-{i}"} if call_ids else {})
        for i in range(count)
    ]
    path.write_bytes(b"\n".join(msgspec.json.encode(r) for r in rows) + b"\n")


async def start_log(
    sb: Sandbox, calls: Path, results: Path, *extra: str
) -> asyncio.subprocess.Process:
    env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    env.pop("GETBILL_CLIENT_ID", None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "getbill_async.cli",
        "log",
        "--in",
        str(calls),
        "--results",
        str(results),
        "--no-progress",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_for_attempts(results: Path, count: int, timeout: float = 15) -> None:
    """Until the journal holds ``count`` attempts: the run is past start-up and sending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if results.exists() and results.read_bytes().count(b'"attempt"') >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {count} attempts in {results} within {timeout}s")


async def settle_server(sb: Sandbox, latency: float) -> None:
    await asyncio.sleep(latency + 0.2)  # creates whose caller was killed finish on the server


# Ctrl-C, SIGTERM and kill -9 in the middle of bulk logging --------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL", "SIGINT twice"])
async def test_a_signal_mid_run_then_resume_creates_each_row_once(how: str, tmp_path: Path) -> None:
    latency = 0.6
    async with Sandbox(followups=20, latency=latency) as sb:
        calls, results = tmp_path / "calls.jsonl", tmp_path / "results.jsonl"
        write_calls(calls, sb.debt_ids()[:4], 24)
        proc = await start_log(sb, calls, results, "--concurrency", "8", "--grace", "10")
        await wait_for_attempts(results, 8)
        await asyncio.sleep(0.2)  # eight creates in flight on the server
        if how == "SIGKILL":
            proc.kill()
        else:
            proc.send_signal(getattr(signal, how.split()[0]))
            if how == "SIGINT twice":
                await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGINT)
        code, out, err = await finish(proc)
        if how == "SIGKILL":
            assert code == -signal.SIGKILL
        else:
            assert code == (143 if how == "SIGTERM" else 130), err
            assert "stopped by" in err and "rows not started" in err
            if how == "SIGINT twice":
                assert "cut off in flight" in err
        await settle_server(sb, latency)
        made_before = sum(sb.created_per_call_id().values())
        assert 0 < made_before < 24

        code, out, err = await finish(
            await start_log(sb, calls, results, "--resume", "--concurrency", "8")
        )
        assert code == 0, err
        counts = sb.created_per_call_id()
        assert len(counts) == 24 and set(counts.values()) == {1}, counts
        if how in ("SIGKILL", "SIGINT twice"):
            assert "found by call_id" in out  # the creates in flight were settled, not resent


@pytest.mark.timeout(60)
async def test_an_unsettled_row_without_call_id_is_held_never_resent_silently(
    tmp_path: Path,
) -> None:
    latency = 0.6
    async with Sandbox(followups=20, latency=latency) as sb:
        calls, results = tmp_path / "calls.jsonl", tmp_path / "results.jsonl"
        write_calls(calls, sb.debt_ids()[:2], 6, call_ids=False)
        proc = await start_log(sb, calls, results, "--concurrency", "3")
        await wait_for_attempts(results, 3)
        await asyncio.sleep(0.2)
        proc.kill()
        await finish(proc)
        await settle_server(sb, latency)
        before = sb.stats.requests
        code, out, err = await finish(await start_log(sb, calls, results, "--resume"))
        assert "held back as ambiguous 3" in out and "--resend-ambiguous" in out
        assert code == 0
        lines = [msgspec.json.decode(x) for x in results.read_bytes().splitlines()]
        resent = [x for x in lines if x.get("status") == "attempt" and x["line"] in (1, 2, 3)]
        assert len(resent) == 3, "the three held rows were attempted once only"
        assert sb.stats.requests - before == 3  # only the three rows never tried were sent


@pytest.mark.timeout(120)
async def test_chaos_kill_9_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rounds, rows, latency = 20, 160, 0.4
    rng = random.Random(20261122)
    async with Sandbox(followups=20, latency=latency) as sb:
        calls, results = tmp_path / "calls.jsonl", tmp_path / "results.jsonl"
        write_calls(calls, sb.debt_ids()[:5], rows)
        kills = 0
        started = time.monotonic()
        ran = 0
        for _ in range(rounds):
            ran += 1
            extra = ["--resume"] if results.exists() else []
            proc = await start_log(sb, calls, results, "--concurrency", "8", *extra)
            await asyncio.sleep(rng.uniform(0.3, 1.2))  # start-up included: any point
            if proc.returncode is None:
                proc.kill()
                kills += 1
            await finish(proc)
            if time.monotonic() - started > 60:
                break
        await settle_server(sb, latency)
        code, out, err = await finish(
            await start_log(sb, calls, results, "--resume", "--concurrency", "8")
        )
        assert code == 0, err
        counts = sb.created_per_call_id()
        lost = rows - len(counts)
        doubled = sum(n - 1 for n in counts.values())
        print(f"log chaos: {ran} rounds, {kills} kills, {lost} lost, {doubled} doubled")
        assert kills >= 15  # a round that starts with little left may finish first
        assert (lost, doubled) == (0, 0), counts


# create_many reports every create it started ----------------------------------------------------


@pytest.fixture
async def slow_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(followups=20, latency=0.5) as sb:
        yield sb


async def test_closing_create_many_reports_each_create_in_flight(slow_sandbox: Sandbox) -> None:
    sb = slow_sandbox
    debt = sb.debt_ids()[0]
    items = [FollowupCreate(debt_id=debt, type="sms", summary=str(i)) for i in range(6)]
    async with GetBillClient(sb.token, base_url=sb.base_url, connections=2) as client:
        await client.followups.create(items[0])  # past the budget's cold start: 2 at once
        batch = client.followups.create_many(items, concurrency=6)
        async with batch:
            next_result = asyncio.ensure_future(batch.__anext__())
            await asyncio.sleep(0.2)  # two creates sent, four waiting for a connection
            next_result.cancel()
    await asyncio.sleep(0.5)  # the server finishes what it received
    kinds = [type(r.error).__name__ for r in batch.unreported]
    assert sorted(r.index for r in batch.unreported) == list(range(6))
    assert kinds.count("AmbiguousWriteError") == 2 and kinds.count("WriteNotSentError") == 4
    assert all(
        isinstance(r.error, (AmbiguousWriteError, WriteNotSentError)) for r in batch.unreported
    )
    assert sb.stats.requests == 1 + 2  # exactly the two reported as maybe done


async def test_any_exception_of_one_create_is_that_items_result(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    debt = sandbox.debt_ids()[0]

    async def create(item: FollowupCreate) -> Followup:
        if item.summary == "3":
            raise RuntimeError("a bug in a callback")
        return await client.followups.create(item)

    items = (FollowupCreate(debt_id=debt, type="sms", summary=str(i)) for i in range(8))
    async with CreateBatch(create, items, concurrency=3) as batch:
        results = [r async for r in batch]
    assert sorted(r.index for r in results) == list(range(8))
    failed = [r for r in results if not r.ok]
    assert [r.index for r in failed] == [3]
    assert isinstance(failed[0].error, WriteNotSentError) and "RuntimeError" in str(failed[0].error)


async def test_a_failing_input_still_reports_what_was_in_flight(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    debt = sandbox.debt_ids()[0]

    def items() -> Iterator[FollowupCreate]:
        for i in range(4):
            yield FollowupCreate(debt_id=debt, type="sms", call_id=f"in-{i}")
        raise OSError("the input file went away")

    seen: list[int] = []
    with pytest.raises(OSError, match="went away"):
        async with client.followups.create_many(items(), concurrency=8) as batch:
            async for result in batch:
                seen.append(result.index)
    assert sorted(seen) == [0, 1, 2, 3] and len(sandbox.created_per_call_id()) == 4


async def test_bom_in_a_csv_header_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    from getbill_async.cli._log_rows import read_rows

    calls = tmp_path / "excel.csv"
    calls.write_bytes("\ufeffdebt_id,type,call_id\nd1,call,x1\n".encode())
    [row] = read_rows(calls)
    assert row.problem is None and row.item is not None and row.item.debt_id == "d1"


@pytest.mark.timeout(60)
async def test_an_output_in_a_missing_folder_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    async with Sandbox(followups=20) as sb:
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        out = tmp_path / "missing" / "followups.jsonl"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "getbill_async.cli", "export", "--out", str(out),
            "--no-progress", env=env, stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        code, _, err = await finish(proc)
    assert code == 1 and "Traceback" not in err
    assert err.startswith("getbill export: ") and "No such file or directory" in err
