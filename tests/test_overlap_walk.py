"""Walks whose reads overlap: what they prove while the list moves under them.

Against the sandbox on loopback; the list is changed on the server's side between two reads
(the walk sends its second read only after its first page was handed out).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from getbill_async import GetBillClient, Page
from getbill_async.sandbox import Sandbox
from getbill_async.transport import back_read, next_read, walk_overlapping, walk_pages

DATE_FROM = "2024-11-01"
_pages = msgspec.json.Decoder(Page[dict[str, Any]])


def _key(item: dict[str, Any]) -> str:
    return str(item["id"])


@pytest.mark.parametrize("limit", [100, 50, 7, 3])
def test_each_read_covers_the_last_place_read_and_reaches_further(limit: int) -> None:
    end, reads = limit, 1
    while end < 20_000:
        size, page = next_read(end, limit)
        start = (page - 1) * size
        assert 1 <= size <= limit
        assert start <= end - 1 < page * size or start == end  # overlap, or a plain page
        assert page * size > end
        end, reads = page * size, reads + 1
    if limit == 100:
        assert reads <= 1.15 * 200  # about 14 % more reads than pages of 100
    size, page = next_read(100, 100)
    assert (size, page) == (99, 2)  # places 99 to 197
    where = back_read(250, 100)
    assert where is not None
    size, page = where
    assert (page - 1) * size < 250 < page * size


def _leaving_and_entering(sb: Sandbox) -> tuple[str, str, str]:
    """In the list filtered by DATE_FROM: one followup on page 1 that will leave it, the
    first of page 2 (which slides back when it does), and an older one, outside the filter
    and further down the list, that will enter it."""
    listed = sb.followup_ids(date_from=DATE_FROM)
    assert len(listed) > 200
    every = sb.followup_ids()
    beyond = every.index(listed[150])
    entering = next(
        f for f in every[beyond:] if f not in set(listed) and (sb.followup(f) or {})["call_date"]
    )
    return listed[10], listed[100], entering


async def _walk_changing(sb: Sandbox, walk: Any, change: Any) -> list[str]:
    got: list[str] = []
    async with walk:
        async for page in walk:
            if not got:
                change()
            got.extend(_key(item) for item in page.data)
    return got


@pytest.mark.timeout(30)
async def test_a_net_zero_change_skips_silently_in_pages_and_is_repaired_by_overlaps() -> None:
    async with Sandbox(followups=4000, seed=21) as sb:
        leaving, sliding, entering = _leaving_and_entering(sb)

        def change() -> None:  # one leaves page 1, one enters further down: total unchanged
            sb.change_followup(leaving, call_date="2020-01-02T10:00:00+00:00", scheduled_at=None)
            sb.change_followup(entering, call_date="2024-12-02T10:00:00+00:00")

        def undo() -> None:
            sb.change_followup(leaving, call_date="2024-12-01T10:00:00+00:00")
            sb.change_followup(entering, call_date="2020-01-03T10:00:00+00:00", scheduled_at=None)

        params = {"date_from": DATE_FROM, "limit": "100"}
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            plain = walk_pages(
                client,
                "/followups",
                params,
                _pages,
                _key,
                template=None,
                start_page=1,
                concurrency=1,
            )
            got = await _walk_changing(sb, plain, change)
            assert sliding not in got and not plain.stats.total_changed  # the defect
            undo()
            assert sliding in sb.followup_ids(date_from=DATE_FROM)
            overlapping = walk_overlapping(
                client,
                "/followups",
                {"date_from": DATE_FROM},
                _pages,
                _key,
                limit=100,
                concurrency=1,
            )
            got = await _walk_changing(sb, overlapping, change)
        assert sliding in got and overlapping.stats.proved
        assert len(got) == len(set(got))
        now = set(sb.followup_ids(date_from=DATE_FROM))
        assert now <= set(got) and entering in got  # it entered where the walk had yet to read
        assert set(got) - now == {leaving}  # read before it left


@pytest.mark.timeout(30)
async def test_inserts_at_the_head_during_a_walk_are_proved_harmless() -> None:
    async with Sandbox(followups=3000, seed=22) as sb:
        before = sb.followup_ids(date_from=DATE_FROM)
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            walk = walk_overlapping(
                client,
                "/followups",
                {"date_from": DATE_FROM},
                _pages,
                _key,
                limit=50,
                concurrency=1,
            )
            got: list[str] = []
            async with walk:
                async for page in walk:
                    sb.insert_followups(3)  # calls logged while the walk runs
                    got.extend(_key(item) for item in page.data)
        assert walk.stats.proved and walk.stats.total_changed
        assert set(before) <= set(got) and len(got) == len(set(got))


@pytest.mark.timeout(30)
async def test_a_chain_it_cannot_mend_is_not_proved() -> None:
    async with Sandbox(followups=3000, seed=23) as sb:
        listed = sb.followup_ids(date_from=DATE_FROM)
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            walk = walk_overlapping(
                client,
                "/followups",
                {"date_from": DATE_FROM},
                _pages,
                _key,
                limit=100,
                concurrency=1,
            )

            def change() -> None:  # the last item read (the anchor) leaves: no proof
                sb.change_followup(listed[99], call_date="2020-01-02T10:00:00+00:00")

            await _walk_changing(sb, walk, change)
        assert not walk.stats.proved
