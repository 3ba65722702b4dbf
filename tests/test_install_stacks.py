"""The dlt extra and the pytest plugin from the wheel alone, as a user installs them.

One fresh venv gets the wheel with its ``dlt`` extra, pytest and pytest-asyncio, nothing of
the dev venv. In it, a dlt pipeline loads the sandbox into DuckDB, and pytest runs a user's
test that asks for the plugin's fixtures (found through the ``pytest11`` entry point).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PIPELINE = """
import asyncio, os, threading

import dlt
from getbill_async.dlt import getbill_source
from getbill_async.sandbox import Sandbox

loop = asyncio.new_event_loop()
sandbox = Sandbox(followups=300, seed=2)
loop.run_until_complete(sandbox.start())
threading.Thread(target=loop.run_forever, daemon=True).start()
pipeline = dlt.pipeline(pipeline_name="wheel", destination="duckdb", dataset_name="getbill")
pipeline.run(getbill_source(sandbox.token, base_url=sandbox.base_url))
counts = pipeline.last_trace.last_normalize_info.row_counts
print("loaded", counts["followups"], counts["debts"])
asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(timeout=10)
"""

USER_TEST = """
import pytest


@pytest.mark.getbill_sandbox(followups=30)
async def test_with_the_fixtures(getbill_sandbox, getbill_client):
    page = await getbill_client.followups.list(limit=5)
    assert page.pagination.total == 30
    assert getbill_sandbox.requests_made("read") == 1
"""

INI = """
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""


def run(args: list[str], cwd: Path, timeout: float) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "DLT_DATA_DIR": str(cwd / "dlt-data"),  # else ~/.dlt, or /var/dlt for root
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.timeout(300)
def test_the_wheel_with_the_dlt_extra_loads_and_its_plugin_serves_a_user_suite(
    tmp_path: Path,
) -> None:
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    (wheel,) = dist.glob("*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
    subprocess.run(
        [*install, f"{wheel}[dlt]", "pytest", "pytest-asyncio"],
        capture_output=True,
        check=True,
        timeout=200,
    )
    assert run([python, "-c", PIPELINE], work, 60).splitlines()[-1] == "loaded 300 30"
    (work / "pyproject.toml").write_text(INI)
    (work / "test_user.py").write_text(USER_TEST)
    out = run([python, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"], work, 60)
    assert "1 passed" in out
