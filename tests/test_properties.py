"""Property-based tests: decoders and validators raise nothing but the SDK's own errors.

Deterministic (``derandomize``) and quick: the same examples on every run and every machine.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from getbill_async import (
    AmbiguousWriteError,
    Debt,
    DecodeError,
    Followup,
    FollowupCreate,
    FollowupStatus,
    FollowupType,
    GetBillError,
    Page,
)
from getbill_async.export._formats import _RawPageDecoder
from getbill_async.support import build_create, build_update, list_params
from getbill_async.transport import ItemEnvelope, Request
from getbill_async.transport._answers import decode, error_for_status
from getbill_async.transport._retry import Retryable
from getbill_async.webhooks import UnknownEvent, parse_event

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Untrusted input (answers, webhook bodies) gets the full 200; the rest, half.
LIGHT = settings(SETTINGS, max_examples=100)
JSON_HEADERS = {"Content-Type": "application/json"}
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "page": msgspec.json.Decoder(Page[Followup]),
    "item": msgspec.json.Decoder(ItemEnvelope[Followup]),
    "debts": msgspec.json.Decoder(Page[Debt]),
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=6,
)
# Objects shaped like the API's answers, with arbitrary values where the fields go.
FIELD_NAMES = st.sampled_from(
    [*Followup.__struct_fields__, "error", "data", "pagination", "message", "code", "details"]
)
record = st.dictionaries(FIELD_NAMES, json_values, max_size=8)
shaped = st.dictionaries(
    FIELD_NAMES, json_values | record | st.lists(record, max_size=3), max_size=6
)
bodies = st.binary(max_size=200) | shaped.map(msgspec.json.encode)


def decode_like_the_pipeline(name: str, body: bytes, method: str = "GET") -> Any:
    """What a resource gets back: the decoded answer, or the error the pipeline surfaces."""
    request = Request(method, "/followups", body=b"{}" if method != "GET" else None)
    try:
        return decode(request, 200, JSON_HEADERS, body, _DECODERS[name])
    except Retryable as retry:  # a read's decode failure is retried, then surfaces as its error
        raise retry.error from None


@SETTINGS
@given(body=bodies, name=st.sampled_from(sorted(_DECODERS)), method=st.sampled_from(["GET", "PUT"]))
def test_answer_decoders_raise_only_sdk_errors(body: bytes, name: str, method: str) -> None:
    try:
        decode_like_the_pipeline(name, body, method)
    except (DecodeError, AmbiguousWriteError) as exc:
        assert isinstance(exc, GetBillError)
        assert (method == "GET") == isinstance(exc, DecodeError)


@SETTINGS
@given(
    status=st.integers(300, 599),
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "X-RateLimit-Reset", "Location", "X-Other"]),
        st.text(max_size=30) | st.floats().map(str),
        max_size=3,
    ),
)
def test_error_envelopes_always_become_api_errors(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    error = error_for_status(status, body, Request("GET", "/followups"), headers)
    assert isinstance(error, GetBillError) and error.status == status
    assert str(error).startswith(f"GET /followups: {status} ")
    retry_after = getattr(error, "retry_after", None)
    assert retry_after is None or 0 <= retry_after <= 86_400


@SETTINGS
@given(
    body=bodies
    | st.builds(
        lambda t, d: msgspec.json.encode({"type": t, "data": d}), st.text(max_size=25), shaped
    )
)
def test_parse_event_raises_only_decode_error(body: bytes) -> None:
    try:
        event = parse_event(body)
    except DecodeError:
        return
    assert isinstance(event.type, str)


@LIGHT
@given(
    kind=st.text(max_size=25).filter(lambda t: "." not in t or t.startswith("x")), data=json_values
)
def test_unknown_event_types_never_raise(kind: str, data: Any) -> None:
    event = parse_event(msgspec.json.encode({"type": kind, "data": data}))
    assert event == UnknownEvent(type=kind, data=data)


# Validators ------------------------------------------------------------------------------

anything = (
    json_values
    | st.datetimes()
    | st.datetimes(timezones=st.just(timezone.utc))
    | st.dates()
    | st.sampled_from(list(FollowupStatus) + list(FollowupType))
    | st.binary(max_size=5)
)
CREATE_FIELDS = st.sampled_from([*FollowupCreate.__struct_fields__, "debt_id", "id", ""])


@LIGHT
@given(fields=st.dictionaries(CREATE_FIELDS | st.text(max_size=6), anything, max_size=8))
def test_build_create_and_update_raise_only_validation_errors(fields: dict[str, Any]) -> None:
    for build in (build_create, build_update):
        try:
            built = build(None, fields)
        except GetBillError as exc:
            assert type(exc).__name__ == "ValidationError" and exc.field is not None  # type: ignore[attr-defined]
        else:
            msgspec.json.encode(built)  # whatever passed the checks can be sent


@pytest.mark.parametrize("item", [{"debt_id": "d", "type": "sms"}, "x", 1, object()])
def test_build_rejects_foreign_items(item: Any) -> None:
    with pytest.raises(GetBillError, match="item: must be a FollowupCreate"):
        build_create(item, {})


@LIGHT
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            name: anything
            for name in ("page", "limit", "status", "type", "date_from", "date_to", "debt_id")
        },
    )
)
def test_list_params_raise_only_validation_errors(params: dict[str, Any]) -> None:
    try:
        query = list_params(**params)
    except GetBillError as exc:
        assert type(exc).__name__ == "ValidationError"
    else:
        assert all(isinstance(v, str) for v in query.values())
        assert 1 <= int(query["limit"]) <= 100 and int(query["page"]) >= 1


# Round trips -------------------------------------------------------------------------------

aware = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30)).flatmap(
    lambda d: st.integers(-14 * 60, 14 * 60).map(
        lambda minutes: d.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    )
)
text = st.text(max_size=30)
optional = st.none() | text
followups = st.builds(
    Followup,
    id=text.filter(bool),
    debt_id=text.filter(bool),
    status=st.sampled_from(FollowupStatus.values()) | text,
    type=st.sampled_from(FollowupType.values()) | text,
    call_date=st.none() | aware,
    scheduled_at=st.none() | aware,
    summary=optional,
    notes=optional,
    call_id=optional,
    audio_url=optional,
    pdf_url=optional,
    duration_ms=st.none() | st.integers(0, 2**53),
    direction=st.none() | st.sampled_from(["inbound", "outbound"]),
    is_retry=st.none() | st.booleans(),
    email_open_count=st.none() | st.integers(0, 10**6),
    media_urls_expire_at=st.none() | aware,
)
debts = st.builds(
    Debt,
    id=text.filter(bool),
    amount=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    status=optional,
    due_date=st.none() | st.dates(min_value=date(1, 1, 1)),
    created_at=st.none() | aware,
)


@LIGHT
@given(items=st.lists(followups, max_size=4), total=st.integers(0, 10**6))
def test_followups_round_trip_through_the_page_decoder(items: list[Followup], total: int) -> None:
    body = msgspec.json.encode(
        {
            "error": False,
            "data": items,
            "pagination": {"total": total, "page": 1, "limit": 4, "pages": 1},
        }
    )
    page = decode_like_the_pipeline("page", body)
    assert page.data == items and page.pagination.total == total
    for item in items:
        single = decode_like_the_pipeline("item", msgspec.json.encode({"data": item}))
        assert single.data == item


@LIGHT
@given(debt=debts)
def test_debts_round_trip(debt: Debt) -> None:
    assert msgspec.json.decode(msgspec.json.encode(debt), type=Debt) == debt


@LIGHT
@given(followup=followups, kind=st.sampled_from(["followup.created", "followup.updated"]))
def test_followup_events_round_trip(followup: Followup, kind: str) -> None:
    event = parse_event(msgspec.json.encode({"type": kind, "data": followup, "changes": {"a": 1}}))
    assert event.type == kind and event.data == followup and event.changes == {"a": 1}


# How a server may write an item: compact with the id first (the fast path reads the id off
# the item's bytes), ASCII-escaped, spaced, or with the id after other members (decoded).
_WRITERS = {
    "compact": lambda item: msgspec.json.encode(item),
    "escaped": lambda item: json.dumps(item, separators=(",", ":")).encode(),
    "spaced": lambda item: json.dumps(item, ensure_ascii=False, indent=1).encode(),
    "id last": lambda item: msgspec.json.encode(dict(reversed(list(item.items())))),
}


@SETTINGS
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {"id": st.text(max_size=12)}, optional={"notes": json_values, "meta": record}
        ),
        max_size=5,
    ),
    ways=st.lists(st.sampled_from(sorted(_WRITERS)), min_size=5, max_size=5),
)
def test_raw_pages_read_each_items_id_as_a_full_decode_does(
    items: list[dict[str, Any]], ways: list[str]
) -> None:
    raws = [_WRITERS[way](item) for item, way in zip(items, ways, strict=False)]
    body = b'{"data":[' + b",".join(raws) + b'],"pagination":'
    body += b'{"total":5,"page":1,"limit":5,"pages":1}}'
    page = _RawPageDecoder().decode(body)
    assert page.ids == [item["id"] for item in items]
    assert [bytes(raw) for raw in page.data] == raws, "each item's own bytes"
