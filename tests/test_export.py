"""Bulk export: JSONL and CSV, atomic output, checkpoints, resume after a crash or a kill."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from getbill_async import GetBillClient
from getbill_async.budget import ClassStatus
from getbill_async.export import CSV_COLUMNS, ExportError
from getbill_async.sandbox import Sandbox


def jsonl_ids(path: Path) -> list[str]:
    return [msgspec.json.decode(line)["id"] for line in path.read_bytes().splitlines()]


def checkpoint_page(path: Path) -> int:
    """The last page an export's checkpoint says is on disk (0 when there is none yet)."""
    try:
        marks = msgspec.json.decode(path.read_bytes())["marks"]
    except (OSError, msgspec.DecodeError):
        return 0  # not written yet, or caught between its write and its rename
    return int(marks[-1][0]) if marks else 0


class StopAfter:
    """A progress sink that fails after ``pages`` pages: a crash in the middle of an export."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def start(self, total_pages: int, total_items: int, done_pages: int, done_items: int) -> None:
        pass

    def update(self, pages: int, items: int, budget: ClassStatus | None) -> None:
        if pages >= self.pages:
            raise KeyboardInterrupt

    def finish(self) -> None:
        pass


async def test_jsonl_export_is_complete_and_atomic(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "followups.jsonl"
    report = await client.followups.export(out, concurrency=3)
    assert jsonl_ids(out) == sandbox.followup_ids()
    assert (report.items, report.pages, report.resumed_from_page) == (1000, 10, 0)
    assert not report.total_changed and report.requests == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["followups.jsonl"]


async def test_csv_export_has_a_header_and_iso_datetimes(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "calls.csv"
    await client.followups.export(out, format="csv", type="call")
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(CSV_COLUMNS) == 25
    assert [r["id"] for r in rows] == sandbox.followup_ids(type="call")
    dated = [r for r in rows if r["call_date"]]
    assert dated and all(datetime.fromisoformat(r["call_date"]).tzinfo for r in dated)
    assert {r["is_retry"] for r in rows} <= {"true", "false", ""}


async def test_resume_after_a_crash_has_no_duplicate_and_no_gap(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "f.jsonl"
    with pytest.raises(KeyboardInterrupt):
        await client.followups.export(out, limit=10, progress=StopAfter(5), status="delivered")
    assert not out.exists()
    assert (tmp_path / "f.jsonl.partial").exists() and (tmp_path / "f.jsonl.checkpoint").exists()
    with pytest.raises(ExportError, match="an unfinished export of .* exists"):
        await client.followups.export(out, limit=10, status="delivered")
    with pytest.raises(ExportError, match="cannot resume .*checkpoint was made with"):
        await client.followups.export(out, limit=10, status="sent", resume=True)
    # New followups arrive meanwhile (newest first: the rest slide on); nothing may repeat.
    before = sandbox.followup_ids(status="delivered")
    sandbox.insert_followups(40)
    report = await client.followups.export(out, limit=10, status="delivered", resume=True)
    ids = jsonl_ids(out)
    assert len(ids) == len(set(ids)), "no duplicate"
    assert [i for i in ids if i in set(before)] == before, "no gap, in order"
    assert report.resumed_from_page == 5 and not (tmp_path / "f.jsonl.checkpoint").exists()
    assert report.total_changed and report.duplicates_skipped > 0


async def test_restart_discards_an_unfinished_export(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "f.jsonl"
    with pytest.raises(KeyboardInterrupt):
        await client.followups.export(out, limit=100, progress=StopAfter(2))
    report = await client.followups.export(out, restart=True)
    assert report.resumed_from_page == 0 and jsonl_ids(out) == sandbox.followup_ids()


async def test_bad_format_is_refused_before_sending(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    from getbill_async import ValidationError

    with pytest.raises(ValidationError, match="format: invalid value 'xml'; allowed: jsonl, csv"):
        await client.followups.export(tmp_path / "x", format="xml")
    assert sandbox.stats.requests == 0


@pytest.mark.timeout(90)
async def test_cli_killed_mid_export_resumes_to_exactly_the_servers_ids(tmp_path: Path) -> None:
    async with Sandbox(followups=3000, seed=5, latency=0.03) as sb:
        out = tmp_path / "kill.jsonl"
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        args = ["-m", "getbill_async.cli", "export", "--out", str(out), "--concurrency", "1"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        checkpoint = tmp_path / "kill.jsonl.checkpoint"
        for _ in range(400):
            await asyncio.sleep(0.02)
            if checkpoint_page(checkpoint) >= 5:
                break
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert not out.exists() and checkpoint.exists()
        resumed = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            "--resume",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await resumed.communicate()
        assert resumed.returncode == 0, stderr.decode()
        assert b"resumed after page" in stdout
        assert jsonl_ids(out) == sb.followup_ids()


def test_eta_knows_when_the_budget_is_the_bottleneck() -> None:
    from getbill_async.export._progress import eta_seconds

    spent = ClassStatus(
        limit=1000,
        window=3600.0,
        used=1000,
        in_flight=0,
        remaining=0,
        next_slot_in=100.0,
        blocked_for=0.0,
    )
    assert eta_seconds(1500, 10.0, spent) == (3700.0, True)
    roomy = ClassStatus(
        limit=1000,
        window=3600.0,
        used=0,
        in_flight=0,
        remaining=1000,
        next_slot_in=0.0,
        blocked_for=0.0,
    )
    assert eta_seconds(500, 10.0, roomy) == (50.0, False)
    assert eta_seconds(0, 10.0, roomy) == (0.0, False)


def test_progress_lines_off_a_terminal() -> None:
    import io

    from getbill_async.export._progress import LineProgress, make_progress

    stream = io.StringIO()
    progress = make_progress("export", stream=stream)
    assert isinstance(progress, LineProgress)
    progress.start(100, 10_000, 0, 0)
    for page in range(1, 101):
        progress.update(page, page * 100, None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("export: 10,000/10,000 items, page 100/100")
