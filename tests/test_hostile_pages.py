"""Walks and exports against list endpoints that lie: a wrong page echoed, a hole in the
middle, a server that ignores ``page``. Each page is checked against what was asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from getbill_async import GetBillClient, NotFoundError, PaginationError

from .loopback import serve


class ListServer:
    """``GET /v1/followups`` over ``pages`` pages of ``per_page`` items, with lies on demand.

    ``echo(n)``: the page number the answer claims; ``items(n)``: the page whose items are
    sent (a server that ignores ``page`` sends page 1's); ``empty``: pages sent empty, each
    ``empty_times`` times; ``missing_from``: pages from here on answer 404.
    """

    def __init__(self, pages: int, per_page: int = 10) -> None:
        self.pages, self.per_page = pages, per_page
        self.echo: Callable[[int], int] = lambda n: n
        self.items: Callable[[int], int] = lambda n: n
        self.empty: set[int] = set()
        self.empty_times = 1_000
        self.missing_from: int | None = None
        self.claimed_pages: int | None = None
        self.asked: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        number = int(request.query["page"])
        self.asked.append(number)
        if self.missing_from is not None and number >= self.missing_from:
            return web.json_response({"error": True, "message": "gone", "code": 404}, status=404)
        source = self.items(number)
        data = [
            {"id": f"f{source}-{i}", "debt_id": "d", "status": "sent", "type": "sms"}
            for i in range(self.per_page if 1 <= source <= self.pages else 0)
        ]
        if number in self.empty and self.asked.count(number) <= self.empty_times:
            data = []
        total = self.pages * self.per_page
        pagination = {
            "total": total,
            "page": self.echo(number),
            "limit": self.per_page,
            "pages": self.claimed_pages or self.pages,
        }
        return web.json_response({"error": False, "data": data, "pagination": pagination})


@asynccontextmanager
async def client_for(server: ListServer) -> AsyncIterator[GetBillClient]:
    app = web.Application()
    app.router.add_get("/v1/followups", server.handle)
    async with serve(app) as url, GetBillClient("t0k3n", base_url=f"{url}/v1") as client:
        yield client


def ids_in(path: Path) -> list[str]:
    return [msgspec.json.decode(line)["id"] for line in path.read_bytes().splitlines()]


async def test_a_wrong_page_echo_is_asked_again_then_named(tmp_path: Path) -> None:
    server = ListServer(pages=40)
    server.echo = lambda n: 1
    async with client_for(server) as client:
        seen: list[str] = []
        with pytest.raises(PaginationError, match=r"^GET /followups page 2: the answer is for"):
            async for f in client.followups.iterate(limit=10):
                seen.append(f.id)
    assert len(seen) == 10, "page 1's items only"
    assert server.asked.count(2) == 2, "asked once more before giving up"
    assert len(server.asked) <= 6


async def test_resume_after_a_lying_echo_has_every_id_once(tmp_path: Path) -> None:
    out = tmp_path / "f.jsonl"
    server = ListServer(pages=40)
    server.echo = lambda n: 1  # every page says it is page 1
    server.missing_from = 31
    async with client_for(server) as client:
        with pytest.raises(PaginationError, match="page 2: the answer is for page 1"):
            await client.followups.export(out, limit=10)
    server.echo = lambda n: n
    server.missing_from = None
    async with client_for(server) as client:
        report = await client.followups.export(out, limit=10, resume=True)
    ids = ids_in(out)
    assert len(ids) == len(set(ids)) == 400 == report.items


async def test_an_empty_page_in_the_middle_fails_and_keeps_the_checkpoint(
    tmp_path: Path,
) -> None:
    out = tmp_path / "f.jsonl"
    server = ListServer(pages=5, per_page=100)
    server.empty = {3}
    async with client_for(server) as client:
        with pytest.raises(PaginationError, match=r"page 3: 0 items, where total 500"):
            await client.followups.export(out, limit=100, concurrency=1)
    assert server.asked == [1, 2, 3, 3], "the empty page is asked once more, then the walk stops"
    assert (tmp_path / "f.jsonl.checkpoint").exists() and not out.exists()
    server.empty = set()
    async with client_for(server) as client:
        report = await client.followups.export(out, limit=100, resume=True)
    ids = ids_in(out)
    assert len(ids) == len(set(ids)) == 500 == report.items
    assert not report.total_changed


async def test_a_page_empty_once_is_asked_again_and_the_walk_goes_on() -> None:
    server = ListServer(pages=5)
    server.empty, server.empty_times = {3}, 1
    async with client_for(server) as client:
        ids = [f.id async for f in client.followups.iterate(limit=10, concurrency=3)]
    assert len(ids) == len(set(ids)) == 50
    assert server.asked.count(3) == 2


async def test_a_server_that_ignores_page_is_stopped_within_a_few_requests() -> None:
    server = ListServer(pages=100)
    server.items = lambda n: 1  # the right page number echoed, page 1's items every time
    async with client_for(server) as client:
        walk = client.followups.iterate(limit=10)
        with pytest.raises(PaginationError, match=r"page 2: every item on it was yielded before"):
            async for _ in walk:
                pass
        assert walk.stats.items == 10
    assert len(server.asked) <= 8


async def test_a_failure_past_the_lies_is_not_what_stops_the_walk() -> None:
    server = ListServer(pages=40)
    server.missing_from = 3
    async with client_for(server) as client:
        with pytest.raises(NotFoundError):  # an honest server's error still comes through
            async for _ in client.followups.iterate(limit=10, concurrency=1):
                pass


async def test_pagination_figures_that_do_not_add_up_stop_the_walk_at_once() -> None:
    server = ListServer(pages=5)
    server.claimed_pages = 10**9  # a walk that believed it would ask forever
    async with client_for(server) as client:
        with pytest.raises(PaginationError, match=r"page 1: pagination says 1000000000 pages"):
            await client.followups.pages(limit=10).__anext__()
    assert server.asked == [1, 1]
