"""``getbill log`` on the outbox: the run's outbox and its results file agree after a kill
between them, a results file written before the outbox existed is settled by ``call_id``, and
a leftover outbox is not silently reused. The real ``getbill`` command runs in a subprocess
against a sandbox on loopback."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from getbill_async import FollowupCreate, GetBillClient
from getbill_async.sandbox import Sandbox
from tests.test_log_input import csv_calls, log
from tests.test_long_jobs import finish, settle_server, start_log, wait_for_attempts, write_calls

pytestmark = pytest.mark.timeout(60)


def statuses(results: Path) -> list[tuple[int, str]]:
    lines = [msgspec.json.decode(x) for x in results.read_bytes().splitlines()[1:]]
    return [(x["line"], x["status"]) for x in lines if x["status"] != "attempt"]


async def test_outcomes_a_kill_kept_from_the_results_file_are_written_on_resume(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20) as sb:
        debt = sb.debt_ids()[0]
        calls = csv_calls(tmp_path / "calls.csv", debt, ["a1", "a2", "a3"])
        results = tmp_path / "r.jsonl"
        code, out, err = await log(sb, calls, results)
        assert code == 0 and "created 3" in out, err
        assert (tmp_path / "r.jsonl.outbox").exists()
        # As if killed after the outbox recorded the outcomes, before the results file did.
        results.write_bytes(results.read_bytes().splitlines(keepends=True)[0])
        before = sb.stats.requests
        code, out, err = await log(sb, calls, results, "--resume")
        assert code == 0 and "already done 3" in out and "created 0" in out, err
        assert sb.stats.requests == before  # nothing sent, nothing looked up
        assert statuses(results) == [(2, "created"), (3, "created"), (4, "created")]
        assert set(sb.created_per_call_id().values()) == {1}


async def test_a_results_file_from_before_the_outbox_is_settled_by_call_id(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20) as sb:
        debt = sb.debt_ids()[0]
        calls = csv_calls(tmp_path / "calls.csv", debt, ["c1", "c2"])
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            await client.followups.create(FollowupCreate(debt_id=debt, type="call", call_id="c1"))
        old = tmp_path / "old.jsonl"  # an attempt whose create reached the server, no outcome
        old.write_bytes(
            b'{"line":2,"status":"attempt","call_id":"c1","debt_id":"%s"}\n' % debt.encode()
        )
        code, out, err = await log(sb, calls, old, "--resume")
        assert code == 0 and "found by call_id 1" in out and "created 1" in out, err
        assert sb.created_per_call_id() == {"c1": 1, "c2": 1}


async def test_a_leftover_outbox_needs_resume_and_a_foreign_one_is_refused(
    tmp_path: Path,
) -> None:
    calls = csv_calls(tmp_path / "calls.csv", "d1", ["c1"])
    results = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.outbox").write_bytes(b"")
    code, _, err = await log(None, calls, results)
    assert code == 2 and f"{results}.outbox exists (the outbox of an earlier run)" in err
    assert not results.exists()
    with sqlite3.connect(tmp_path / "r.jsonl.outbox") as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    code, _, err = await log(None, calls, results, "--resume")
    assert code != 0 and "is not an outbox database" in err and "Traceback" not in err


async def test_a_run_resumed_as_another_account_is_refused_before_any_write(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20) as sb:
        calls = csv_calls(tmp_path / "calls.csv", sb.debt_ids()[0], ["n1", "n2"])
        results = tmp_path / "r.jsonl"
        code, out, err = await log(sb, calls, results, "--account", "sales")
        assert code == 0 and "created 2" in out, err
        before = sb.stats.requests
        code, _, err = await log(sb, calls, results, "--resume", "--account", "support")
        assert code != 0 and "account sales" in err and "Traceback" not in err
        code, out, err = await log(sb, calls, results, "--resume", "--account", "sales")
        assert code == 0 and "already done 2" in out, err
        assert sb.stats.requests == before


async def test_resend_ambiguous_after_a_kill_sends_the_rows_held_in_flight(
    tmp_path: Path,
) -> None:
    latency = 0.6
    async with Sandbox(followups=20, latency=latency) as sb:
        calls, results = tmp_path / "calls.jsonl", tmp_path / "results.jsonl"
        write_calls(calls, sb.debt_ids()[:2], 6, call_ids=False)
        proc = await start_log(sb, calls, results, "--concurrency", "3")
        await wait_for_attempts(results, 3)
        proc.kill()
        await finish(proc)
        await settle_server(sb, latency)
        code, out, err = await finish(
            await start_log(sb, calls, results, "--resume", "--resend-ambiguous")
        )
        assert code == 0 and "held back" not in out and "created 6" in out, (out, err)
        lines = [msgspec.json.decode(x) for x in results.read_bytes().splitlines()[1:]]
        attempts = Counter(x["line"] for x in lines if x["status"] == "attempt")
        assert sorted(attempts.values()) == [1, 1, 1, 2, 2, 2]  # the three in flight, again
