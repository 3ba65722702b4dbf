"""Helpers for the outbox tests: a webhook receiver that records every write the sandbox
committed (so a test counts writes spent and sees their order), client factories, and the
indexes of an outbox file."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from types import TracebackType

from aiohttp import web

from getbill_async import GetBillClient, RateLimit, RetryPolicy
from getbill_async.sandbox import Sandbox

__all__ = ["WriteLog", "fast_client", "indexes"]


def fast_client(sb: Sandbox, *, writes: int = 500, window: float = 3600.0) -> GetBillClient:
    """A client of the sandbox's static token with short retry waits."""
    return GetBillClient(
        sb.token,
        base_url=sb.base_url,
        rate_limit=RateLimit(reads=100_000, writes=writes, window=window),
        retry=RetryPolicy(base=0.01, cap=0.1),
    )


class WriteLog:
    """An aiohttp.web app on loopback that the sandbox's webhooks post to: each committed
    create or update, in commit order, as ``(event, call_id, status)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, str | None]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = body.get("data", {})
        self.events.append((body["type"], data.get("call_id"), data.get("status")))
        return web.Response(status=204)

    async def __aenter__(self) -> WriteLog:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def count(self) -> Counter[str]:
        """Committed writes by event type (``followup.created`` / ``followup.updated``)."""
        return Counter(event for event, _, _ in self.events)

    def per_call(self, call_id: str) -> list[tuple[str, str | None]]:
        return [(event, status) for event, cid, status in self.events if cid == call_id]


def indexes(path: Path) -> set[str]:
    """The names of the indexes an outbox file holds (SQLite's own left out)."""
    with sqlite3.connect(path) as conn:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        names = {row[0] for row in conn.execute(sql)}
    conn.close()
    return names
