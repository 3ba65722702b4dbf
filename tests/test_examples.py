"""Every example runs, against the sandbox, as a user would run it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from getbill_async.sandbox import Sandbox

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def run(sb: Sandbox, cwd: Path, *args: str) -> str:
    env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.timeout(60)
async def test_export_example(sandbox: Sandbox, tmp_path: Path) -> None:
    out = await run(sandbox, tmp_path, str(EXAMPLES / "export.py"), "d.csv")
    expected = len(sandbox.followup_ids(status="delivered"))
    assert f"{expected} followups -> d.csv" in out
    assert len((tmp_path / "d.csv").read_text().splitlines()) == expected + 1


@pytest.mark.timeout(60)
async def test_daily_sync_example_fetches_only_recent_days(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    script = str(EXAMPLES / "daily_sync.py")
    args = ("out", "--format", "jsonl")
    out = await run(sandbox, tmp_path, script, *args, "--today", "2024-06-15")
    assert "synced everything: 1000 followups, 10 requests" in out
    for today, since in (("2024-06-30", "2024-06-12"), ("2024-07-01", "2024-06-27")):
        out = await run(sandbox, tmp_path, script, *args, "--today", today)
        recent = len(sandbox.followup_ids(date_from=since))
        pages = max(1, -(-recent // 100))
        assert f"synced the days from {since}: {recent} followups, {pages} requests" in out
    lines = sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "out").glob("date=*/*"))
    assert lines == 1000


@pytest.mark.timeout(60)
async def test_queue_logging_example(sandbox: Sandbox, tmp_path: Path) -> None:
    out = await run(sandbox, tmp_path, str(EXAMPLES / "queue_logging.py"), "--calls", "30")
    assert "logged 30 calls, 0 failed" in out
    assert len(sandbox.created_per_call_id()) == 30


async def demo(cwd: Path, *args: str) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "getbill_async.cli",
        "demo",
        "--latency",
        "0",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, out.decode() + err.decode()
    return out.decode(), err.decode()


@pytest.mark.timeout(120)
async def test_demo_runs_end_to_end_from_an_empty_directory(tmp_path: Path) -> None:
    out, err = await demo(tmp_path)
    assert "demo: done" in out and "created 40" in out
    assert "export: 25,000/25,000 items" in err  # the plain progress line off a terminal
    assert len((tmp_path / "followups.jsonl").read_bytes().splitlines()) == 25_000
    journal = (tmp_path / "results.jsonl").read_bytes().splitlines()
    assert sum(b'"status":"created"' in line for line in journal) == 40
    # The sample shipped in the package, written where the demo says.
    assert f"{tmp_path / 'demo-calls.csv'}" in out
    assert len((tmp_path / "demo-calls.csv").read_text().splitlines()) == 41


@pytest.mark.timeout(60)
async def test_demo_fits_the_sample_calls_to_a_smaller_sandbox(tmp_path: Path) -> None:
    out, _ = await demo(tmp_path, "--followups", "500", "--out", "f.jsonl")
    assert "created 40" in out and "demo: done" in out
    assert len((tmp_path / "f.jsonl").read_bytes().splitlines()) == 500


@pytest.mark.timeout(60)
async def test_service_example_serves_lookups_and_webhooks_during_an_export() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "service.py"),
        "--otel",
        cwd=EXAMPLES,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_bytes, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()
    out = out_bytes.decode()
    assert re.search(r"export: 4000 followups in \d+ requests", out)
    assert "lookups: 6, worst" in out
    assert "webhooks: 2 received, 0 failed" in out
    assert re.search(r"requests: \d+ interactive, 4\d bulk, 0 retries, 0 429s", out)
    # The export waits for the window; the reserve keeps room for the interactive lane.
    assert "budget waits: interactive 0.0s, bulk" in out
    assert "GET /followups/{id} x6" in out and "POST /followups x1" in out
    assert "http.client.request.duration" in out and "getbill.budget.wait" in out


@pytest.mark.timeout(60)
async def test_fastapi_webhooks_example_runs_the_whole_loop() -> None:
    # The FastAPI twin of webhook_service.py: uvicorn serves the mounted receiver.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "fastapi_webhooks.py"),
        cwd=EXAMPLES,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_bytes, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()
    out = out_bytes.decode()
    assert "6 events received, 6 delivered" in out
    assert out.count("changed: status, summary") == 3
    assert err.decode() == ""
