"""Proof of delivery: ``Outbox.verify`` reads back what the outbox wrote, against the sandbox.

Calls are logged through an outbox, then changed behind its back on the sandbox (deleted,
created a second time with the same ``call_id``, edited), and the report must name exactly
those, within the reads its plan counted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from getbill_async import (
    DeliveryReport,
    GetBillClient,
    LocalBudget,
    NotFoundError,
    Outbox,
    RateLimit,
    ValidationError,
)
from getbill_async.cli import build_parser
from getbill_async.cli._log import LogOptions, run_log
from getbill_async.cli._log_verify import verify_log
from getbill_async.export import NullProgress
from getbill_async.outbox._cli import add_parser, run_async
from getbill_async.outbox._verify_plan import make_plan
from getbill_async.outbox._verify_types import Written
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import fast_client
from tests.redis_fixtures import RedisServer

DAYS = ("2024-03-04", "2024-03-05", "2024-03-06")


def call(debts: list[str], i: int, *, keyed: bool = True) -> dict[str, Any]:
    """The fields of call ``i``: a debt of ``debts``, one of ``DAYS``, a status."""
    fields: dict[str, Any] = {
        "debt_id": debts[i % len(debts)],
        "type": "call",
        "status": "deal_found" if i % 3 else "no_answer",
        "call_date": f"{DAYS[i % len(DAYS)]}T{9 + i % 8:02d}:{i % 60:02d}:00+00:00",
        "duration_ms": 1000 + i,
    }
    if keyed:
        fields["call_id"] = f"call-{i}"
    return fields


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An outbox store: a SQLite file, or a Redis outbox of its own name."""
    if request.param == "sqlite":
        return str(tmp_path / "outbox.db")
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def name_of(store: str) -> str:
    """The outbox's name: one of its own in Redis, the default for a file."""
    redis = store.startswith("redis")
    return "verify-" + uuid.uuid5(uuid.NAMESPACE_URL, store).hex[:8] if redis else "default"


def outbox_of(client: GetBillClient, store: str, **options: Any) -> Outbox:
    return Outbox(client, store, name=name_of(store), **options)


async def log_calls(client: GetBillClient, db: Path | str, debts: list[str], n: int) -> None:
    async with outbox_of(client, str(db), poll=0.02) as outbox:
        for i in range(n):
            await outbox.create(**call(debts, i))
        await outbox.join(timeout=60)


def by_call_id(sb: Sandbox, call_id: str) -> dict[str, Any]:
    (found,) = sb.created_followups(call_id=call_id)
    return found


def tamper(sb: Sandbox) -> tuple[set[str], set[str], set[str]]:
    """Behind the outbox's back: 3 deleted, 4 edited (2 are doubled later, over HTTP)."""
    deleted = {"call-10", "call-111", "call-212"}
    for key in deleted:
        sb.delete_followup(by_call_id(sb, key)["id"])
    changed = {"call-20", "call-121", "call-222", "call-50"}
    for key in changed:
        sb.change_followup(by_call_id(sb, key)["id"], status="cancelled")
    return deleted, {"call-30", "call-131"}, changed


def keys(findings: Any) -> set[str]:
    return {f.key for f in findings}


@pytest.mark.timeout(60)
async def test_verify_names_exactly_what_changed_behind_its_back(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    async with Sandbox(followups=5000) as sb, fast_client(sb) as client:
        debts = sb.debt_ids()[:30]
        await log_calls(client, db, debts, 300)
        deleted, doubled, changed = tamper(sb)
        for i in (30, 131):
            await client.followups.create(**call(debts, i))  # a second integration
        async with Outbox(client, db, drain=False) as outbox:
            plan = await outbox.plan_verify()
            before = sb.requests_made("read")
            report = await outbox.verify()
            spent = sb.requests_made("read") - before
        assert isinstance(report, DeliveryReport)
        assert (report.checked, report.confirmed) == (300, 291)
        assert keys(report.missing) == deleted
        assert keys(report.doubled) == doubled
        assert keys(report.diverged) == changed
        assert all(set(f.fields) == {"status"} for f in report.diverged)
        assert all(f.fields["status"][1] == "cancelled" for f in report.diverged)
        assert all(len(f.followup_ids) == 2 for f in report.doubled)
        assert report.reads == spent
        # Within the plan: each followup not on its day's list costs one look under its debt.
        assert report.reads <= plan.reads + len(report.missing)
        assert report.reads <= 300 / 5
        assert report.started_at <= report.finished_at


@pytest.mark.timeout(30)
async def test_a_keyless_create_is_verified_by_its_followup_id(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    async with Sandbox(followups=500) as sb, fast_client(sb) as client:
        debts = sb.debt_ids()[:2]
        async with Outbox(client, db, poll=0.02) as outbox:
            for i in range(3):
                await outbox.create(**call(debts, i, keyed=False))
            await outbox.join(timeout=10)
            created = [f["id"] for f in sb.created_followups()]
            sb.delete_followup(created[0])
            report = await outbox.verify()
        lanes = (await client.budget_status()).reads.lanes  # verify reads in the bulk lane
        assert (lanes["bulk"], lanes["interactive"]) == (report.reads, 0)
        assert (report.checked, report.confirmed) == (3, 2)
        assert keys(report.missing) == {created[0]}
        assert report.missing[0].followup_ids == (created[0],)


@pytest.mark.timeout(30)
async def test_bad_arguments_cost_no_read(tmp_path: Path) -> None:
    async with Sandbox(followups=50) as sb, fast_client(sb) as client:
        async with Outbox(client, tmp_path / "o.db", drain=False) as outbox:
            from datetime import datetime

            with pytest.raises(ValidationError, match="since: must be an aware datetime"):
                await outbox.verify(datetime(2024, 1, 1))
            with pytest.raises(ValidationError, match="concurrency: must be an integer >= 1"):
                await outbox.verify(concurrency=0)
            with pytest.raises(ValidationError, match="until: must be a datetime or epoch"):
                await outbox.plan_verify(until="yesterday")  # type: ignore[arg-type]
        assert sb.requests_made() == 0


def report_json(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data


@pytest.mark.timeout(60)
async def test_both_stores_requeue_missing_creates_each_once(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(followups=2000) as sb, fast_client(sb) as client:
        debts = sb.debt_ids()[:8]
        await log_calls(client, store, debts, 40)
        gone = {"call-3", "call-17"}
        for key in gone:
            sb.delete_followup(by_call_id(sb, key)["id"])
        sb.change_followup(by_call_id(sb, "call-5")["id"], duration_ms=99, notes="not ours")
        moved = "2024-01-15T10:00:00+00:00"  # off its day's list: found under its debt
        sb.change_followup(by_call_id(sb, "call-11")["id"], call_date=moved)
        async with outbox_of(client, store, poll=0.02) as outbox:
            await outbox.update("call-9", status="failed")  # the last fields written win
            await outbox.join(timeout=10)
            progress = NullProgress("verify")
            report = await outbox.verify(progress=progress)
            assert (progress.pages, progress.items) == (report.reads, report.checked)
            assert keys(report.missing) == gone
            assert keys(report.diverged) == {"call-5", "call-11"}
            changed = {f.key: f.fields for f in report.diverged}
            # Only the fields the outbox wrote are compared (notes it never wrote).
            assert changed["call-5"] == {"duration_ms": [1005, 99]}
            assert changed["call-11"]["call_date"][1] == moved
            assert report.confirmed == 36
            assert await outbox.last_verify() == report
            assert await outbox.requeue(report.missing) == 2
            await outbox.join(timeout=10)
            again = await outbox.verify()
        for key in gone:
            assert sb.created_per_call_id()[key] == 2  # the first create, and the one again
            assert len(sb.created_followups(call_id=key)) == 1
        assert (again.checked, again.confirmed) == (40, 38)
        assert keys(again.diverged) == {"call-5", "call-11"} and not again.missing
        monkeypatch.setenv("GETBILL_TOKEN", sb.token)  # the same store from a shell
        argv = ["verify", "--db", store, "--name", name_of(store), "--json"]
        code, out = await outbox_cli(sb, *argv)
        assert code == 1 and report_json(out)["checked"] == 40


async def getbill(sb: Sandbox, *argv: str) -> tuple[int, str, str]:
    """``getbill ...`` in a process of its own, against the sandbox (which keeps serving)."""
    env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "getbill_async.cli", *argv,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def outbox_cli(sb: Sandbox, *argv: str) -> tuple[int, str]:
    """``getbill outbox ...``'s handler, in this process (a process costs seconds to start)."""
    parser = argparse.ArgumentParser(prog="getbill")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["outbox", *argv])
    if hasattr(args, "base_url"):
        args.base_url = sb.base_url
    out = io.StringIO()
    return await run_async(args, out), out.getvalue()


@pytest.mark.timeout(90)
async def test_cli_exit_status_json_and_requeue_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "o.db")
    async with Sandbox(followups=2000) as sb, fast_client(sb) as client:
        monkeypatch.setenv("GETBILL_TOKEN", sb.token)
        debts = sb.debt_ids()[:6]
        await log_calls(client, db, debts, 30)
        code, out = await outbox_cli(sb, "verify", "--db", db, "--no-progress")
        assert code == 0
        assert out.startswith(f"verify {db}: 30 checked, 30 confirmed, 0 missing,")
        later = ["--since", "2999-01-01", "--no-progress"]  # nothing finished since then
        code, out = await outbox_cli(sb, "verify", "--db", db, *later)
        assert code == 0 and f"verify {db}: 0 checked, 0 confirmed" in out
        code, out = await outbox_cli(sb, "verify", "--db", db, "--plan")
        assert code == 0 and out.startswith("verify plan: 30 followups in ")

        sb.delete_followup(by_call_id(sb, "call-4")["id"])
        sb.change_followup(by_call_id(sb, "call-7")["id"], status="failed")
        code, out = await outbox_cli(sb, "verify", "--db", db, "--no-progress")
        assert code == 1
        lines = out.splitlines()
        assert "28 confirmed, 1 missing, 0 doubled, 1 diverged" in lines[0]
        assert lines[1].split()[:3] == ["state", "key", "followup"]
        assert lines[2].startswith("missing   call-4 ")
        assert lines[3].startswith("diverged  call-7 ")
        assert 'status: "deal_found" -> "failed"' in lines[3]

        # The real command, in a process of its own: its exit status, and --json.
        code, out, _ = await getbill(sb, "outbox", "verify", "--db", db, "--json")
        data = report_json(out)
        assert code == 1 and (data["checked"], data["confirmed"]) == (30, 28)
        assert [f["key"] for f in data["missing"]] == ["call-4"]
        assert data["diverged"][0]["fields"] == {"status": ["deal_found", "failed"]}

        code, out = await outbox_cli(sb, "requeue", "--missing", "--db", db)
        assert code == 0 and out.startswith("requeued 1 of 1 missing followups")
        code, out = await outbox_cli(sb, "drain", "--db", db, "--timeout", "20")
        assert code == 0 and out.startswith("sent 1 writes, looked up 1")
        assert sb.created_per_call_id()["call-4"] == 2
        assert len(sb.created_followups(call_id="call-4")) == 1
        code, out = await outbox_cli(sb, "requeue", "--missing", "--db", db)
        assert "requeued already" in out


@pytest.mark.timeout(90)
async def test_log_verify_checks_a_bulk_logs_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, results = tmp_path / "calls.csv", tmp_path / "results.jsonl"
    async with Sandbox(followups=1000) as sb, fast_client(sb) as client:
        debts = sb.debt_ids()[:4]
        rows = ["debt_id,type,status,call_date,call_id"]
        days = [f"2024-05-0{1 + i % 3}T10:00:00+00:00" for i in range(12)]
        rows += [f"{debts[i % 4]},call,sent,{days[i]},log-{i}" for i in range(12)]
        source.write_text("\n".join(rows) + "\n")
        options = LogOptions(input=source, results=results)
        assert await run_log(options, client) == 0
        sb.delete_followup(by_call_id(sb, "log-5")["id"])
        argv = ["log", "--verify", "--results", str(results), "--json"]
        code, out, _ = await getbill(sb, *argv)
        assert code == 1 and [f["key"] for f in report_json(out)["missing"]] == ["log-5"]
        assert report_json(out)["confirmed"] == 11
        args = build_parser().parse_args(["log", "--verify", "--results", str(tmp_path / "x")])
        assert await verify_log(args, client) == 2
    assert "x.outbox not found: no run wrote" in capsys.readouterr().err


def checkpoint(db: str) -> dict[str, Any]:
    """The verifier's state in an outbox file, read as another process would."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT v FROM meta WHERE k = 'verify'").fetchone()
    conn.close()
    return {} if row is None else report_json(row[0])


def reads_of(log: list[tuple[str, str]], group: str) -> list[str]:
    """The list reads of a group (``day:D`` or ``debt:X``), probes (``limit=1``) left out."""
    kind, _, value = group.partition(":")
    wanted = f"date_from={value}" if kind == "day" else f"debt_id={value}"
    return [path for _, path in log if wanted in path and "limit=1&" not in path + "&"]


def probes_of(log: list[tuple[str, str]], day: str) -> list[str]:
    return [path for _, path in log if f"date_from={day}" in path and "limit=1&" in path + "&"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
async def test_a_verify_killed_mid_run_resumes_without_reading_a_group_twice(
    tmp_path: Path, how: signal.Signals
) -> None:
    db = str(tmp_path / "o.db")
    days = [f"2024-02-{d:02d}" for d in range(1, 29)]
    # Reads slow enough to be stopped among them; the calls logged 32 at a time.
    async with Sandbox(followups=3000, latency=0.15) as sb, fast_client(sb) as client:
        debts = sb.debt_ids()[:20]  # 5 debts a day: a day's list is cheaper
        async with outbox_of(client, db, poll=0.02, concurrency=32) as outbox:
            for i in range(280):
                when = f"{days[i % 28]}T10:{i % 60:02d}:00+00:00"
                fields = {"debt_id": debts[i % 20], "type": "call", "call_date": when}
                await outbox.create(**fields, status="sent", call_id=f"k-{i}")
            await outbox.join(timeout=30)
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        argv = ["outbox", "verify", "--db", db, "--concurrency", "1", "--no-progress"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "getbill_async.cli", *argv, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        while len(checkpoint(db).get("done", {})) < 5:
            assert proc.returncode is None, "the verify ended before it was killed"
            await asyncio.sleep(0.05)
        proc.send_signal(how)
        assert await proc.wait() == (-signal.SIGKILL if how == signal.SIGKILL else 130)
        before = checkpoint(db)
        assert before["phase"] == "running" and len(before["done"]) < 28
        killed_at = len(sb.request_log())
        async with outbox_of(client, db, drain=False) as outbox:
            report = await outbox.verify()
        log = sb.request_log()
        assert report.resumed and (report.checked, report.confirmed) == (280, 280)
        assert len(before["done"]) >= 5 and len(before["totals"]) == 28  # all 28 days probed
        for group in before["done"]:
            assert reads_of(log[killed_at:], group) == [], group
        assert all(len(probes_of(log, day)) == 1 for day in days)  # none probed again
        groups = [f"day:{day}" for day in days]
        assert all(0 < len(reads_of(log, g)) <= 2 for g in groups)
        assert sum(len(reads_of(log, g)) == 2 for g in groups) <= 1  # the one cut off
        assert report.reads >= len(log) - killed_at  # this run's reads, and the killed one's


@pytest.mark.timeout(30)
async def test_the_sandbox_deletes_a_followup_behind_the_apis_back() -> None:
    async with Sandbox(followups=200) as sb, fast_client(sb) as client:
        debt = sb.debt_ids()[0]
        first = await client.followups.list(debt_id=debt, limit=100)
        everything = await client.followups.list(limit=100)
        gone = first.data[0].id
        sb.delete_followup(gone)
        with pytest.raises(NotFoundError):
            await client.followups.get(gone)
        with pytest.raises(NotFoundError):
            await client.followups.update(gone, status="failed")
        after = await client.followups.list(debt_id=debt, limit=100)
        assert [f.id for f in after.data] == [f.id for f in first.data[1:]]
        assert (
            await client.followups.list(limit=100)
        ).pagination.total == everything.pagination.total - 1
        assert gone not in sb.followup_ids() and sb.followup(gone) is None
        assert (await client.debts.get(debt)).followups_count == first.pagination.total - 1
        with pytest.raises(ValueError, match="unknown followup_id"):
            sb.delete_followup(gone)


def layout(rng: random.Random) -> tuple[list[Written], dict[str, int]]:
    """Followups on a few days and debts, some undated, some of unknown debt; and how many
    followups (everyone's) each day holds."""
    days = [f"2024-07-{d:02d}" for d in range(1, rng.randint(1, 8) + 1)]
    debts = [f"d{j}" for j in range(rng.randint(1, 60))]
    items = []
    for i in range(rng.randint(1, 400)):
        roll = rng.random()
        fields = {} if roll < 0.1 else {"call_date": f"{rng.choice(days)}T10:00:00+00:00"}
        debt = None if roll > 0.95 else rng.choice(debts)
        items.append(Written(f"c{i}", f"c{i}", debt, f"f{i}", fields, 0.0))
    totals = {day: rng.choice([0, 30, 3_000, 40_000]) for day in days}
    for w in items:
        if w.day is not None:
            totals[w.day.isoformat()] += 1
    return items, totals


@pytest.mark.timeout(30)
async def test_a_plan_never_counts_more_reads_than_followups() -> None:
    status = LocalBudget(RateLimit()).status
    for seed in range(300):
        items, totals = layout(random.Random(seed))
        probed: list[str] = []

        async def probe(
            day: str, totals: dict[str, int] = totals, probed: list[str] = probed
        ) -> int:
            probed.append(day)
            return totals[day]

        plan = await make_plan(items, totals={}, probe=probe, status=status, concurrency=4)
        assert plan.reads <= plan.followups == len(items), seed
        assert plan.probes == len(probed) == len(set(probed))
        covered = [f for group in plan.groups for f in group.followups]
        assert sorted(covered) == sorted(w.followup_id for w in items)  # each once
        again = await make_plan(
            items, totals=plan.totals, probe=probe, status=status, concurrency=4
        )
        assert again.groups == plan.groups and again.probes == 0  # a resume decides alike


@pytest.mark.timeout(30)
async def test_a_day_with_few_other_followups_is_read_by_day() -> None:
    status = LocalBudget(RateLimit()).status
    items = [
        Written(f"c{i}", f"c{i}", f"d{i % 40}", f"f{i}", {"call_date": "2024-07-01T10:00:00Z"}, 0)
        for i in range(500)
    ]

    async def probe(day: str) -> int:
        return 530  # ours and 30 others

    plan = await make_plan(items, totals={}, probe=probe, status=status, concurrency=4)
    assert (plan.reads, plan.probes, plan.by_day, plan.by_debt) == (7, 1, 1, 0)
    assert plan.reads <= len(items) / 5


@pytest.mark.timeout(30)
async def test_an_update_by_followup_id_is_read_back_by_its_id(tmp_path: Path) -> None:
    async with Sandbox(followups=100) as sb, fast_client(sb) as client:
        seeded = sb.followup_ids()[:2]
        async with Outbox(client, tmp_path / "o.db", poll=0.02) as outbox:
            for followup_id in seeded:
                await outbox.update(followup_id, status="failed", summary="re-dialled")
            await outbox.join(timeout=10)
            sb.change_followup(seeded[1], summary="edited")
            plan = await outbox.plan_verify()
            report = await outbox.verify()
        assert (plan.by_id, plan.reads) == (2, 2)
        assert (report.checked, report.confirmed, report.reads) == (2, 1, 2)
        assert report.diverged[0].key == seeded[1]
        assert report.diverged[0].fields == {"summary": ["re-dialled", "edited"]}
