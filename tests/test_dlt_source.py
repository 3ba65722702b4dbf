"""The dlt source: real dlt pipelines into DuckDB files, against the sandbox on loopback.

dlt's ``pipeline.run`` blocks, and runs the source's async resources on an event loop of its
own: the tests run it in a thread (``asyncio.to_thread``) while the sandbox serves on theirs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from getbill_async import (
    ConfigurationError,
    GetBillClient,
    RateLimit,
    RedisBudget,
    ValidationError,
)
from getbill_async.dlt import getbill_source
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisServer
from tests.test_extras import run_without_extras

TODAY = "2024-12-31"  # the sandbox's seeded followups are dated 2023-01-01 .. 2024-12-31
WINDOW_FROM = "2024-12-28"  # the next run's date_from: three days (lag_days) before TODAY
NOT_LOADED = ("_dlt_load_id", "_dlt_id")
GETBILL_VARIABLES = (
    "GETBILL_TOKEN",
    "GETBILL_CLIENT_ID",
    "GETBILL_CLIENT_SECRET",
    "GETBILL_BASE_URL",
    "GETBILL_TOKEN_URL",
    "GETBILL_SCOPES",
)


@pytest.fixture(autouse=True)
def dlt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # dlt reads ./.dlt and the environment: a clean directory, and no telemetry off loopback.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    for name in GETBILL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield


def pipeline(tmp_path: Path, name: str) -> Any:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name="getbill",
    )


async def run(pipe: Any, source: Any) -> dict[str, int]:
    """Run ``pipe`` in a thread; the rows each table got in this run."""
    await asyncio.to_thread(pipe.run, source)
    counts = pipe.last_trace.last_normalize_info.row_counts
    return {k: v for k, v in counts.items() if not k.startswith("_dlt")}


def table_columns(path: Path, table: str) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as db:
        rows = db.sql(f"DESCRIBE getbill.{table}").fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def differences(left: Path, right: Path, table: str) -> tuple[int, int, int]:
    """Rows of ``table`` in ``left`` not in ``right``, the other way round (every loaded
    column compared, by name, duplicates counted), and the rows of ``left``."""
    names = sorted(c for c in table_columns(left, table) if c not in NOT_LOADED)
    assert names == sorted(c for c in table_columns(right, table) if c not in NOT_LOADED)
    cols = ", ".join(f'"{n}"' for n in names)
    with duckdb.connect() as db:
        db.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        db.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        one, two = f"SELECT {cols} FROM l.getbill.{table}", f"SELECT {cols} FROM r.getbill.{table}"
        only_left = db.execute(f"SELECT count(*) FROM ({one} EXCEPT ALL {two})").fetchone()
        only_right = db.execute(f"SELECT count(*) FROM ({two} EXCEPT ALL {one})").fetchone()
        total = db.execute(f"SELECT count(*) FROM l.getbill.{table}").fetchone()
    assert only_left is not None and only_right is not None and total is not None
    return only_left[0], only_right[0], total[0]


async def change_recent_followups(sb: Sandbox) -> int:
    """New followups (created over HTTP) and changed ones (on the server's side), all dated
    inside the next run's window; one change adds a field the SDK does not know. How many
    followups the window holds afterwards."""
    recent = sb.followup_ids(date_from=WINDOW_FROM)
    assert len(recent) >= 2
    sb.change_followup(recent[0], status="deal_found", notes="agreed", sentiment="positive")
    sb.change_followup(recent[1], status="no_answer", call_id="dialer-7")
    async with GetBillClient(sb.token, base_url=sb.base_url) as client:
        debt = sb.debt_ids()[0]
        for n in range(3):
            when = datetime(2024, 12, 30, 9 + n, tzinfo=timezone.utc)
            await client.followups.create(
                debt_id=debt, type="call", status="delivered", call_date=when, call_id=f"c-{n}"
            )
    return len(sb.followup_ids(date_from=WINDOW_FROM))


@pytest.mark.timeout(60)
async def test_a_second_run_loads_the_recent_days_and_the_table_equals_a_full_load(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=2000, seed=3) as sb:
        incremental = pipeline(tmp_path, "incremental")
        first = await run(incremental, getbill_source(sb.token, base_url=sb.base_url, today=TODAY))
        assert first == {"followups": 2000, "debts": 200}
        with duckdb.connect(str(tmp_path / "incremental.duckdb"), read_only=True) as db:
            once = db.sql("SELECT count(*), count(DISTINCT id) FROM getbill.followups").fetchall()
        assert once == [(2000, 2000)]  # every followup, once

        in_window = await change_recent_followups(sb)
        reads, writes = sb.requests_made("read"), sb.requests_made("write")
        second = await run(incremental, getbill_source(sb.token, base_url=sb.base_url, today=TODAY))
        spent = sb.requests_made("read") - reads
        assert second == {"followups": in_window, "debts": 200}
        assert in_window < 2000 // 20
        assert spent == 1 + 2  # one page of recent followups, two of debts
        assert sb.requests_made("write") == writes and sb.answered(429) == 0
        print(f"second run: {second['followups']} followups, {spent} reads, 0 429s")

        full = pipeline(tmp_path, "full")
        await run(full, getbill_source(sb.token, base_url=sb.base_url, today=TODAY))
    left, right = tmp_path / "incremental.duckdb", tmp_path / "full.duckdb"
    assert differences(left, right, "followups") == (0, 0, 2003)
    assert differences(left, right, "debts") == (0, 0, 200)
    columns = table_columns(left, "followups")
    assert columns["sentiment"] == "VARCHAR"  # a field the SDK does not know, kept
    for name in ("id", "debt_id", "call_id", "status"):
        assert columns[name] == "VARCHAR"
    assert columns["call_date"] == columns["processed_at"] == "TIMESTAMP WITH TIME ZONE"
    with duckdb.connect(str(left), read_only=True) as db:
        found = db.sql(
            "SELECT call_id, status, call_date FROM getbill.followups WHERE call_id = 'c-2'"
        ).fetchall()
    assert found == [("c-2", "delivered", datetime(2024, 12, 30, 11, tzinfo=timezone.utc))]


@pytest.mark.timeout(60)
async def test_both_resources_spend_one_budget_and_never_exceed_it(tmp_path: Path) -> None:
    # 10 overlapping reads of followups and 1 of debts against a window of 6 reads a second.
    async with Sandbox(followups=900, seed=5, reads=6, window=1.0) as sb:
        budget = RateLimit(reads=6, writes=5, window=1.0)
        source = getbill_source(sb.token, base_url=sb.base_url, rate_limit=budget)
        loaded = await run(pipeline(tmp_path, "budget"), source)
        assert loaded == {"followups": 900, "debts": 90}
        assert sb.requests_made("read") == 11  # 10 overlapping reads of followups, 1 of debts
        assert sb.answered(429) == 0


@pytest.mark.timeout(60)
async def test_two_pipelines_at_once_share_one_redis_budget(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # Each run spends 8 reads (7 overlapping reads of followups, 1 of debts); the window
    # allows 6 a second: together they stay within it only by sharing one ledger.
    limit = RateLimit(reads=6, writes=5, window=1.0)
    async with Sandbox(followups=300, seed=6, reads=6, window=1.0) as sb:

        def source() -> Any:
            return getbill_source(
                sb.token,
                base_url=sb.base_url,
                page_limit=50,
                rate_limit=lambda: RedisBudget(redis_server.url, "getbill:dlt-test", limit),
            )

        runs = [run(pipeline(tmp_path, name), source()) for name in ("one", "two")]
        loaded = await asyncio.gather(*runs)
        assert loaded == [{"followups": 300, "debts": 30}] * 2
        assert sb.requests_made("read") == 16
        assert sb.answered(429) == 0


@pytest.mark.timeout(60)
async def test_credentials_come_from_dlt_secrets_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Sandbox(followups=150, seed=2) as sb:
        monkeypatch.setenv("SOURCES__GETBILL__TOKEN", sb.token)
        monkeypatch.setenv("SOURCES__GETBILL__BASE_URL", sb.base_url)
        pipe = pipeline(tmp_path, "secrets")  # no GETBILL_TOKEN: dlt's config gives it
        assert await run(pipe, getbill_source()) == {"followups": 150, "debts": 15}
    trace = pipe.last_trace
    shown = [str(trace), repr(trace), json.dumps(trace.asdict(), default=str), caplog.text]
    for text in shown:
        assert sb.token not in text


def test_bad_options_are_refused_before_any_request() -> None:
    with pytest.raises(
        ValidationError, match=r"^page_limit: must be an integer from 1 to 100, got 0"
    ):
        getbill_source("t", base_url="http://127.0.0.1:1/v1", page_limit=0)
    with pytest.raises(ValidationError, match=r"^lag_days: must be an integer >= 0"):
        getbill_source("t", base_url="http://127.0.0.1:1/v1", lag_days=-1)
    with pytest.raises(ValidationError, match=r"^today: must be a date or 'YYYY-MM-DD'"):
        getbill_source("t", base_url="http://127.0.0.1:1/v1", today="yesterday")
    with pytest.raises(ValidationError, match="either token, or both client_id and"):
        getbill_source("t", client_id="c", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(
        ConfigurationError, match="rate_limit must be a RateLimit or a BudgetFactory"
    ):
        getbill_source("t", base_url="http://127.0.0.1:1/v1", rate_limit=5)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
def test_without_the_extra_the_import_names_it(tmp_path: Path) -> None:
    probe = (
        "from getbill_async import MissingExtraError\n"
        "try:\n"
        "    import getbill_async.dlt\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    proc = run_without_extras(tmp_path, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "getbill_async.dlt (the dlt source) needs dlt, which is not installed: "
        "pip install 'getbill-async[dlt]'"
    ]
