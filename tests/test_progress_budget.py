"""The budget figure a progress line shows is the ledger's at the moment the line is printed.

Reported: `getbill demo` said "budget 999/1000 reads left" after 100 reads, and its last line
and its summary disagreed by 27, because the export showed a status it had asked for up to a
second earlier. Now the figure is asked for each line that is shown, from the one ledger the
summary reads; it counts the pages still in flight as taken.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from getbill_async import GetBillClient
from getbill_async.budget import LocalBudget
from getbill_async.export import ExportOptions, NullProgress, export_followups
from getbill_async.export._progress import BarProgress, LineProgress, RichProgress
from getbill_async.sandbox import Sandbox

LINE = re.compile(r"page (\d+)/(\d+), .*budget (\d+)/(\d+) reads left")
SUMMARY = re.compile(r"budget used this hour: (\d+) of (\d+) reads")
CONCURRENCY = 4


class LedgerAtWrite(io.StringIO):
    """A stream that notes, for each line written, the ledger's reads left at that moment."""

    def __init__(self, budget: LocalBudget) -> None:
        super().__init__()
        self.budget = budget
        self.seen: list[tuple[str, int]] = []

    def write(self, text: str) -> int:
        if text.strip():
            self.seen.append((text, self.budget.snapshot().reads.remaining))
        return super().write(text)


def figures(text: str) -> tuple[int, int, int]:
    """Page done, reads left and the limit, as a progress line shows them."""
    found = LINE.search(text)
    assert found is not None, text
    page, _, left, limit = (int(g) for g in found.groups())
    return page, left, limit


async def test_each_line_shows_the_ledger_as_it_is_printed(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    budget = client.budget
    assert isinstance(budget, LocalBudget)
    stream = LedgerAtWrite(budget)
    progress = LineProgress("export", stream, every=3)
    options = ExportOptions(limit=25, concurrency=CONCURRENCY)
    report = await export_followups(client, tmp_path / "f.jsonl", options, progress=progress)
    assert report.pages == 40 and len(stream.seen) == 14  # pages 3, 6, ..., 39, then 40
    for text, ledger_left in stream.seen:
        page, left, limit = figures(text)
        assert left == ledger_left, text
        taken = limit - left  # answered pages, and the ones in flight or fetched ahead
        assert page <= taken <= page + 2 * CONCURRENCY, text
    after = (await client.budget_status()).reads
    assert figures(stream.seen[-1][0])[1] == after.remaining == after.limit - after.used
    assert after.used == sandbox.requests_made("read") == 40


@pytest.mark.parametrize("kind", ["bar", "rich"])
async def test_the_live_bars_show_the_ledger_too(
    client: GetBillClient, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich's width off a terminal: the whole line
    budget = client.budget
    assert isinstance(budget, LocalBudget)
    stream = LedgerAtWrite(budget)
    progress: Any = (
        BarProgress("export", stream) if kind == "bar" else RichProgress("export", stream)
    )
    options = ExportOptions(limit=50, concurrency=CONCURRENCY)
    await export_followups(client, tmp_path / "f.jsonl", options, progress=progress)
    after = (await client.budget_status()).reads.remaining
    if kind == "rich":  # off a terminal rich draws the last frame once, at the end
        assert figures(stream.getvalue())[:2] == (20, after)
        return
    shown = [(text, left) for text, left in stream.seen if LINE.search(text)]
    assert figures(shown[-1][0])[:2] == (20, after)
    for text, ledger_left in shown:  # each frame is the ledger as it is drawn
        assert figures(text)[1] == ledger_left, text


async def test_a_progress_that_shows_nothing_asks_the_budget_nothing(
    client: GetBillClient, tmp_path: Path
) -> None:
    asked = 0
    status = client.budget_status

    async def counted() -> Any:
        nonlocal asked
        asked += 1
        return await status()

    client.budget_status = counted  # type: ignore[method-assign]
    progress = NullProgress("export")
    await export_followups(client, tmp_path / "f.jsonl", ExportOptions(), progress=progress)
    assert asked == 0 and progress.pages == 10


@pytest.mark.timeout(120)
async def test_the_demos_lines_agree_with_its_summary(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "getbill_async.cli", "demo", "--latency", "0", "--followups", "10000"),
        *("--concurrency", str(CONCURRENCY)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, out.decode() + err.decode()
    lines = [figures(line) for line in err.decode().splitlines() if LINE.search(line)]
    assert [page for page, _, _ in lines] == [50, 100]
    for page, left, limit in lines:
        assert page <= limit - left <= page + 2 * CONCURRENCY
    summary = SUMMARY.search(out.decode())
    assert summary is not None, out.decode()
    used, limit = int(summary[1]), int(summary[2])
    assert used == 100 and lines[-1][1:] == (limit - used, limit)
