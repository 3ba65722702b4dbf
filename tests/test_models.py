"""Decoding answers: the docs' own example, forward compatibility, reprs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from getbill_async import CallDirection, Followup, FollowupStatus, FollowupType, Page
from getbill_async.resources._reads import _page_decoder

DOCS = Path(__file__).resolve().parents[2] / "shared" / "api-docs" / "list-followups.txt"
UTC = timezone.utc


def docs_example() -> bytes:
    """The success example of the list page, cut from the docs' text."""
    if DOCS.exists():
        text = DOCS.read_text()
        start = text.index("{")
        return text[start : text.index("Overview")].strip().encode()
    return EXAMPLE


EXAMPLE = b"""{"error": false, "data": [{"id": "abc123def456", "debt_id": "xyz789ghi012",
"status": "deal_found", "type": "call", "call_date": "2024-01-22T10:30:00+00:00",
"scheduled_at": "2024-01-22T10:00:00+00:00", "summary": "Successfully contacted debtor",
"notes": "Customer agreed to payment plan starting next month", "call_id": "call_789456",
"audio_url": "https://s3.amazonaws.com/bucket/recordings/call_789456.mp3?X-Amz-Signature=...",
"pdf_url": null, "duration_ms": 180000, "disconnection_reason": "completed_successfully",
"direction": "outbound", "phone_number_used": "+33800123456", "is_retry": false,
"processed_at": "2024-01-22T10:35:00+00:00", "triggered_payment": true, "email_opened": false,
"email_open_count": 0, "email_first_opened_at": null, "email_clicked": false,
"email_click_count": 0, "media_urls_expire_at": "2024-01-22T11:35:00+00:00"}],
"pagination": {"total": 1247, "page": 1, "limit": 50, "pages": 25}}"""


def test_the_docs_example_decodes_to_exactly_its_values() -> None:
    page = _page_decoder.decode(docs_example())
    assert isinstance(page, Page)
    assert (page.pagination.total, page.pagination.page) == (1247, 1)
    assert (page.pagination.limit, page.pagination.pages) == (50, 25)
    f = page.data[0]
    assert f == Followup(
        id="abc123def456",
        debt_id="xyz789ghi012",
        status="deal_found",
        type="call",
        call_date=datetime(2024, 1, 22, 10, 30, tzinfo=UTC),
        scheduled_at=datetime(2024, 1, 22, 10, 0, tzinfo=UTC),
        summary="Successfully contacted debtor",
        notes="Customer agreed to payment plan starting next month",
        call_id="call_789456",
        audio_url="https://s3.amazonaws.com/bucket/recordings/call_789456.mp3?X-Amz-Signature=...",
        pdf_url=None,
        duration_ms=180000,
        disconnection_reason="completed_successfully",
        direction="outbound",
        phone_number_used="+33800123456",
        is_retry=False,
        processed_at=datetime(2024, 1, 22, 10, 35, tzinfo=UTC),
        triggered_payment=True,
        email_opened=False,
        email_open_count=0,
        email_first_opened_at=None,
        email_clicked=False,
        email_click_count=0,
        media_urls_expire_at=datetime(2024, 1, 22, 11, 35, tzinfo=UTC),
    )
    assert f.status == FollowupStatus.DEAL_FOUND and f.status == "deal_found"
    assert f.type == FollowupType.CALL and f.direction == CallDirection.OUTBOUND
    assert f.call_date is not None and f.call_date.utcoffset() == timedelta(0)
    assert len(Followup.__struct_fields__) == 24


def test_unknown_values_and_keys_decode() -> None:
    body = (
        b'{"error": false, "data": [{"id": "a1", "debt_id": "d1", "status": "escalated",'
        b' "type": "carrier_pigeon", "direction": "sideways", "brand_new_field": {"x": 1}}],'
        b' "pagination": {"total": 1, "page": 1, "limit": 20, "pages": 1}, "meta": 3}'
    )
    f = _page_decoder.decode(body).data[0]
    assert (f.status, f.type, f.direction) == ("escalated", "carrier_pigeon", "sideways")
    assert f.media_urls_expire_at is None and f.summary is None


def test_wrong_types_fail_with_the_path() -> None:
    body = (
        b'{"data": [{"id": 5, "debt_id": "d", "status": "sent", "type": "sms"}],'
        b' "pagination": {"total": 1, "page": 1, "limit": 20, "pages": 1}}'
    )
    with pytest.raises(msgspec.ValidationError, match=r"\$\.data\[0\]\.id"):
        _page_decoder.decode(body)


def test_repr_hides_presigned_signatures() -> None:
    f = _page_decoder.decode(docs_example()).data[0]
    text = repr(f)
    assert "X-Amz-Signature=[REDACTED]" in text and "call_789456.mp3" in text
    signed = msgspec.structs.replace(f, audio_url="https://x/y.mp3?X-Amz-Signature=deadbeef99")
    assert "deadbeef99" not in repr(signed)


def test_media_expiry() -> None:
    f = _page_decoder.decode(docs_example()).data[0]
    assert f.media_expired(datetime(2024, 1, 22, 11, 0, tzinfo=UTC)) is False
    assert f.media_expired(datetime(2024, 1, 22, 12, 0, tzinfo=UTC)) is True
    assert Followup(id="a", debt_id="b", status="sent", type="email").media_expired() is False


def test_enums_print_their_values() -> None:
    assert str(FollowupStatus.NO_ANSWER) == "no_answer"
    assert f"{FollowupType.MANUAL_CALL}" == "manual_call"
    assert FollowupStatus.values()[0] == "on_hold" and len(FollowupStatus.values()) == 11
    assert len(FollowupType.values()) == 8
