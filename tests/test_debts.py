"""Debts: get, list, pages, iterate, and a followup's debt, against the sandbox."""

from __future__ import annotations

from datetime import date, datetime

import msgspec
import pytest

from getbill_async import Debt, GetBillClient, NotFoundError, ValidationError
from getbill_async.sandbox import Sandbox


async def test_get_decodes_every_documented_field(sandbox: Sandbox, client: GetBillClient) -> None:
    debt_id = sandbox.debt_ids()[3]
    debt = await client.debts.get(debt_id)
    served = sandbox.debt(debt_id)
    assert served is not None
    assert isinstance(debt, Debt)
    # Every key the sandbox serves (from the docs) has a field of the same name.
    assert set(served) == set(Debt.__struct_fields__)
    assert debt == msgspec.convert(served, Debt)
    assert debt.amount == served["amount"] and debt.status == served["status"]
    assert isinstance(debt.due_date, date) and isinstance(debt.created_at, datetime)
    assert debt.created_at.tzinfo is not None
    assert isinstance(debt.amount, float)


async def test_get_unknown_debt_is_not_found(client: GetBillClient) -> None:
    with pytest.raises(NotFoundError, match=r"GET /debts/nope: 404 Debt not found"):
        await client.debts.get("nope")


async def test_ids_are_escaped_and_checked(client: GetBillClient) -> None:
    with pytest.raises(NotFoundError, match=r"GET /debts/a%2F\.\.%2Ffollowups: 404"):
        await client.debts.get("a/../followups")
    with pytest.raises(ValidationError, match="debt_id: must be a non-empty string"):
        await client.debts.get("")


async def test_list_pages_in_the_sandbox_order(sandbox: Sandbox, client: GetBillClient) -> None:
    page = await client.debts.list(page=2, limit=7)
    assert [d.id for d in page.data] == sandbox.debt_ids()[7:14]
    assert page.pagination.total == len(sandbox.debt_ids())
    assert page.pagination.page == 2 and page.pagination.limit == 7


async def test_iterate_walks_every_debt_once(sandbox: Sandbox, client: GetBillClient) -> None:
    async with client.debts.iterate(limit=9, concurrency=3) as walk:
        ids = [d.id async for d in walk]
    assert ids == sandbox.debt_ids()
    assert walk.stats.pages == -(-len(ids) // 9)


async def test_status_filter_is_an_open_set(sandbox: Sandbox, client: GetBillClient) -> None:
    pending = [d async for d in client.debts.iterate(status="pending", limit=50)]
    assert pending and all(d.status == "pending" for d in pending)
    expected = [i for i in sandbox.debt_ids() if (sandbox.debt(i) or {})["status"] == "pending"]
    assert [d.id for d in pending] == expected
    # A company's own status is sent as is; none here, so an empty page, not an error.
    custom = await client.debts.list(status="awaiting_lawyer")
    assert custom.data == [] and custom.pagination.total == 0
    with pytest.raises(ValidationError, match="status"):
        await client.debts.list(status="")


async def test_pages_reports_stats(client: GetBillClient) -> None:
    walk = client.debts.pages(limit=40)
    sizes = [len(p.data) async for p in walk]
    assert sum(sizes) == 100 and walk.stats.requests == 3


async def test_bad_paging_is_refused_before_sending(
    sandbox: Sandbox, client: GetBillClient
) -> None:
    before = sandbox.stats.requests
    with pytest.raises(ValidationError, match="limit: must be an integer from 1 to 100"):
        await client.debts.list(limit=101)
    with pytest.raises(ValidationError, match="page"):
        client.debts.pages(start_page=0)
    assert sandbox.stats.requests == before


async def test_debt_of_a_followup_or_an_id(sandbox: Sandbox, client: GetBillClient) -> None:
    followup = (await client.followups.list(limit=1)).data[0]
    debt = await client.followups.debt_of(followup)
    assert debt.id == followup.debt_id
    before = sandbox.stats.requests
    again = await client.followups.debt_of(followup.id)
    assert again == debt
    assert sandbox.stats.requests == before + 2  # the followup, then its debt
    assert debt.followups_count == len(sandbox.followup_ids(debt_id=debt.id))


async def test_unknown_keys_and_nulls_decode() -> None:
    body = b'{"id":"d1","amount":12,"status":"custom","due_date":null,"new_field":[1]}'
    debt = msgspec.json.decode(body, type=Debt)
    assert debt == Debt(id="d1", amount=12.0, status="custom")
