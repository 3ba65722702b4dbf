"""Parquet export: typed columns read back by pyarrow and DuckDB, unknown fields kept, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox
from tests.loopback import serve
from tests.test_export import StopAfter
from tests.test_export_durability import newer_api, newer_client  # noqa: F401 - a fixture
from tests.test_extras import BLOCKER
from tests.test_sync import bad_date_app

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")


def parquet_ids(path: Path) -> list[str]:
    ids: list[str] = pq.read_table(path, columns=["id"]).column("id").to_pylist()
    return ids


async def test_parquet_reads_back_typed_in_pyarrow_and_duckdb(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "f.parquet"
    report = await client.followups.export(out, format="parquet", limit=50, row_group_pages=4)
    assert report.items == 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]
    table = pq.read_table(out)
    assert table.num_rows == 1000 and parquet_ids(out) == sandbox.followup_ids()
    assert pq.ParquetFile(out).num_row_groups == 1  # 5 parts of 4 pages, gathered in one
    types = {f.name: str(f.type) for f in table.schema}
    assert types["call_date"] == types["processed_at"] == "timestamp[us, tz=UTC]"
    assert types["duration_ms"] == types["email_open_count"] == "int64"
    assert types["is_retry"] == types["email_opened"] == "bool"
    assert types["status"] == types["id"] == types["extra"] == "string"
    first = sandbox.followup(sandbox.followup_ids()[0])
    assert first is not None
    row = table.slice(0, 1).to_pylist()[0]
    assert row["status"] == first["status"] and row["duration_ms"] == first["duration_ms"]
    if first["call_date"]:
        assert row["call_date"] == msgspec.convert(first["call_date"], type=type(row["call_date"]))

    db = duckdb.connect()
    counts = db.execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{out}')")
    assert counts.fetchall() == [(1000, 1000)]
    described = db.execute(f"DESCRIBE SELECT * FROM read_parquet('{out}')").fetchall()
    kinds = {name: kind for name, kind, *_ in described}
    assert kinds["call_date"] == "TIMESTAMP WITH TIME ZONE"
    assert (kinds["duration_ms"], kinds["is_retry"], kinds["status"]) == (
        "BIGINT",
        "BOOLEAN",
        "VARCHAR",
    )


async def test_parquet_keeps_unknown_fields_and_statuses(
    newer_api: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    out = tmp_path / "f.parquet"
    async with newer_client(newer_api) as client:
        await client.followups.export(out, format="parquet")
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["f2", "f1", "f0"]
    assert rows[0]["status"] == "promised"
    assert msgspec.json.decode(rows[0]["extra"]) == {"sentiment": {"score": -0.5, "label": "tense"}}
    assert msgspec.json.decode(rows[1]["extra"]) == {"amount_due": 12.50, "tags": ["a", "b"]}
    assert rows[2]["extra"] is None and rows[0]["summary"] == "=HYPERLINK(1)", "typed, unguarded"
    db = duckdb.connect()
    label = db.execute(
        f"SELECT json_extract_string(extra, '$.sentiment.label') FROM read_parquet('{out}') "
        "WHERE id = 'f2'"
    ).fetchall()
    assert label == [("tense",)]


async def test_parquet_resumes_after_a_crash_each_id_once(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "f.parquet"
    with pytest.raises(KeyboardInterrupt):
        await client.followups.export(
            out, format="parquet", limit=10, row_group_pages=3, progress=StopAfter(8)
        )
    parts = sorted(p.name for p in (tmp_path / "f.parquet.parts").iterdir())
    assert parts == [f"part-00000{n}.parquet" for n in (1, 2, 3)]  # 3+3 pages, 2 more on exit
    before = sandbox.followup_ids()
    sandbox.insert_followups(25)  # newest first: the rest slide onto later pages
    (tmp_path / "f.parquet.parts" / "part-000003.parquet").unlink()  # and the disk lost one
    report = await client.followups.export(
        out, format="parquet", limit=10, row_group_pages=3, resume=True
    )
    ids = parquet_ids(out)
    assert len(ids) == len(set(ids)), "no duplicate"
    assert [i for i in ids if i in set(before)] == before, "no gap, in order"
    assert (report.resumed_from_page, report.repaired_pages) == (6, 2)
    assert not (tmp_path / "f.parquet.parts").exists()


async def test_an_empty_parquet_export_has_the_schema(
    client: GetBillClient, tmp_path: Path
) -> None:
    out = tmp_path / "none.parquet"
    await client.followups.export(out, format="parquet", date_to="1990-01-01")
    table = pq.read_table(out)
    assert table.num_rows == 0 and "extra" in table.column_names


@pytest.mark.timeout(60)
def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GETBILL_TOKEN": "t"}
    args = ["export", "--out", "f.parquet", "--base-url", "http://127.0.0.1:1/v1"]
    proc = subprocess.run(
        [sys.executable, "-m", "getbill_async.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "getbill export: Parquet export needs pyarrow, which is not installed: "
        "pip install 'getbill-async[parquet]'"
    ]


async def test_dates_beyond_the_calendar_in_utc_are_kept_as_the_instants_sent(
    tmp_path: Path,
) -> None:
    # A lying server: year 1 at +01:00 is year 0 in UTC, year 9999 at -01:00 is year 10000.
    # Python's datetime cannot hold either in UTC; Arrow's timestamps can, so the file keeps
    # the instant the server sent (DuckDB reads it), and the export does not fail.
    sent = ["0001-01-01T00:00:00.0+01:00", "9999-12-31T23:30:00-01:00", "2024-01-10T10:30:00Z"]
    items: list[dict[str, object]] = [
        {"id": f"f{i}", "debt_id": "d", "status": "sent", "type": "call", "call_date": stamp}
        for i, stamp in enumerate(sent)
    ]
    out = tmp_path / "f.parquet"
    async with serve(bad_date_app(items)) as url, GetBillClient("t", base_url=f"{url}/v1") as c:
        report = await c.followups.export(out, format="parquet")
        assert report.items == 3
        for suffix in ("jsonl", "csv"):
            await c.followups.export(tmp_path / f"f.{suffix}")
    micros = pq.read_table(out, columns=["call_date"]).column(0).cast(pa.int64()).to_pylist()
    day, epoch_to_year_1 = 86_400 * 10**6, 719_162 * 86_400 * 10**6
    assert micros[0] == -epoch_to_year_1 - 3_600 * 10**6
    assert micros[1] == 2_932_897 * day + 1_800 * 10**6  # 10000-01-01T00:30:00Z
    stamps = duckdb.sql(f"select epoch_us(call_date) from '{out}' order by id").fetchall()
    assert [s[0] for s in stamps] == micros
    lines = (tmp_path / "f.jsonl").read_bytes().splitlines()
    assert [msgspec.json.decode(line)["call_date"] for line in lines] == sent
