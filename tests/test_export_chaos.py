"""Chaos: the real ``getbill export`` is SIGKILLed at random points and resumed, many times.

Every round waits until the running export has committed a page it had not before, then kills
it after a random short delay (inside a write, an fsync, a checkpoint rename or a fetch) and
starts ``--resume``. The final file must hold every sandbox id exactly once. The figures
(rounds, kills, lost, doubled) are printed for the record (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from getbill_async.sandbox import Sandbox
from tests.test_export import checkpoint_page, jsonl_ids
from tests.test_export_parquet import parquet_ids

ROUNDS = 20
SECONDS = 40.0  # the bound of the whole test: rounds stop early past it


def csv_ids(path: Path) -> list[str]:
    return [row["id"] for row in csv.DictReader(io.StringIO(path.read_text()))]


async def chaos(sb: Sandbox, out: Path, seed: int, deadline: float, *extra: str) -> dict[str, int]:
    """Kill and resume ``getbill export --out out`` until it ends; its figures."""
    env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    args = [sys.executable, "-m", "getbill_async.cli", "export", "--out", str(out)]
    args += ["--concurrency", "2", "--no-progress", "--commit-seconds", "0.1", *extra]
    checkpoint = out.with_name(out.name + ".checkpoint")
    draw = random.Random(seed)
    kills = rounds = 0
    while True:
        resume = ["--resume"] if checkpoint.exists() else []
        proc = await asyncio.create_subprocess_exec(
            *args, *resume, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        if rounds < ROUNDS and time.monotonic() < deadline:
            rounds += 1
            before = checkpoint_page(checkpoint)
            while proc.returncode is None and checkpoint_page(checkpoint) <= before:
                await asyncio.sleep(0.005)
            await asyncio.sleep(draw.uniform(0.0, 0.06))
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        stdout, stderr = await proc.communicate()
        if proc.returncode == 0:
            return {"rounds": rounds, "kills": kills}
        assert proc.returncode == -signal.SIGKILL, stderr.decode()


@pytest.mark.timeout(90)
async def test_export_survives_random_kills_with_nothing_lost_or_doubled(tmp_path: Path) -> None:
    deadline = time.monotonic() + SECONDS
    async with Sandbox(followups=10_000, seed=11, latency=0.02) as sb:
        jsonl, table = tmp_path / "chaos.jsonl", tmp_path / "chaos.csv"
        parquet = tmp_path / "chaos.parquet"
        figures = await asyncio.gather(
            chaos(sb, jsonl, 1, deadline),
            chaos(sb, table, 2, deadline),
            chaos(sb, parquet, 3, deadline, "--row-group-pages", "2"),
        )
        expected = sb.followup_ids()
    for name, ids, done in (
        ("jsonl", jsonl_ids(jsonl), figures[0]),
        ("csv", csv_ids(table), figures[1]),
        ("parquet", parquet_ids(parquet), figures[2]),
    ):
        lost = len(set(expected) - set(ids))
        doubled = len(ids) - len(set(ids))
        print(
            f"chaos {name}: {done['rounds']} rounds, {done['kills']} kills, "
            f"{lost} lost, {doubled} doubled, {len(ids)} ids"
        )
        assert done["kills"] >= 10, "most rounds must land a kill"
        assert (lost, doubled) == (0, 0) and ids == expected
    assert b"\0" not in jsonl.read_bytes() + table.read_bytes()
