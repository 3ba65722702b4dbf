"""Bad input is refused before anything is sent and before any budget is spent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

import pytest

from getbill_async import FollowupCreate, GetBillClient, ValidationError
from getbill_async.sandbox import Sandbox

Call = Callable[[GetBillClient], Awaitable[Any]]

CASES: list[tuple[str, Call, str]] = [
    ("page", lambda c: c.followups.list(page=0), r"page: must be an integer >= 1, got 0"),
    ("limit", lambda c: c.followups.list(limit=101), r"limit: must be an integer from 1 to 100"),
    ("limit", lambda c: c.followups.list(limit=0), r"limit: must be an integer from 1 to 100"),
    (
        "status",
        lambda c: c.followups.list(status="done"),
        r"status: invalid value 'done'; allowed: on_hold, scheduled, in_progress, sent",
    ),
    (
        "type",
        lambda c: c.followups.list(type="fax"),
        r"type: invalid value 'fax'; allowed: call, email, sms, whatsapp, voicemail",
    ),
    (
        "date_from",
        lambda c: c.followups.list(date_from="01/02/2024"),
        r"date_from: must be a date in YYYY-MM-DD form",
    ),
    (
        "date_to",
        lambda c: c.followups.list(date_to="2024-02-30"),
        r"date_to: must be a date in YYYY-MM-DD form",
    ),
    (
        "date_to",
        lambda c: c.followups.list(date_from=date(2024, 2, 1), date_to=date(2024, 1, 1)),
        r"date_to: must not be before date_from",
    ),
    ("debt_id", lambda c: c.followups.list(debt_id=""), r"debt_id: must be a non-empty string"),
    ("followup_id", lambda c: c.followups.get(""), r"followup_id: must be a non-empty string"),
    ("debt_id", lambda c: c.followups.list_for_debt(" "), r"debt_id: must be a non-empty"),
    ("type", lambda c: c.followups.create(debt_id="d1"), r"type: is required"),
    ("debt_id", lambda c: c.followups.create(type="call"), r"debt_id: is required"),
    (
        "type",
        lambda c: c.followups.create(debt_id="d1", type="fax"),
        r"type: invalid value 'fax'; allowed: call, email",
    ),
    (
        "status",
        lambda c: c.followups.create(debt_id="d1", type="call", status="won"),
        r"status: invalid value 'won'; allowed: on_hold",
    ),
    (
        "direction",
        lambda c: c.followups.create(debt_id="d1", type="call", direction="sideways"),
        r"direction: invalid value 'sideways'; allowed: inbound, outbound",
    ),
    (
        "call_date",
        lambda c: c.followups.create(debt_id="d1", type="call", call_date="yesterday"),
        r"call_date: must be an ISO 8601 datetime",
    ),
    (
        "scheduled_at",
        lambda c: c.followups.create(
            debt_id="d1", type="call", scheduled_at=datetime(2024, 1, 1, 10)
        ),
        r"scheduled_at: must be timezone-aware",
    ),
    (
        "duration_ms",
        lambda c: c.followups.create(debt_id="d1", type="call", duration_ms=-5),
        r"duration_ms: must be a non-negative integer",
    ),
    (
        "is_retry",
        lambda c: c.followups.create(debt_id="d1", type="call", is_retry="yes"),
        r"is_retry: must be true or false",
    ),
    (
        "colour",
        lambda c: c.followups.create(debt_id="d1", type="call", colour="red"),
        r"colour: unknown field; allowed: debt_id, type, status",
    ),
    (
        "type",
        lambda c: c.followups.create(FollowupCreate(debt_id="d1", type="fax")),
        r"type: invalid value 'fax'",
    ),
    (
        "debt_id",
        lambda c: c.followups.update("abc", debt_id="other"),
        r"debt_id: cannot be changed by an update",
    ),
    ("fields", lambda c: c.followups.update("abc"), r"fields: an update needs at least one field"),
    (
        "status",
        lambda c: c.followups.update("abc", status="closed"),
        r"status: invalid value 'closed'",
    ),
    (
        "followup_id",
        lambda c: c.followups.update("", notes="x"),
        r"followup_id: must be a non-empty",
    ),
]


@pytest.mark.parametrize(
    ("field", "call", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
async def test_refused_before_sending(
    client: GetBillClient, sandbox: Sandbox, field: str, call: Call, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        await call(client)
    assert info.value.field == field
    assert info.value.status is None
    assert sandbox.stats.requests == 0, "nothing may reach the server"
    status = await client.budget_status()
    assert status.reads.used == status.writes.used == 0, "no budget spent"
    assert status.reads.in_flight == status.writes.in_flight == 0


async def test_walk_concurrency_is_checked(client: GetBillClient) -> None:
    with pytest.raises(ValidationError, match="concurrency: must be an integer >= 1"):
        client.followups.iterate(concurrency=0)


async def test_allowed_values_are_exposed(client: GetBillClient) -> None:
    with pytest.raises(ValidationError) as info:
        await client.followups.list(type="fax")
    assert info.value.allowed is not None and "postmail" in info.value.allowed
    assert info.value.details == {"type": ["invalid value 'fax'"]}
