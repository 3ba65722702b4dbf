"""Shared bits of the benchmarks: tables and timing helpers (no third-party deps)."""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Sequence


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of ``times`` that fall in any window of ``window`` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class SandboxProcess:
    """The sandbox in a process of its own, so it does not share the client's CPU.

    async with SandboxProcess(followups=10_000, latency=0.03) as sb:
        sb.base_url, sb.token
    """

    def __init__(self, **options: object) -> None:
        self.options = options
        self.base_url = ""
        self.token = ""
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> SandboxProcess:
        args = [sys.executable, "-m", "getbill_async.cli", "sandbox", "--port", "0"]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        assert self._proc.stdout is not None
        while not (self.base_url and self.token):
            line = (await asyncio.wait_for(self._proc.stdout.readline(), 120)).decode()
            if not line:
                raise RuntimeError("the sandbox process ended before it was ready")
            if line.startswith("base URL:"):
                self.base_url = line.split()[-1]
            elif line.startswith("static token:"):
                self.token = line.split()[-1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()


def write_json(path: str | None, rows: list[dict[str, object]]) -> None:
    """The ratios in the shared format: benchmark, metric, ratio, goal (and how to read it)."""
    if path:
        import json

        with open(path, "w") as handle:
            json.dump(rows, handle, indent=1)
