"""Concurrent, ordered walks: bounded, cancellable, and safe when pages shift."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox

from .loopback import serve


class PageServer:
    """A list endpoint that answers slowly and records how many requests overlap."""

    def __init__(self, pages: int, per_page: int = 10, delay: float = 0.02) -> None:
        self.pages, self.per_page, self.delay = pages, per_page, delay
        self.in_flight = self.max_in_flight = self.served = self.cancelled = 0

    async def handle(self, request: web.Request) -> web.Response:
        number = int(request.query["page"])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay * (1 + number % 3))  # uneven: later pages may win
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        self.served += 1
        data = [
            {"id": f"p{number}-{i}", "debt_id": "d", "status": "sent", "type": "sms"}
            for i in range(self.per_page if number <= self.pages else 0)
        ]
        pagination = {
            "total": self.pages * self.per_page,
            "page": number,
            "limit": self.per_page,
            "pages": self.pages,
        }
        return web.json_response({"error": False, "data": data, "pagination": pagination})


@pytest.fixture
async def slow_api() -> AsyncIterator[tuple[GetBillClient, PageServer]]:
    server = PageServer(pages=30)
    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_get("/v1/followups", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with GetBillClient("t0k3n", base_url=f"http://127.0.0.1:{port}/v1") as client:
        yield client, server
    await runner.cleanup()


async def test_pages_come_in_order_with_at_most_n_in_flight(
    slow_api: tuple[GetBillClient, PageServer],
) -> None:
    client, server = slow_api
    numbers = [p.pagination.page async for p in client.followups.pages(limit=10, concurrency=5)]
    assert numbers == list(range(1, 31))
    assert server.max_in_flight == 4, "the consumer holds one page, four more are fetched ahead"


async def test_concurrency_one_is_sequential(slow_api: tuple[GetBillClient, PageServer]) -> None:
    client, server = slow_api
    count = [f.id async for f in client.followups.iterate(limit=10, concurrency=1)]
    assert len(count) == 300 and server.max_in_flight == 1


def pending_tasks() -> set[asyncio.Task[object]]:
    """The client side's pending tasks (the test server's connection handlers aside)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and not t.done()
        and "RequestHandler" not in getattr(t.get_coro(), "__qualname__", "")
    }


async def settle_tasks() -> None:
    for _ in range(50):
        if not pending_tasks():
            return
        await asyncio.sleep(0.01)


async def test_break_cancels_what_is_in_flight(slow_api: tuple[GetBillClient, PageServer]) -> None:
    client, server = slow_api
    before = pending_tasks()
    async for page in client.followups.pages(limit=10, concurrency=8):
        if page.pagination.page == 3:
            break
    await settle_tasks()
    assert pending_tasks() <= before
    assert server.served < 30
    assert len((await client.followups.list(limit=10)).data) == 10  # the session still works


async def test_consumer_exception_cancels_and_propagates(
    slow_api: tuple[GetBillClient, PageServer],
) -> None:
    client, server = slow_api
    with pytest.raises(RuntimeError, match="consumer failed"):
        async with client.followups.iterate(limit=10, concurrency=6) as walk:
            async for f in walk:
                if f.id == "p2-5":
                    raise RuntimeError("consumer failed")
    await settle_tasks()
    assert not pending_tasks()
    assert server.served < 30


async def test_cancelling_the_task_cleans_up(slow_api: tuple[GetBillClient, PageServer]) -> None:
    client, server = slow_api
    seen: list[str] = []

    async def consume() -> None:
        async for f in client.followups.iterate(limit=10, concurrency=6):
            seen.append(f.id)

    task = asyncio.create_task(consume())
    while len(seen) < 25:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle_tasks()
    assert not pending_tasks()
    assert server.served < 30
    assert (await client.followups.list(limit=10)).pagination.pages == 30


async def test_items_shifted_by_new_followups_are_not_yielded_twice(sandbox: Sandbox) -> None:
    original = sandbox.followup_ids()
    async with GetBillClient(sandbox.token, base_url=sandbox.base_url) as client:
        walk = client.followups.iterate(limit=50, concurrency=2)
        ids: list[str] = []
        async for f in walk:
            ids.append(f.id)
            if len(ids) in (120, 400):
                sandbox.insert_followups(30)  # newest first: everything slides 30 places on
    assert len(ids) == len(set(ids)), "no duplicates"
    assert set(original) <= set(ids), "no gaps among the followups that were there at the start"
    assert walk.stats.duplicates_skipped == 60
    assert walk.stats.total_at_start == 1000 and walk.stats.total_at_end == 1060
    assert walk.stats.total_changed


async def test_dropping_a_walk_after_break_finalizes_cleanly(
    slow_api: tuple[GetBillClient, PageServer],
) -> None:
    import gc

    client, server = slow_api
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        async def first_item() -> str:
            async for f in client.followups.iterate(limit=10, concurrency=4):
                return f.id
            raise AssertionError("empty")

        assert await first_item() == "p1-0"
        gc.collect()
        await settle_tasks()
        gc.collect()
        await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(None)
    assert reported == [], reported
    assert not pending_tasks()
    assert server.served <= 4


async def test_break_cancels_in_flight_pages_at_once_without_the_cyclic_gc() -> None:
    import gc

    server = PageServer(pages=30, delay=0.4)
    app = web.Application()
    app.router.add_get("/v1/followups", server.handle)
    gc.disable()  # finalizing must not wait for a collection
    try:
        async with serve(app) as root:
            async with GetBillClient("t0k3n", base_url=root + "/v1") as client:
                async for page in client.followups.pages(limit=10, concurrency=8):
                    if page.pagination.page == 1:
                        break
                before = server.served
                for _ in range(20):  # well under the 0.4 s the pages in flight take
                    if not pending_tasks():
                        break
                    await asyncio.sleep(0.005)
                assert not pending_tasks(), "pages fetched ahead are still in flight"
                await asyncio.sleep(0.9)
                assert server.served == before, "pages kept being fetched after the break"
    finally:
        gc.enable()


async def test_a_long_pause_with_hundreds_of_inserts_leaks_no_duplicates() -> None:
    async with Sandbox(followups=3000, seed=3) as sandbox:
        original = sandbox.followup_ids()
        async with GetBillClient(sandbox.token, base_url=sandbox.base_url) as client:
            walk = client.followups.iterate(limit=100, concurrency=4)
            ids: list[str] = []
            async for f in walk:
                ids.append(f.id)
                if len(ids) == 500:
                    # A budget pause of an hour, say, during which 900 followups arrived:
                    # every item read so far slides nine pages on, past pages already read.
                    sandbox.insert_followups(900)
                elif len(ids) in (1500, 2500):
                    sandbox.insert_followups(300)  # and more later: the window grows
        assert len(ids) == len(set(ids)), "no duplicates"
        assert set(original) <= set(ids)
        assert walk.stats.duplicates_skipped >= 900  # how many depends on the pages in flight
        assert walk.stats.total_at_end == 4500
