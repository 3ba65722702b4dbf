"""Export durability and fidelity: a lost disk tail, unknown fields kept, CSV formula guard."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from getbill_async import DecodeError, GetBillClient, RateLimit, RetryPolicy
from getbill_async.export import ExportError
from getbill_async.sandbox import Sandbox
from tests.loopback import serve
from tests.test_export import StopAfter, jsonl_ids

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def test_a_lost_tail_is_repaired_by_refetching_never_padded(
    client: GetBillClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "f.jsonl"
    with pytest.raises(KeyboardInterrupt):
        await client.followups.export(out, limit=10, progress=StopAfter(6))
    partial = tmp_path / "f.jsonl.partial"
    size = partial.stat().st_size
    with open(partial, "r+b") as handle:  # the disk lost its last 80 bytes behind our back
        handle.truncate(size - 80)
    report = await client.followups.export(out, limit=10, resume=True)
    data = out.read_bytes()
    assert b"\0" not in data
    assert jsonl_ids(out) == sandbox.followup_ids()
    # The damaged commit (the last pages) is fetched again; the ones before it are kept.
    assert report.repaired_pages >= 1 and report.resumed_from_page + report.repaired_pages == 6


async def test_a_tail_lost_past_the_remembered_pages_is_refused_naming_the_file(
    client: GetBillClient, tmp_path: Path
) -> None:
    out = tmp_path / "f.csv"
    with pytest.raises(KeyboardInterrupt):
        await client.followups.export(out, format="csv", limit=10, progress=StopAfter(3))
    partial = tmp_path / "f.csv.partial"
    partial.write_bytes(partial.read_bytes()[:20])  # even the header is gone
    with pytest.raises(ExportError, match=r"f\.csv\.partial.*shorter than its checkpoint"):
        await client.followups.export(out, format="csv", limit=10, resume=True)
    assert b"\0" not in partial.read_bytes() and partial.stat().st_size == 20


async def test_a_checkpoint_of_an_older_version_is_refused_clearly(
    client: GetBillClient, tmp_path: Path
) -> None:
    out = tmp_path / "f.jsonl"
    (tmp_path / "f.jsonl.partial").write_bytes(b"")
    old = {"version": 1, "format": "jsonl", "filters": {}, "limit": 100, "page": 0, "offset": 0}
    (tmp_path / "f.jsonl.checkpoint").write_text(json.dumps(old))
    with pytest.raises(ExportError, match="version 1.*restart"):
        await client.followups.export(out, resume=True)


async def test_an_empty_export_reports_no_change_of_total(
    client: GetBillClient, tmp_path: Path
) -> None:
    out = tmp_path / "none.jsonl"
    report = await client.followups.export(out, date_from="1990-01-01", date_to="1990-01-02")
    assert out.read_bytes() == b"" and report.items == 0
    assert (report.total_at_start, report.total_at_end) == (0, 0)
    assert not report.total_changed


# A server that knows more than the SDK: fields it has never heard of, odd spacing, and text
# cells a spreadsheet would run as formulas.
ITEMS = [
    b'{"id":"f2","debt_id":"d1","status":"promised","type":"call","summary":"=HYPERLINK(1)",'
    b'"notes":"+1 555","sentiment":{"score":-0.5,"label":"tense"},"duration_ms":1200}',
    b'{ "id" : "f1", "debt_id":"d1","status":"sent","type":"sms",\n "summary":"@home",'
    b'"notes":"\\tx","call_id":"-7","amount_due":12.50,"tags":["a","b"]}',
    b'{"id":"f0","debt_id":"d2","status":"sent","type":"email","summary":"fine"}',
]


@pytest.fixture
async def newer_api() -> AsyncIterator[str]:
    async def followups(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        data = ITEMS if page == 1 else []
        body = b'{"data":[' + b",".join(data) + b'],"pagination":{"total":3,"page":'
        body += str(page).encode() + b',"limit":100,"pages":1}}'
        return web.Response(body=body, content_type="application/json")

    async with serve(followups_app(followups)) as base_url:
        yield base_url


def followups_app(followups: Handler) -> web.Application:
    """An API of one endpoint, ``GET /followups``, answered by ``followups``."""
    app = web.Application()
    app.router.add_get("/followups", followups)
    return app


def newer_client(base_url: str) -> GetBillClient:
    return GetBillClient(
        "t", base_url=base_url, rate_limit=RateLimit(reads=100), retry=RetryPolicy(base=0.001)
    )


async def test_jsonl_keeps_every_field_as_the_server_sent_it(
    newer_api: str, tmp_path: Path
) -> None:
    out = tmp_path / "f.jsonl"
    async with newer_client(newer_api) as client:
        await client.followups.export(out)
    lines = out.read_bytes().splitlines()
    assert lines[0] == ITEMS[0] and lines[2] == ITEMS[2], "byte for byte"
    # A record the server spread over lines is made one line, losing nothing.
    assert msgspec.json.decode(lines[1]) == msgspec.json.decode(ITEMS[1])
    assert len(lines) == 3


async def test_an_item_met_again_is_skipped_however_the_server_wrote_its_id(
    tmp_path: Path,
) -> None:
    # Page 1 escapes its ids (they are decoded); by page 2 a followup was inserted ahead, so
    # page 1's last item slid onto page 2, its id now written plainly (read off its bytes).
    pages = {
        1: [b'{"id":"f\\u00e9","n":1}', b'{"id":"g\\u0031","n":2}'],
        2: [b'{"id":"g1","n":2}', b'{"id":"h","n":3}'],
        3: [b'{"id":"i","n":4}'],
    }

    async def followups(request: web.Request) -> web.Response:
        page = int(request.query["page"])
        body = b'{"data":[' + b",".join(pages.get(page, [])) + b'],"pagination":'
        body += b'{"total":5,"page":%d,"limit":2,"pages":3}}' % page
        return web.Response(body=body, content_type="application/json")

    out = tmp_path / "f.jsonl"
    async with serve(followups_app(followups)) as base_url, newer_client(base_url) as client:
        report = await client.followups.export(out, limit=2, concurrency=1)
    lines = out.read_bytes().splitlines()
    assert [msgspec.json.decode(line)["id"] for line in lines] == ["f\u00e9", "g1", "h", "i"]
    assert lines[0] == pages[1][0], "the server's bytes, escapes and all"
    assert (report.items, report.duplicates_skipped) == (4, 1)


async def test_csv_has_an_extra_column_and_guards_formulas(newer_api: str, tmp_path: Path) -> None:
    guarded, raw = tmp_path / "g.csv", tmp_path / "r.csv"
    async with newer_client(newer_api) as client:
        await client.followups.export(guarded, format="csv")
        await client.followups.export(raw, format="csv", formula_guard=False)
    with open(guarded, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["f2", "f1", "f0"]
    assert json.loads(rows[0]["extra"]) == {"sentiment": {"score": -0.5, "label": "tense"}}
    assert json.loads(rows[1]["extra"]) == {"amount_due": 12.50, "tags": ["a", "b"]}
    assert rows[2]["extra"] == ""
    assert rows[0]["status"] == "promised", "a status the SDK does not know is kept"
    assert (rows[0]["summary"], rows[0]["notes"]) == ("'=HYPERLINK(1)", "'+1 555")
    assert (rows[1]["summary"], rows[1]["notes"], rows[1]["call_id"]) == ("'@home", "'\tx", "'-7")
    assert rows[0]["duration_ms"] == "1200" and rows[2]["summary"] == "fine"
    with open(raw, newline="") as handle:
        plain = list(csv.DictReader(handle))
    assert (plain[0]["summary"], plain[1]["notes"]) == ("=HYPERLINK(1)", "\tx")


async def test_an_item_that_is_no_followup_fails_csv_with_a_decode_error(
    tmp_path: Path,
) -> None:
    async def followups(request: web.Request) -> web.Response:
        item = (
            b'{"status":"sent"}' if request.query.get("status") else b'{"id":"f1","status":"sent"}'
        )
        body = b'{"data":[' + item + b"],"
        body += b'"pagination":{"total":1,"page":1,"limit":100,"pages":1}}'
        return web.Response(body=body, content_type="application/json")

    async with serve(followups_app(followups)) as base_url, newer_client(base_url) as client:
        with pytest.raises(DecodeError, match="an item is not a followup.*debt_id"):
            await client.followups.export(tmp_path / "f.csv", format="csv")
        await client.followups.export(tmp_path / "f.jsonl")  # JSONL writes it as it came
        with pytest.raises(DecodeError, match="an item has no string id"):
            await client.followups.export(tmp_path / "g.jsonl", status="sent")
    assert (tmp_path / "f.jsonl").read_bytes() == b'{"id":"f1","status":"sent"}\n'
