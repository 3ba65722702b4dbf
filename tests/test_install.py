"""From a wheel to a running demo, as a user who installs the package from an index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_the_wheel_alone_runs_the_demo_in_an_empty_directory() -> None:
    # scripts/wheel-demo: build the wheel, install it alone into a fresh venv, run
    # `getbill demo` in an empty directory, import * there; it prints each step's seconds.
    proc = subprocess.run(
        [str(ROOT / "scripts" / "wheel-demo"), sys.executable],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "demo: done" in lines
    assert {"followups.jsonl", "results.jsonl", "demo-calls.csv"} <= set(lines)
    assert any(line.startswith("wheel-to-demo: ") for line in lines)
