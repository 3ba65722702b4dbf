"""The outbox's one lifecycle: ``close(grace)`` and ``Drainer.abort()`` cut writes off in
flight without ever resending a create that has no ``call_id``; ``open()`` after ``close()``
drains again; ``close()`` returns only once nothing of the drainer runs; a lease shorter than
what it must cover is refused when the outbox is opened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from getbill_async import GetBillClient, Outbox, RetryPolicy
from getbill_async.errors import ValidationError
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import fast_client

pytestmark = pytest.mark.timeout(30)


async def wait_until_sent(sb: Sandbox, writes: int) -> None:
    for _ in range(500):
        if sb.requests_made("write") >= writes:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{writes} writes never reached the sandbox")


def keyless(sb: Sandbox) -> list[dict[str, object]]:
    return [f for f in sb.created_followups() if f.get("summary") == "keyless"]


@pytest.mark.parametrize("how", ["grace", "abort"])
async def test_a_create_without_call_id_cut_off_in_flight_is_held_not_resent(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "o.db"
    async with Sandbox(followups=20, latency=0.5) as sb:
        debt = sb.debt_ids()[0]
        async with fast_client(sb) as client:
            box = Outbox(client, db, poll=0.02)
            await box.open()
            await box.create(debt_id=debt, type="call", summary="keyless")
            await wait_until_sent(sb, 1)
            if how == "abort":
                box.drainer.abort()
            await box.close(grace=0.1)
            await asyncio.sleep(0.6)  # the sandbox commits what it received
            assert len(keyless(sb)) == 1
            async with Outbox(client, db, poll=0.02) as again:
                await again.join(timeout=5)
                status = await again.status()
                [held] = await again.dead()
        assert (status.held, status.pending, status.done) == (1, 0, 0)
        assert held.state == "held" and "call_id" in held.message
        assert len(keyless(sb)) == 1  # never sent twice


async def test_an_outbox_closed_and_opened_again_drains_again(tmp_path: Path) -> None:
    async with Sandbox(followups=20) as sb, fast_client(sb) as client:
        debt = sb.debt_ids()[0]
        box = Outbox(client, tmp_path / "o.db", poll=0.02)
        for i in range(3):
            async with box:
                await box.create(debt_id=debt, type="call", call_id=f"again-{i}")
                await box.join(timeout=5)
        assert sb.created_per_call_id() == {f"again-{i}": 1 for i in range(3)}


async def test_a_lease_shorter_than_what_it_must_cover_is_refused_at_open(
    tmp_path: Path,
) -> None:
    client = GetBillClient("t0k", base_url="http://127.0.0.1:9", allow_insecure=True)
    async with client:
        box = Outbox(client, tmp_path / "o.db", lease=20)
        with pytest.raises(ValidationError, match=r"lease: .*timeout.*lease_margin.*grace"):
            await box.open()
        assert not (tmp_path / "o.db").exists()  # refused before the store is touched
        fits = client.with_options(timeout=4.0, retry=RetryPolicy(max_tries=1))
        async with Outbox(fits, tmp_path / "o.db", lease=20):
            pass
