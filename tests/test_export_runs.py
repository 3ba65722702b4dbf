"""One export per output at a time, SIGTERM that commits, bad input that writes nothing, and a
resume that keeps the CSV's formula guard: the real ``getbill`` command where a person would
use it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from getbill_async import FileInUseError, GetBillClient
from getbill_async.export import ExportError
from getbill_async.sandbox import Sandbox
from getbill_async.support import FileLock
from tests.test_export import checkpoint_page, jsonl_ids

CLI = [sys.executable, "-m", "getbill_async.cli"]


def env_for(sb: Sandbox) -> dict[str, str]:
    return {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}


async def start(sb: Sandbox, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env_for(sb),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for(condition: object, seconds: float = 20.0) -> None:
    assert callable(condition)
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


@pytest.mark.timeout(60)
async def test_a_second_export_to_the_same_file_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "f.jsonl"
    checkpoint = tmp_path / "f.jsonl.checkpoint"
    async with Sandbox(followups=3000, seed=4, latency=0.15) as sb:
        first = await start(sb, "export", "--out", str(out), "--concurrency", "1", "--no-progress")
        await wait_for(lambda: checkpoint_page(checkpoint) >= 2)
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            with pytest.raises(FileInUseError, match="f.jsonl is in use by another process"):
                await client.followups.export(out, restart=True, type="call")
        second = await start(sb, "export", "--out", str(out), "--restart", "--no-progress")
        _, err = await second.communicate()
        assert second.returncode == 1
        assert err.decode().count("in use by another process") == 1
        assert len(err.decode().splitlines()) == 1, "one line, no traceback"
        stdout, stderr = await first.communicate()
        assert first.returncode == 0, stderr.decode()
        assert jsonl_ids(out) == sb.followup_ids()
        assert not checkpoint.exists() and not (tmp_path / "f.jsonl.lock").exists()


@pytest.mark.timeout(60)
async def test_a_killed_export_leaves_no_lock_behind(tmp_path: Path) -> None:
    out = tmp_path / "f.jsonl"
    checkpoint = tmp_path / "f.jsonl.checkpoint"
    async with Sandbox(followups=3000, seed=6, latency=0.1) as sb:
        proc = await start(sb, "export", "--out", str(out), "--concurrency", "1", "--no-progress")
        await wait_for(lambda: checkpoint_page(checkpoint) >= 2)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        with FileLock(out, what="test"):  # the kernel let go of the dead run's lock
            pass
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            await client.followups.export(out, resume=True)
        assert jsonl_ids(out) == sb.followup_ids()


@pytest.mark.timeout(60)
async def test_sigterm_commits_what_was_written_as_sigint_does(tmp_path: Path) -> None:
    out = tmp_path / "f.jsonl"
    checkpoint = tmp_path / "f.jsonl.checkpoint"
    async with Sandbox(followups=3000, seed=8, latency=0.05) as sb:
        args = ["export", "--out", str(out), "--concurrency", "1", "--no-progress"]
        proc = await start(sb, *args, "--commit-seconds", "30")
        await wait_for(lambda: sb.stats.requests >= 8)
        assert checkpoint_page(checkpoint) == 0, "nothing committed yet: 30 s between commits"
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
        assert proc.returncode == 143, err.decode()
        assert "getbill export: terminated" in err.decode()
        assert checkpoint_page(checkpoint) >= 7, "the pages written were committed on the way out"
        resumed = await start(sb, *args, "--resume")
        stdout, err = await resumed.communicate()
        assert resumed.returncode == 0, err.decode()
        assert jsonl_ids(out) == sb.followup_ids()


@pytest.mark.timeout(30)
async def test_bad_settings_write_nothing_and_say_so_once(tmp_path: Path) -> None:
    async with Sandbox(followups=100) as sb:
        out = tmp_path / "f.jsonl"
        for flags, code, message in (
            # The flags every command shares are checked first, as bad usage (exit 2).
            (["--concurrency", "0"], 2, "--concurrency must be an integer >= 1, got 0"),
            (
                ["--commit-seconds", "nan"],
                1,
                "commit_seconds: must be in [0, 3600) seconds, got nan",
            ),
        ):
            proc = await start(sb, "export", "--out", str(out), *flags)
            _, err = await proc.communicate()
            assert proc.returncode == code
            assert err.decode() == f"getbill export: {message}\n"
        assert list(tmp_path.iterdir()) == [], "no checkpoint, no partial, no lock"
        assert sb.stats.requests == 0


async def test_resuming_a_csv_with_another_formula_guard_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    async with (
        Sandbox(followups=500, seed=2) as sb,
        GetBillClient(sb.token, base_url=sb.base_url) as client,
    ):
        with pytest.raises(ZeroDivisionError):
            await client.followups.export(out, format="csv", progress=_FailAfter(2))
        with pytest.raises(ExportError, match="formula_guard"):
            await client.followups.export(out, format="csv", resume=True, formula_guard=False)
        report = await client.followups.export(out, format="csv", resume=True)
        assert report.items == 500 and report.resumed_from_page >= 2


class _FailAfter:
    """A progress sink that raises once ``pages`` pages are written: a crash mid-export."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def start(self, total_pages: int, total_items: int, done_pages: int, done_items: int) -> None:
        pass

    def update(self, pages: int, items: int, budget: object) -> None:
        if pages >= self.pages:
            raise ZeroDivisionError

    def finish(self) -> None:
        pass


async def test_a_run_refused_before_its_first_page_leaves_nothing_to_resume(
    tmp_path: Path,
) -> None:
    out = tmp_path / "f.jsonl"
    async with Sandbox(followups=300, seed=5) as sb:
        # A token pasted with its newline, and wrong besides: the API answers 401.
        env = {**env_for(sb), "GETBILL_TOKEN": "not-the-token\n"}
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "export",
            "--out",
            str(out),
            "--no-progress",
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 1 and err.decode().count("\n") == 1, err.decode()
        assert "not-the-token" not in err.decode()
        assert list(tmp_path.iterdir()) == [], "no checkpoint, no partial"
        again = await start(sb, "export", "--out", str(out), "--no-progress")
        _, err = await again.communicate()
        assert again.returncode == 0, err.decode()
        assert len(jsonl_ids(out)) == 300
