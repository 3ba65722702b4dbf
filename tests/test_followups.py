"""Every followups endpoint, over HTTP on loopback against the sandbox."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from getbill_async import (
    AmbiguousWriteError,
    Followup,
    FollowupCreate,
    FollowupStatus,
    FollowupType,
    FollowupUpdate,
    GetBillClient,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from getbill_async.sandbox import Sandbox


async def test_list_first_page_matches_the_server(client: GetBillClient, sandbox: Sandbox) -> None:
    page = await client.followups.list(limit=50)
    assert [f.id for f in page.data] == sandbox.followup_ids()[:50]
    assert page.pagination.total == 1000
    assert (page.pagination.page, page.pagination.limit, page.pagination.pages) == (1, 50, 20)
    assert all(isinstance(f, Followup) for f in page.data)


async def test_default_page_size_is_the_documented_20(client: GetBillClient) -> None:
    page = await client.followups.list()
    assert len(page.data) == 20 and page.pagination.limit == 20


@pytest.mark.parametrize(
    "filters",
    [
        {"status": "delivered"},
        {"status": FollowupStatus.DEAL_FOUND},
        {"type": "call"},
        {"type": FollowupType.EMAIL, "status": "sent"},
        {"date_from": "2024-01-01"},
        {"date_to": date(2023, 6, 30)},
        {"date_from": date(2024, 3, 1), "date_to": "2024-03-31"},
    ],
)
async def test_filters(client: GetBillClient, sandbox: Sandbox, filters: dict[str, object]) -> None:
    expected = sandbox.followup_ids(
        **{k: (str(v) if not isinstance(v, date) else v.isoformat()) for k, v in filters.items()}
    )
    assert expected, "the seeded data should have matches for every filter here"
    got = [f.id async for f in client.followups.iterate(**filters)]  # type: ignore[arg-type]
    assert got == expected
    page = await client.followups.list(limit=100, **filters)  # type: ignore[arg-type]
    assert page.pagination.total == len(expected)
    for f in page.data:
        if "status" in filters:
            assert f.status == filters["status"]
        if "type" in filters:
            assert f.type == filters["type"]


async def test_debt_id_filter_and_by_debt_endpoint(client: GetBillClient, sandbox: Sandbox) -> None:
    debt_id = sandbox.debt_ids()[3]
    expected = sandbox.followup_ids(debt_id=debt_id)
    listed = await client.followups.list(debt_id=debt_id, limit=100)
    assert [f.id for f in listed.data] == expected
    by_debt = await client.followups.list_for_debt(debt_id, limit=100)
    assert [f.id for f in by_debt.data] == expected
    walked = [f.id async for f in client.followups.iterate_for_debt(debt_id, limit=2)]
    assert walked == expected
    assert all(f.debt_id == debt_id for f in by_debt.data)


async def test_iterate_yields_every_followup_once_in_order(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    walk = client.followups.iterate(limit=100, concurrency=3)
    ids = [f.id async for f in walk]
    assert ids == sandbox.followup_ids()
    assert walk.stats.pages == 10 and walk.stats.items == 1000
    assert not walk.stats.total_changed


async def test_pages_yield_page_objects(client: GetBillClient) -> None:
    numbers = [p.pagination.page async for p in client.followups.pages(limit=100)]
    assert numbers == list(range(1, 11))


async def test_get_one_and_not_found(client: GetBillClient, sandbox: Sandbox) -> None:
    some_id = sandbox.followup_ids()[5]
    followup = await client.followups.get(some_id)
    raw = sandbox.followup(some_id)
    assert raw is not None
    assert followup.id == some_id and followup.debt_id == raw["debt_id"]
    assert followup.status == raw["status"] and followup.summary == raw["summary"]
    with pytest.raises(NotFoundError) as info:
        await client.followups.get("000000000000")
    assert info.value.status == 404 and info.value.path == "/followups/000000000000"


async def test_ids_are_escaped_in_paths(client: GetBillClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.followups.get("a/b?c=d#e")
    assert info.value.path == "/followups/a%2Fb%3Fc%3Dd%23e"


async def test_create_with_fields_and_with_a_struct(
    client: GetBillClient, sandbox: Sandbox
) -> None:
    debt_id = sandbox.debt_ids()[0]
    when = datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)
    made = await client.followups.create(
        debt_id=debt_id, type="call", status="scheduled", scheduled_at=when, summary="Call back"
    )
    assert (made.debt_id, made.type, made.status, made.scheduled_at) == (
        debt_id,
        "call",
        "scheduled",
        when,
    )
    assert made.media_urls_expire_at is None  # the create answer omits it
    second = await client.followups.create(FollowupCreate(debt_id=debt_id, type="email"))
    assert second.status == FollowupStatus.ON_HOLD  # the documented default
    assert sandbox.followup_ids()[:2] == [second.id, made.id]  # newest first


async def test_update_sends_only_given_fields(client: GetBillClient, sandbox: Sandbox) -> None:
    target = sandbox.followup_ids()[10]
    before = sandbox.followup(target)
    assert before is not None
    after = await client.followups.update(target, status="deal_found", notes="Agreed")
    assert (after.status, after.notes) == ("deal_found", "Agreed")
    assert after.summary == before["summary"] and after.type == before["type"]
    cleared = await client.followups.update(target, FollowupUpdate(summary=None))
    assert cleared.summary is None and cleared.notes == "Agreed"


async def test_write_scope_is_required(sandbox: Sandbox) -> None:
    sandbox.add_token("read-only-token", scopes=("followups:read",), client="ro")
    async with GetBillClient("read-only-token", base_url=sandbox.base_url) as ro:
        await ro.followups.list()
        with pytest.raises(PermissionDeniedError, match='Required scope "followups:write"'):
            await ro.followups.create(debt_id=sandbox.debt_ids()[0], type="sms")


async def test_unknown_debt_on_create_is_a_validation_error(client: GetBillClient) -> None:
    with pytest.raises(ValidationError) as info:
        await client.followups.create(debt_id="nosuchdebt00", type="sms")
    assert info.value.status == 422 and info.value.field == "debt_id"


async def test_ambiguous_error_carries_the_fields() -> None:
    error = AmbiguousWriteError(
        "500", method="POST", path="/followups", fields={"debt_id": "d", "type": "call"}
    )
    assert "may have happened" in str(error) and error.fields["type"] == "call"
