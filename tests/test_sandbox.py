"""The sandbox against its docs, over real HTTP on loopback with a raw aiohttp session."""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import re
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
import pytest
from multidict import CIMultiDictProxy

import getbill_async.sandbox as sandbox_pkg
from getbill_async.sandbox import ALL_KINDS, FaultPlan, Sandbox
from getbill_async.sandbox._cli import add_arguments, run
from getbill_async.sandbox._ratelimit import SlidingWindow

Reply = tuple[int, Any, "CIMultiDictProxy[str]"]

FIELDS = (
    "id debt_id status type call_date scheduled_at summary notes call_id audio_url pdf_url "
    "duration_ms disconnection_reason direction phone_number_used is_retry processed_at "
    "triggered_payment email_opened email_open_count email_first_opened_at email_clicked "
    "email_click_count media_urls_expire_at"
).split()
STATUSES = (
    "on_hold scheduled in_progress sent delivered deal_found no_answer deal_not_found "
    "bad_behavior failed cancelled"
).split()
TYPES = "call email sms whatsapp voicemail manual_call physical postmail".split()
DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
ID = re.compile(r"[0-9a-f]{12}")
MEDIA = re.compile(
    r"https://s3\.amazonaws\.com/getbill-sandbox/recordings/call_\d+\.mp3"
    r"\?X-Amz-Expires=3600&X-Amz-Signature=[0-9a-f]{64}"
)


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox(followups=600, seed=7) as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    sb: Sandbox,
    method: str,
    path: str,
    *,
    token: str | None = None,
    auth: bool = True,
    params: dict[str, str] | None = None,
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    sent = dict(headers or {})
    if auth:
        sent["Authorization"] = f"Bearer {token or sb.token}"
    url = sb.base_url + path
    async with http.request(method, url, params=params, json=json, data=data, headers=sent) as r:
        raw = await r.read()
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = raw  # a "truncated" or "non_json" fault
        return r.status, body, r.headers


async def get(http: aiohttp.ClientSession, sb: Sandbox, path: str, **params: str) -> Any:
    status, body, _ = await call(http, sb, "GET", path, params=params)
    assert status == 200, body
    return body


async def walk(http: aiohttp.ClientSession, sb: Sandbox, path: str, **params: str) -> list[str]:
    ids: list[str] = []
    page = 1
    while True:
        body = await get(http, sb, path, page=str(page), limit="100", **params)
        if not body["data"]:
            assert page == body["pagination"]["pages"] + 1
            return ids
        ids.extend(item["id"] for item in body["data"])
        page += 1


def activity_day(item: dict[str, Any]) -> str | None:
    stamp = item["call_date"] or item["scheduled_at"]
    return None if stamp is None else str(stamp)[:10]


def max_in_window(times: Iterable[float], window: float) -> int:
    ordered, best, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_all_is_complete() -> None:
    public = {n for n in dir(sandbox_pkg) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(sandbox_pkg.__all__)
    assert {"Sandbox", "FaultPlan"} <= set(sandbox_pkg.__all__)


# --- shapes and data ----------------------------------------------------------------------


async def test_list_envelope_and_record_shape(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    body = await get(http, sb, "/followups")
    assert body["error"] is False and set(body) == {"error", "data", "pagination"}
    assert body["pagination"] == {"total": 600, "page": 1, "limit": 20, "pages": 30}
    assert len(body["data"]) == 20
    for item in body["data"]:
        expected = FIELDS[:-1] if item["type"] == "email" else FIELDS
        assert list(item) == expected
        assert ID.fullmatch(item["id"]) and ID.fullmatch(item["debt_id"])
        for key in ("call_date", "scheduled_at", "processed_at", "media_urls_expire_at"):
            assert item.get(key) is None or DATETIME.fullmatch(item[key])


async def test_seeded_data_has_the_documented_variety(sb: Sandbox) -> None:
    items = [sb.followup(i) for i in sb.followup_ids()]
    records = [item for item in items if item is not None]
    assert {r["type"] for r in records} == set(TYPES)
    assert {r["status"] for r in records} == set(STATUSES)
    assert {r["direction"] for r in records} == {"inbound", "outbound", None}
    nullable = (
        "summary notes call_id audio_url pdf_url duration_ms disconnection_reason direction "
        "phone_number_used processed_at email_first_opened_at call_date scheduled_at"
    ).split()
    for key in nullable:
        assert any(r[key] is None for r in records), key
        assert any(r[key] is not None for r in records), key
    for r in records:
        assert "2023-01-01" <= (activity_day(r) or "2023-01-01") <= "2024-12-31"
        if r["type"] == "email":
            assert "media_urls_expire_at" not in r
        else:
            assert r["email_open_count"] == 0 and r["email_opened"] is False
            assert DATETIME.fullmatch(r["media_urls_expire_at"])
        if r["type"] == "postmail":
            assert r["pdf_url"].startswith("https://s3.amazonaws.com/getbill-sandbox/letters/")
        if r["call_id"] is not None:
            assert r["type"] in ("call", "voicemail", "manual_call")
            assert isinstance(r["duration_ms"], int) and r["direction"] in ("inbound", "outbound")
            assert r["audio_url"] is None or MEDIA.fullmatch(r["audio_url"])
    emails = [r for r in records if r["type"] == "email" and r["email_opened"]]
    assert emails and all(r["email_open_count"] >= 1 for r in emails)


async def test_same_seed_same_data_other_seed_other_ids() -> None:
    one, two, other = (
        Sandbox(followups=300, seed=3),
        Sandbox(followups=300, seed=3),
        Sandbox(followups=300, seed=4),
    )
    assert one.followup_ids() == two.followup_ids()
    assert [one.followup(i) for i in one.followup_ids()] == [
        two.followup(i) for i in two.followup_ids()
    ]
    assert one.debt_ids() == two.debt_ids() and one.token == two.token
    assert not set(one.followup_ids()) & set(other.followup_ids())


async def test_an_empty_sandbox(http: aiohttp.ClientSession) -> None:
    async with Sandbox(followups=0) as sb:
        body = await get(http, sb, "/followups")
        assert body["data"] == [] and body["pagination"]["pages"] == 0
        debts = await get(http, sb, "/debts")
        assert len(debts["data"]) == 1 and debts["data"][0]["followups_count"] == 0


async def test_get_one_and_not_found(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    first = sb.followup_ids()[5]
    body = await get(http, sb, f"/followups/{first}")
    assert body == {"error": False, "message": "Success", "data": sb.followup(first)}
    for missing in ("ffffffffffff", "nope", "ABCDEF123456"):
        status, body, _ = await call(http, sb, "GET", f"/followups/{missing}")
        assert (status, body) == (
            404,
            {"error": True, "message": "Followup not found", "code": 404},
        )


async def test_followups_of_a_debt(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    debt_id = sb.debt_ids()[3]
    ids = await walk(http, sb, f"/followups/debt/{debt_id}")
    assert ids and ids == sb.followup_ids(debt_id=debt_id)
    assert ids == await walk(http, sb, "/followups", debt_id=debt_id)
    debt = await get(http, sb, f"/debts/{debt_id}")
    assert debt["data"]["followups_count"] == len(ids)
    status, body, _ = await call(http, sb, "GET", "/followups/debt/000000000000")
    assert (status, body["message"]) == (404, "Debt not found")


async def test_debts(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    body = await get(http, sb, "/debts", limit="100")
    assert body["pagination"] == {"total": 60, "page": 1, "limit": 100, "pages": 1}
    assert [d["id"] for d in body["data"]] == sb.debt_ids()
    debt = body["data"][0]
    assert (
        list(debt)
        == (
            "id firstname lastname phone email amount currency status invoice_reference due_date "
            "followups_count payment_link created_at updated_at"
        ).split()
    )
    assert debt["currency"] == "EUR" and isinstance(debt["amount"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", debt["due_date"])
    assert sum(d["followups_count"] for d in body["data"]) == 600
    assert "promise_to_pay" in {d["status"] for d in body["data"]}
    paid = await get(http, sb, "/debts", status="promise_to_pay")
    assert paid["data"] and all(d["status"] == "promise_to_pay" for d in paid["data"])
    custom = await get(http, sb, "/debts", status="not_a_status_here")
    assert custom["data"] == [] and custom["pagination"]["pages"] == 0
    assert (await get(http, sb, f"/debts/{debt['id']}"))["data"] == debt
    status, body, _ = await call(http, sb, "GET", "/debts/000000000000")
    assert (status, body["message"]) == (404, "Debt not found")


# --- filters and pagination ---------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"status": "delivered"},
        {"type": "call"},
        {"status": "no_answer", "type": "email"},
        {"date_from": "2024-03-01"},
        {"date_to": "2023-06-30"},
        {"date_from": "2023-05-10", "date_to": "2023-05-10"},
        {"date_from": "2024-01-01", "date_to": "2024-06-30", "type": "sms"},
    ],
)
async def test_filters_match_the_stored_records(
    http: aiohttp.ClientSession, sb: Sandbox, params: dict[str, str]
) -> None:
    def wanted(item: dict[str, Any]) -> bool:
        day = activity_day(item)
        if ("date_from" in params or "date_to" in params) and day is None:
            return False
        return (
            item["status"] == params.get("status", item["status"])
            and item["type"] == params.get("type", item["type"])
            and (day or "") >= params.get("date_from", "")
            and (day or "") <= params.get("date_to", "9999")
        )

    expected = [i for i in sb.followup_ids() if wanted(sb.followup(i) or {})]
    got = await walk(http, sb, "/followups", **params)
    assert got == expected == sb.followup_ids(**params)
    assert got


async def test_pagination_walk_and_edges(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    assert await walk(http, sb, "/followups") == sb.followup_ids()
    body = await get(http, sb, "/followups", page="7", limit="100")
    assert body["data"] == [] and body["pagination"] == {
        "total": 600,
        "page": 7,
        "limit": 100,
        "pages": 6,
    }
    body = await get(http, sb, "/followups", limit="7")
    assert body["pagination"]["pages"] == math.ceil(600 / 7)
    body = await get(http, sb, "/followups", debt_id="000000000000")
    assert body["data"] == [] and body["pagination"]["total"] == 0
    assert body["pagination"]["pages"] == 0


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"page": "0"}, "page", "Must be at least 1"),
        ({"page": "two"}, "page", "Must be an integer"),
        ({"limit": "0"}, "limit", "Must be between 1 and 100"),
        ({"limit": "101"}, "limit", "Must be between 1 and 100"),
        ({"limit": "1.5"}, "limit", "Must be an integer"),
        ({"status": "done"}, "status", "Must be one of: " + ", ".join(STATUSES)),
        ({"type": "fax"}, "type", "Must be one of: " + ", ".join(TYPES)),
        ({"date_from": "2024-02-30"}, "date_from", "Must be a date in YYYY-MM-DD format"),
        ({"date_to": "2024/01/01"}, "date_to", "Must be a date in YYYY-MM-DD format"),
        ({"date_from": "2024-02-02", "date_to": "2024-02-01"}, "date_to", "Must be on or after"),
    ],
)
async def test_query_validation(
    http: aiohttp.ClientSession, sb: Sandbox, params: dict[str, str], field: str, message: str
) -> None:
    status, body, _ = await call(http, sb, "GET", "/followups", params=params)
    assert status == 400
    assert body["error"] is True and body["message"] == "Validation failed"
    assert body["code"] == 400 and body["details"][field][0].startswith(message)


async def test_insert_followups_come_first(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    before = sb.followup_ids(status="delivered")
    debt_id = sb.debt_ids()[0]
    new = sb.insert_followups(30, debt_id=debt_id)
    assert sb.followup_ids()[:30] == new
    body = await get(http, sb, "/followups", limit="30")
    assert [i["id"] for i in body["data"]] == new and body["pagination"]["total"] == 630
    delivered = [i for i in new if (sb.followup(i) or {})["status"] == "delivered"]
    assert sb.followup_ids(status="delivered") == delivered + before
    assert await walk(http, sb, "/followups", status="delivered") == delivered + before
    assert set(new) <= set(sb.followup_ids(debt_id=debt_id))
    with pytest.raises(ValueError):
        sb.insert_followups(1, debt_id="000000000000")


# --- writes ---------------------------------------------------------------------------------


async def test_create(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    debt_id = sb.debt_ids()[2]
    count_before = (await get(http, sb, f"/debts/{debt_id}"))["data"]["followups_count"]
    payload = {
        "debt_id": debt_id,
        "type": "call",
        "call_date": "2024-05-01T12:00:00Z",
        "scheduled_at": "2024-05-01T13:30:00+02:00",
        "call_id": "call_42",
        "duration_ms": 1000,
        "direction": "inbound",
        "is_retry": True,
        "summary": None,
    }
    status, body, _ = await call(http, sb, "POST", "/followups", json=payload)
    assert status == 201
    assert body["error"] is False and body["message"] == "Followup created successfully"
    data = body["data"]
    assert list(data) == FIELDS[:-1]
    assert data["status"] == "on_hold" and data["debt_id"] == debt_id
    assert data["call_date"] == "2024-05-01T12:00:00+00:00"
    assert data["scheduled_at"] == "2024-05-01T11:30:00+00:00"
    assert data["is_retry"] is True and data["duration_ms"] == 1000
    assert sb.followup_ids()[0] == data["id"]
    assert (await get(http, sb, f"/followups/{data['id']}"))["data"] == data
    assert sb.created_per_call_id() == {"call_42": 1}
    assert sb.followup_ids(date_from="2024-05-01", date_to="2024-05-01")[0] == data["id"]
    after = (await get(http, sb, f"/debts/{debt_id}"))["data"]["followups_count"]
    assert after == count_before + 1
    status, body, _ = await call(
        http, sb, "POST", "/followups", json={"debt_id": debt_id, "type": "email"}
    )
    assert status == 201 and sb.created_per_call_id() == {"call_42": 1}


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"type": "call"}, "debt_id", "This field is required"),
        ({"debt_id": "x"}, "type", "This field is required"),
        ({"type": "fax"}, "type", "Must be one of: " + ", ".join(TYPES)),
        ({"type": "call", "status": "done"}, "status", "Must be one of: " + ", ".join(STATUSES)),
        ({"type": "call", "status": None}, "status", "Must be one of"),
        ({"type": "call", "direction": "up"}, "direction", "Must be one of: inbound, outbound"),
        ({"type": "call", "call_date": "yesterday"}, "call_date", "Must be in ISO 8601"),
        ({"type": "call", "scheduled_at": "2024-01-01"}, "scheduled_at", "Must be in ISO 8601"),
        ({"type": "call", "duration_ms": "10"}, "duration_ms", "Must be a non-negative"),
        ({"type": "call", "duration_ms": True}, "duration_ms", "Must be a non-negative"),
        ({"type": "call", "is_retry": "yes"}, "is_retry", "Must be a boolean"),
        ({"type": "call", "notes": 5}, "notes", "Must be a string or null"),
        ({"type": "call", "pdf_url": "x"}, "pdf_url", "Unknown field"),
    ],
)
async def test_create_validation(
    http: aiohttp.ClientSession, sb: Sandbox, payload: dict[str, Any], field: str, message: str
) -> None:
    body_in = {"debt_id": sb.debt_ids()[0], **payload}
    if field == "debt_id":
        del body_in["debt_id"]
    status, body, _ = await call(http, sb, "POST", "/followups", json=body_in)
    assert status == 400 and body["message"] == "Validation failed", body
    assert body["details"][field][0].startswith(message)
    assert len(sb.followup_ids()) == 600


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"[1, 2]", "application/json"), (b"{nope", "application/json"), (b"{}", "text/plain")],
)
async def test_create_body_must_be_a_json_object(
    http: aiohttp.ClientSession, sb: Sandbox, data: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    status, body, _ = await call(http, sb, "POST", "/followups", data=data, headers=headers)
    assert status == 400 and list(body["details"]) == ["body"]


async def test_create_for_unknown_debt_is_422(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    payload = {"debt_id": "000000000000", "type": "sms"}
    status, body, _ = await call(http, sb, "POST", "/followups", json=payload)
    assert status == 422 and body["message"] == "Validation failed" and body["code"] == 422
    assert list(body["details"]) == ["debt_id"]


async def test_update(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    target = sb.followup_ids(status="delivered")[3]
    before = sb.followup(target) or {}
    delivered = await walk(http, sb, "/followups", status="delivered")
    changes = {"status": "deal_found", "notes": "paid by card", "call_date": None}
    status, body, _ = await call(http, sb, "PUT", f"/followups/{target}", json=changes)
    assert status == 200 and body["message"] == "Followup updated successfully"
    assert body["data"] == {**before, **changes} == sb.followup(target)
    assert target not in await walk(http, sb, "/followups", status="delivered")
    assert len(sb.followup_ids(status="delivered")) == len(delivered) - 1
    assert target in sb.followup_ids(status="deal_found")
    status, body, _ = await call(
        http, sb, "PUT", f"/followups/{target}", json={"debt_id": sb.debt_ids()[0]}
    )
    assert status == 400 and body["details"] == {"debt_id": ["debt_id cannot be changed"]}
    status, body, _ = await call(http, sb, "PUT", f"/followups/{target}", json={"type": "x"})
    assert status == 400 and list(body["details"]) == ["type"]
    status, body, _ = await call(http, sb, "PUT", "/followups/ffffffffffff", json={})
    assert (status, body["message"]) == (404, "Followup not found")


# --- auth, scopes, tokens -------------------------------------------------------------------


async def test_scopes(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    sb.add_token("reader", scopes=("followups:read",), client="c2")
    assert (await call(http, sb, "GET", "/followups", token="reader"))[0] == 200
    status, body, headers = await call(
        http, sb, "POST", "/followups", token="reader", json={"type": "call"}
    )
    assert (status, body) == (
        403,
        {
            "error": True,
            "message": 'Required scope "followups:write" not found in token',
            "code": 403,
        },
    )
    assert headers["X-RateLimit-Remaining"] == "500"
    status, body, _ = await call(http, sb, "GET", "/debts", token="reader")
    assert status == 403 and body["message"] == 'Required scope "debts:read" not found in token'
    assert sb.arrivals("c2", "write") == [] and len(sb.arrivals("c2", "read")) == 1


async def test_unauthenticated(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    expected = {"error": True, "message": "Authentication credentials are missing or invalid"}
    sb.add_token("old", expires_in=0)
    for token, auth in ((None, False), ("wrong", True), ("old", True)):
        status, body, _ = await call(http, sb, "GET", "/followups", token=token, auth=auth)
        assert (status, body) == (401, {**expected, "code": 401})
    status, _, _ = await call(
        http, sb, "GET", "/followups", auth=False, headers={"Authorization": sb.token}
    )
    assert status == 401 and sb.stats.by_status[401] == 4 and sb.arrivals() == []


async def test_token_endpoint(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Sandbox(followups=50, token_lifetime=60, clock=clock) as sb:
        assert set(sb.clients) == {"sandbox-client"}
        form = {
            "grant_type": "client_credentials",
            "client_id": sb.client_id,
            "client_secret": sb.client_secret,
        }

        async def token(**changes: str) -> tuple[int, Any]:
            async with http.post(sb.token_url, data={**form, **changes}) as r:
                return r.status, await r.json()

        status, body = await token(scope="followups:read followups:write")
        assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 60
        assert body["scope"] == "followups:read followups:write"
        issued = body["access_token"]
        assert (await call(http, sb, "GET", "/followups", token=issued))[0] == 200
        assert len(sb.arrivals("sandbox-client")) == 1 and sb.arrivals() == []
        assert (await call(http, sb, "GET", "/debts", token=issued))[0] == 403
        status, body = await token()
        assert body["scope"].split() == list(sb.clients["sandbox-client"].scopes)
        assert (await token(client_secret="bad"))[1]["error"] == "invalid_client"
        assert (await token(client_id="who"))[0] == 401
        assert (await token(grant_type="password")) == (
            400,
            {"error": "unsupported_grant_type", "error_description": "only client_credentials"},
        )
        assert (await token(scope="followups:read admin"))[1]["error"] == "invalid_scope"
        sb.add_client("narrow", "s3cret", scopes=("followups:read",))
        basic = {"Authorization": "Basic " + base64.b64encode(b"narrow:s3cret").decode()}
        grant = {"grant_type": "client_credentials"}
        data = {**grant, "scope": "debts:read"}
        async with http.post(sb.token_url, data=data, headers=basic) as r:
            assert (r.status, (await r.json())["error"]) == (400, "invalid_scope")
        async with http.post(sb.token_url, data=grant, headers=basic) as r:
            assert (await r.json())["scope"] == "followups:read"
        assert sb.stats.token_requests == 8
        clock.now += 59.9
        assert (await call(http, sb, "GET", "/followups", token=issued))[0] == 200
        clock.now += 0.1
        assert (await call(http, sb, "GET", "/followups", token=issued))[0] == 401


async def test_unknown_route_answers_the_envelope(http: aiohttp.ClientSession, sb: Sandbox) -> None:
    status, body, _ = await call(http, sb, "GET", "/nothing")
    assert (status, body["error"], body["code"]) == (404, True, 404)
    status, body, _ = await call(http, sb, "DELETE", "/followups/abc")
    assert (status, body["code"]) == (405, 405)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/followups/abc", {"GET", "PUT"}),
        ("PATCH", "/followups", {"GET", "POST"}),
        ("POST", "/debts/d1", {"GET"}),
    ],
)
async def test_method_not_allowed_names_the_allowed_methods(
    http: aiohttp.ClientSession, sb: Sandbox, method: str, path: str, allowed: set[str]
) -> None:
    # RFC 9110 15.5.6: a 405 carries Allow, the methods the resource supports.
    status, body, headers = await call(http, sb, method, path)
    assert (status, body["code"]) == (405, 405)
    assert {m.strip() for m in headers["Allow"].split(",")} == allowed
    async with http.get(sb.token_url) as r:
        assert (r.status, r.headers["Allow"]) == (405, "POST")


# --- rate limits ----------------------------------------------------------------------------


def test_sliding_window_with_a_fake_clock() -> None:
    clock = FakeClock()
    window = SlidingWindow(2, 10.0, clock=clock, wall=lambda: 1_000.0)
    assert window.admit() and window.remaining() == 1
    clock.now += 4.0
    assert window.admit() and not window.admit() and window.remaining() == 0
    assert window.seconds_until_free() == pytest.approx(6.0)
    assert window.retry_after() == 6.0
    clock.now += 5.9995
    assert not window.admit() and window.retry_after() == 0.001
    clock.now += 0.0005  # exactly 10 s after the first arrival: its slot is free
    assert window.admit() and not window.admit()
    assert window.arrivals() == [100.0, 104.0, 110.0]
    assert window.headers() == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1004",
        "X-RateLimit-Window": "10",
    }
    hourly = SlidingWindow(1, 3600.0, clock=clock)
    assert hourly.admit() and not hourly.admit()
    clock.now += 0.5
    assert hourly.retry_after() == 3600.0


async def test_rate_limit_headers_and_429(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Sandbox(followups=20, reads=3, writes=1, window=60.0, clock=clock) as sb:
        remaining = []
        for _ in range(3):
            status, _, headers = await call(http, sb, "GET", "/followups")
            assert status == 200 and headers["X-RateLimit-Limit"] == "3"
            assert headers["X-RateLimit-Window"] == "60"
            remaining.append(headers["X-RateLimit-Remaining"])
            clock.now += 1.0
        assert remaining == ["2", "1", "0"]
        start = time.time()
        status, body, headers = await call(http, sb, "GET", "/followups/abc")
        assert status == 429 and headers["X-RateLimit-Remaining"] == "0"
        assert body["message"] == "Rate limit exceeded. Please try again later."
        assert body["code"] == 429 and body["error"] is True
        assert body["details"]["retry_after"] == 57 and body["details"]["limit"] == 3
        assert isinstance(body["details"]["retry_after"], int)
        reset = datetime.fromisoformat(body["details"]["reset_time"]).timestamp()
        assert reset == pytest.approx(start + 57, abs=2)
        assert int(headers["X-RateLimit-Reset"]) == pytest.approx(start + 57, abs=2)
        assert sb.stats.rate_limited == 1 and len(sb.arrivals()) == 3
        status, _, headers = await call(http, sb, "POST", "/followups", json={})
        assert status == 400 and headers["X-RateLimit-Limit"] == "1"
        assert (await call(http, sb, "POST", "/followups", json={}))[0] == 429
        clock.now += 57.0  # the first read's slot frees; the 429 took none
        assert (await call(http, sb, "GET", "/followups"))[0] == 200
        assert (await call(http, sb, "GET", "/followups"))[0] == 429


async def test_sliding_window_is_exact_in_real_time(http: aiohttp.ClientSession) -> None:
    async with Sandbox(followups=20, reads=5, window=0.3) as sb:
        done = 0
        began = time.monotonic()
        while done < 15:
            status, body, _ = await call(http, sb, "GET", "/followups", params={"limit": "1"})
            if status == 429:
                retry = body["details"]["retry_after"]
                assert 0 < retry <= 0.3
                await asyncio.sleep(retry)
            else:
                done += 1
        assert time.monotonic() - began >= 0.6
        arrivals = sb.arrivals()
        assert len(arrivals) == 15 and max_in_window(arrivals, 0.3) == 5
        assert sb.stats.rate_limited >= 2


# --- faults ---------------------------------------------------------------------------------


def test_fault_plan_parse() -> None:
    plan = FaultPlan.parse("500:0.02,reset_after:0.01,slow:0.01", seed=9)
    assert plan.rate == pytest.approx(0.04) and plan.seed == 9
    assert plan.kinds == {"500": 0.02, "reset_after": 0.01, "slow": 0.01}
    plan = FaultPlan.parse("500@7, reset_before@12,503:0.1")
    assert plan.at == {7: "500", 12: "reset_before"} and plan.rate == pytest.approx(0.1)
    assert FaultPlan.parse("504@1").rate == 0.0
    for bad in ("teapot:0.1", "500", "500@x", "500:lots", "500:2"):
        with pytest.raises(ValueError):
            FaultPlan.parse(bad)
    assert set(ALL_KINDS) >= {"storm429", "commit_500", "non_json", "truncated"}


def _create(sb: Sandbox, call_id: str) -> dict[str, Any]:
    return {"debt_id": sb.debt_ids()[0], "type": "call", "call_id": call_id}


@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
async def test_gateway_errors_do_not_act(http: aiohttp.ClientSession, kind: str) -> None:
    async with Sandbox(followups=20, faults=FaultPlan(at={1: kind, 2: kind})) as sb:
        status, body, headers = await call(http, sb, "POST", "/followups", json=_create(sb, "c"))
        assert status == int(kind) and body["code"] == int(kind) and body["error"] is True
        assert headers["X-RateLimit-Remaining"] == "499"
        assert (await call(http, sb, "GET", "/followups"))[0] == int(kind)
        assert sb.created_per_call_id() == {} and len(sb.followup_ids()) == 20
        assert sb.stats.faults_injected == {kind: 2} and len(sb.arrivals(cls="write")) == 1


@pytest.mark.parametrize(("kind", "committed"), [("reset_before", 0), ("reset_after", 1)])
async def test_connection_resets(http: aiohttp.ClientSession, kind: str, committed: int) -> None:
    async with Sandbox(followups=20, faults=FaultPlan(at={1: kind})) as sb:
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, sb, "POST", "/followups", json=_create(sb, "c-1"))
        assert sb.created_per_call_id() == ({"c-1": 1} if committed else {})
        assert len(sb.followup_ids()) == 20 + committed
        assert (await call(http, sb, "GET", "/followups"))[0] == 200
        assert sb.stats.faults_injected == {kind: 1} and sb.stats.requests == 2


async def test_truncated_and_non_json(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan(at={1: "truncated", 2: "non_json", 3: "truncated", 4: "non_json"})
    async with Sandbox(followups=20, faults=plan) as sb:
        for path in ("/followups", "/followups"):
            status, body, _ = await call(http, sb, "GET", path)
            assert status == 200 and isinstance(body, bytes)
        for number, call_id in ((3, "t"), (4, "n")):
            url = sb.base_url + "/followups"
            headers = {"Authorization": f"Bearer {sb.token}"}
            async with http.post(url, json=_create(sb, call_id), headers=headers) as r:
                raw = await r.read()
                assert r.status == 201
                if number == 3:
                    assert r.content_type == "application/json"
                    with pytest.raises(msgspec.DecodeError):
                        msgspec.json.decode(raw)
                else:
                    assert r.content_type == "text/html" and raw.startswith(b"<!DOCTYPE html>")
        assert sb.created_per_call_id() == {"t": 1, "n": 1}
        assert sb.stats.faults_injected == {"truncated": 2, "non_json": 2}


async def test_slow_answers_after_acting(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan(at={1: "slow", 2: "slow"}, slow_seconds=0.4)
    async with Sandbox(followups=20, faults=plan) as sb:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call(http, sb, "POST", "/followups", json=_create(sb, "s")), 0.1)
        assert sb.created_per_call_id() == {"s": 1}
        began = time.monotonic()
        assert (await call(http, sb, "GET", "/followups"))[0] == 200
        assert time.monotonic() - began >= 0.35


async def test_stop_does_not_wait_for_a_slow_answer(http: aiohttp.ClientSession) -> None:
    sb = Sandbox(followups=20, faults=FaultPlan(at={1: "slow"}, slow_seconds=30.0))
    await sb.start()
    task = asyncio.create_task(call(http, sb, "GET", "/followups"))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    await sb.stop()
    assert time.monotonic() - began < 2.0
    await asyncio.gather(task, return_exceptions=True)


async def test_storm429(http: aiohttp.ClientSession) -> None:
    async with Sandbox(followups=20, faults=FaultPlan(at={1: "storm429"}, storm_length=3)) as sb:
        for _ in range(2):
            status, body, headers = await call(http, sb, "GET", "/followups")
            assert status == 429 and body["details"]["retry_after"] == 0.05
            assert body["details"]["limit"] == 1000 and headers["X-RateLimit-Remaining"] == "1000"
        assert (await call(http, sb, "POST", "/followups", json=_create(sb, "w")))[0] == 201
        assert (await call(http, sb, "GET", "/followups"))[0] == 429
        assert (await call(http, sb, "GET", "/followups"))[0] == 200
        assert len(sb.arrivals()) == 1 and sb.stats.rate_limited == 0
        assert sb.stats.faults_injected == {"storm429": 3}


async def test_commit_500(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan(at={1: "commit_500", 2: "commit_500", 3: "commit_500"})
    async with Sandbox(followups=20, faults=plan) as sb:
        status, body, _ = await call(http, sb, "POST", "/followups", json=_create(sb, "k"))
        assert (status, body["code"]) == (500, 500)
        target = sb.followup_ids()[0]
        status, _, _ = await call(http, sb, "PUT", f"/followups/{target}", json={"notes": "n"})
        assert status == 500 and (sb.followup(target) or {})["notes"] == "n"
        assert (await call(http, sb, "GET", "/followups"))[0] == 500
        assert sb.created_per_call_id() == {"k": 1}


async def test_random_faults_are_deterministic(http: aiohttp.ClientSession) -> None:
    async def statuses() -> tuple[list[int], dict[str, int]]:
        plan = FaultPlan(rate=0.3, kinds=("500", "503"), seed=5)
        async with Sandbox(followups=20, faults=plan) as sb:
            got = [(await call(http, sb, "GET", "/followups"))[0] for _ in range(40)]
            return got, dict(sb.stats.faults_injected)

    first, second = await statuses(), await statuses()
    assert first == second
    assert 0 < first[0].count(500) + first[0].count(503) < 40
    assert sum(first[1].values()) == 40 - first[0].count(200)


async def test_latency(http: aiohttp.ClientSession) -> None:
    async with Sandbox(followups=20, latency=0.1) as sb:
        began = time.monotonic()
        assert (await call(http, sb, "GET", "/followups"))[0] == 200
        assert time.monotonic() - began >= 0.1


# --- scale and command line -----------------------------------------------------------------


async def test_a_million_followups(http: aiohttp.ClientSession) -> None:
    began = time.perf_counter()
    sb = Sandbox(followups=1_000_000, seed=2)
    assert time.perf_counter() - began < 8.0
    # The whole test process, a million rows included, stays far below a gigabyte.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert peak_kib < 700 * 1024
    async with sb:
        for page in ("1", "10000", "10001"):
            began = time.perf_counter()
            body = await get(http, sb, "/followups", page=page, limit="100")
            assert time.perf_counter() - began < 1.0
            assert body["pagination"] == {
                "total": 1_000_000,
                "page": int(page),
                "limit": 100,
                "pages": 10_000,
            }
            assert len(body["data"]) == (0 if page == "10001" else 100)
        body = await get(http, sb, "/followups", status="failed", page="3", limit="100")
        assert {item["status"] for item in body["data"]} == {"failed"}


def test_cli_rejects_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--faults", "teapot:1"])) == 2
    assert "unknown fault kind" in capsys.readouterr().err


async def test_cli_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    script = (
        "import argparse, sys\n"
        "from getbill_async.sandbox._cli import add_arguments, run\n"
        "p = argparse.ArgumentParser(); add_arguments(p)\n"
        "sys.exit(run(p.parse_args(sys.argv[1:])))\n"
    )
    args = ["--port", "0", "--followups", "50", "--faults", "500@2"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        lines: dict[str, str] = {}
        while "client secret" not in lines:
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            assert line, "sandbox exited early"
            key, _, value = line.partition(":")
            lines[key.strip()] = value.strip()
        assert lines["client id"] == "sandbox-client"
        headers = {"Authorization": f"Bearer {lines['static token']}"}
        for expected in (200, 500):
            async with http.get(lines["base URL"] + "/followups", headers=headers) as r:
                assert r.status == expected
    finally:
        proc.terminate()
        code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 0
