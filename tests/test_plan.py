"""Plans: how long an export or a bulk log will take, for one read, before it starts."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from getbill_async import GetBillClient, RateLimit, ValidationError
from getbill_async.budget import BudgetStatus, ClassStatus
from getbill_async.export import Probe, plan_export
from getbill_async.export._plan import simulate
from getbill_async.sandbox import Sandbox
from tests.test_bulk_log import run_cli


async def test_plan_export_costs_one_read_and_counts_the_pages(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    plan = await client.followups.plan_export(status="delivered")
    total = len(sandbox.followup_ids(status="delivered"))
    assert sandbox.stats.requests == 1, "one limit=1 probe"
    assert (plan.items, plan.requests) == (total, math.ceil(total / 100))
    assert plan.reads_left == 999 and not plan.budget_bound
    assert 0 < plan.seconds < 5


async def test_plan_export_knows_when_the_budget_binds(tmp_path: Path) -> None:
    async with Sandbox(followups=1500, seed=3, reads=6, window=30.0) as sb:
        rate = RateLimit(reads=6, window=30.0)
        async with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            plan = await client.followups.plan_export()
    # 15 pages, 5 reads left after the probe: two more windows of 6 are needed.
    assert (plan.requests, plan.reads_left, plan.budget_bound) == (15, 5, True)
    assert 59 < plan.seconds < 62


async def test_a_bad_filter_is_refused_before_the_probe(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    with pytest.raises(ValidationError, match="status: invalid value 'lost'"):
        await client.followups.plan_export(status="lost")
    with pytest.raises(ValidationError, match="concurrency"):
        await client.followups.plan_export(concurrency=0)
    assert sandbox.stats.requests == 0


def test_the_simulation_fills_windows() -> None:
    fresh = ClassStatus(
        limit=10, window=60.0, used=0, in_flight=0, remaining=10, next_slot_in=0.0, blocked_for=0
    )
    assert simulate(10, fresh, 4, 1.0, None) == 4.0  # 1 alone, then 9 four at a time
    assert simulate(25, fresh, 100, 1.0, None) == 122.0  # windows 0, 60 and 120
    busy = ClassStatus(
        limit=10, window=60.0, used=5, in_flight=0, remaining=5, next_slot_in=0.0, blocked_for=0
    )
    # Five slots now, then the five used ones free spread over the window (10, 20, ... 50 s).
    assert simulate(10, busy, 100, 1.0, None) == 51.0


@pytest.mark.timeout(10)
def test_a_plan_of_a_huge_total_takes_no_time() -> None:
    reads = ClassStatus(
        limit=1000,
        window=3600.0,
        used=0,
        in_flight=0,
        remaining=1000,
        next_slot_in=0.0,
        blocked_for=0,
    )
    status = BudgetStatus(reads=reads, writes=reads)
    cpu = time.process_time()
    for total in (10**9, 10**12):
        probe = Probe(total=total, rtt=0.05, sent_at=time.monotonic(), status=status)
        plan = plan_export(probe, limit=100, concurrency=4)
        assert plan.requests == total // 100 and plan.budget_bound
        # 1,000 reads an hour: the last read goes in the window of its number, at the pace
        # the network allows within that window.
        windows = (plan.requests - 1) // 1000 * 3600.0
        assert windows <= plan.seconds <= windows + 60.0
    assert time.process_time() - cpu < 0.5, "the event loop is not held"


async def test_cli_export_plan_prints_and_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    out = tmp_path / "f.jsonl"
    args = ("export", "--out", str(out), "--plan", "--type", "sms")
    code, stdout, stderr = await asyncio.to_thread(run_cli, sandbox, *args)
    assert code == 0, stderr
    sms = len(sandbox.followup_ids(type="sms"))
    assert f"{sms:,} items in {math.ceil(sms / 100)} requests" in stdout
    assert "network-bound" in stdout and list(tmp_path.iterdir()) == []
    assert sandbox.stats.requests == 1


async def test_cli_log_plan_checks_every_row_and_sends_no_write(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    debt = sandbox.debt_ids()[0]
    rows = [f"{debt},call,call-{i},2024-01-0{1 + i % 9}T10:00:00+00:00" for i in range(30)]
    rows[7] = f"{debt},fax,call-7,2024-01-01T10:00:00+00:00"
    source = tmp_path / "calls.csv"
    source.write_text("debt_id,type,call_id,call_date\n" + "\n".join(rows) + "\n")
    code, stdout, stderr = await asyncio.to_thread(
        run_cli, sandbox, "log", "--plan", "--in", str(source)
    )
    assert code == 2 and "calls.csv:9: type: invalid value 'fax'" in stderr
    assert "30 rows, 1 invalid, 29 writes needed" in stdout
    assert "log plan: 29 items in 29 requests; 500 left" in stdout
    args = ("log", "--plan", "--skip-invalid", "--in", str(source))
    code, stdout, _ = await asyncio.to_thread(run_cli, sandbox, *args)
    assert code == 0 and "(once the invalid rows are fixed)" not in stdout
    assert sandbox.stats.requests == 2 and sandbox.created_per_call_id() == {}
