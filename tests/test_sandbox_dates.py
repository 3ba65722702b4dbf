"""The sandbox's datetimes at the ends of the calendar: stored in UTC, or a 422 naming the
field, never a 5xx.

A well-formed ISO 8601 datetime whose UTC instant falls before year 1 or after year 9999
(`0001-01-01T00:00:00.0+01:00` is 23:00 on the last day of year 0) once answered 500: the
normalization to UTC overflowed. Each class of such input has its own test, and a property
test walks years 1 and 9999, offsets up to +-23:59 and fractions of any length.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbill_async.sandbox import Sandbox
from getbill_async.sandbox._validate import parse_body_fields

RANGE = (
    "Must fall between 0001-01-01T00:00:00+00:00 and 9999-12-31T23:59:59.999999+00:00 "
    "once converted to UTC"
)
SPAN = datetime.max - datetime.min  # what a UTC datetime can hold
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox(followups=50, seed=3, reads=10**6, writes=10**6) as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def send(
    http: aiohttp.ClientSession, sb: Sandbox, method: str, path: str, body: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {sb.token}"}
    async with http.request(method, sb.base_url + path, json=body, headers=headers) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


async def a_debt(http: aiohttp.ClientSession, sb: Sandbox) -> str:
    status, body = await send(http, sb, "GET", "/debts?limit=1", None)
    assert status == 200
    return str(body["data"][0]["id"])


def expected(text: str, naive: datetime, offset_minutes: int) -> str | None:
    """The UTC value the sandbox should store for `text`, or None when out of range;
    computed apart from the sandbox: timedelta arithmetic cannot overflow here."""
    from_min = naive - datetime.min - timedelta(minutes=offset_minutes)
    if not timedelta(0) <= from_min <= SPAN:
        return None
    return (datetime.min + from_min).replace(tzinfo=timezone.utc).isoformat()


@st.composite
def stamps(draw: st.DrawFn) -> tuple[str, str | None]:
    """An ISO 8601 datetime near or at the calendar's ends, and what the sandbox stores."""
    year = draw(st.sampled_from([1, 2, 9998, 9999]) | st.integers(1, 9999))
    month = draw(st.sampled_from([1, 12]) | st.integers(1, 12))
    day = draw(st.sampled_from([1, 28]) | st.integers(1, 28))
    if (month, day) == (12, 28) and draw(st.booleans()):
        day = 31
    hour, minute, second = draw(
        st.sampled_from([(0, 0, 0), (23, 59, 59)])
        | st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
    )
    digits = draw(st.text("0123456789", min_size=0, max_size=9))
    fraction = "." + digits if digits else ""
    micro = int(digits[:6].ljust(6, "0")) if digits else 0
    sign = draw(st.sampled_from([1, -1]))
    hours, minutes = draw(
        st.sampled_from([(23, 59), (0, 0), (1, 0)])
        | st.tuples(st.integers(0, 23), st.integers(0, 59))
    )
    offset = sign * (hours * 60 + minutes)
    suffix = draw(
        st.sampled_from(
            [f"{'+' if sign > 0 else '-'}{hours:02d}:{minutes:02d}"]
            + (["Z", ""] if offset == 0 else [])
        )
    )
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}"
    naive = datetime(year, month, day, hour, minute, second, micro)
    return text + suffix, expected(text, naive, offset)


@given(stamp=stamps(), name=st.sampled_from(["call_date", "scheduled_at"]))
@settings(SETTINGS, max_examples=200)
def test_validation_normalizes_or_names_the_field(stamp: tuple[str, str | None], name: str) -> None:
    text, stored = stamp
    fields, details = parse_body_fields({"debt_id": "d", "type": "call", name: text}, create=True)
    if stored is None:
        assert details == {name: [RANGE]}
    else:
        assert details == {} and fields[name] == stored


@given(stamp=stamps(), update=st.booleans())
@SETTINGS
async def test_over_http_a_create_or_update_is_stored_or_a_422(
    sb: Sandbox, http: aiohttp.ClientSession, stamp: tuple[str, str | None], update: bool
) -> None:
    text, stored = stamp
    debt = await a_debt(http, sb)
    if update:
        status, body = await send(http, sb, "POST", "/followups", {"debt_id": debt, "type": "sms"})
        assert status == 201
        path = "/followups/" + body["data"]["id"]
        status, body = await send(http, sb, "PUT", path, {"call_date": text})
    else:
        row = {"debt_id": debt, "type": "sms", "status": "deal_found", "call_date": text}
        status, body = await send(http, sb, "POST", "/followups", row)
    if stored is None:
        assert (status, body["details"]) == (422, {"call_date": [RANGE]})
    else:
        assert status in (200, 201) and body["data"]["call_date"] == stored
    assert not any(code >= 500 for code in sb.stats.by_status)


# Each class of input that once answered 500, as reported.


async def test_a_create_whose_call_date_falls_before_year_1_in_utc_is_a_422(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    row = {
        "debt_id": await a_debt(http, sb),
        "type": "sms",
        "status": "deal_found",
        "call_date": "0001-01-01T00:00:00.0+01:00",
    }
    status, body = await send(http, sb, "POST", "/followups", row)
    assert status == 422, body
    assert body == {
        "error": True,
        "message": "Validation failed",
        "code": 422,
        "details": {"call_date": [RANGE]},
    }


async def test_a_create_whose_scheduled_at_falls_after_year_9999_in_utc_is_a_422(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    row = {
        "debt_id": await a_debt(http, sb),
        "type": "call",
        "scheduled_at": "9999-12-31T23:30:00-01:00",
    }
    status, body = await send(http, sb, "POST", "/followups", row)
    assert (status, body["details"]) == (422, {"scheduled_at": [RANGE]})


async def test_an_update_whose_call_date_leaves_the_calendar_is_a_422_and_changes_nothing(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    row = {"debt_id": await a_debt(http, sb), "type": "call", "status": "sent"}
    status, body = await send(http, sb, "POST", "/followups", row)
    assert status == 201
    path = "/followups/" + body["data"]["id"]
    change = {"status": "deal_found", "call_date": "0001-01-01T00:59:59.999999+01:00"}
    status, body = await send(http, sb, "PUT", path, change)
    assert (status, body["details"]) == (422, {"call_date": [RANGE]})
    status, body = await send(http, sb, "GET", path, None)
    assert body["data"]["status"] == "sent" and body["data"]["call_date"] is None


async def test_the_calendars_own_ends_are_stored(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    debt = await a_debt(http, sb)
    for text, stored in (
        ("0001-01-01T00:59:59.999999+00:59", "0001-01-01T00:00:59.999999+00:00"),
        ("0001-01-01T00:00:00-23:59", "0001-01-01T23:59:00+00:00"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999+00:00"),
        ("9999-12-31T00:00:00+23:59", "9999-12-30T00:01:00+00:00"),
    ):
        row = {"debt_id": debt, "type": "sms", "call_date": text}
        status, body = await send(http, sb, "POST", "/followups", row)
        assert (status, body["data"]["call_date"]) == (201, stored)


async def test_a_malformed_date_beside_an_out_of_range_one_is_a_400_naming_both(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    row = {
        "debt_id": await a_debt(http, sb),
        "type": "sms",
        "call_date": "0001-01-01T00:00:00+01:00",
        "scheduled_at": "yesterday",
    }
    status, body = await send(http, sb, "POST", "/followups", row)
    assert status == 400
    assert set(body["details"]) == {"call_date", "scheduled_at"}
