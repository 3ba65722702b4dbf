"""The parts of the outbox model test (tests/test_outbox_model.py): a proxy in front of the
sandbox that answers writes as a rule says, and the world one example runs in.

``FaultyProxy`` forwards every request to the sandbox. Reads always pass; a write, by the
current ``mode``: ``answer`` (as the sandbox did), ``commit_fail`` (the sandbox commits it, the
client gets a 500), ``hang`` (committed, answered only after the client's timeout), or a
status such as ``"409"`` (refused, not committed). It records each committed write, in order,
as ``(name, duration_ms)``: ``name`` is the ``call_id``, or the ``summary`` of a create
without one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["HANG", "MODES", "FaultyProxy"]

HANG = 0.6  # seconds: past the client's timeout in the model (0.3 s)
MODES = (
    *("answer", "answer", "commit_fail", "hang"),
    *("400", "401", "404", "408", "409", "410", "413", "422", "425", "429", "500", "503"),
)
_PASSED = ("Content-Type", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class FaultyProxy:
    """See the module docstring."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "answer"
        self.commits: list[tuple[str, int | None]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        write = request.method in ("POST", "PUT")
        mode = self.mode if write else "answer"
        if mode.isdigit():
            return _refusal(int(mode))
        headers = {
            k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")
        }
        body = await request.read()
        url = self.upstream + request.path_qs
        async with self._session.request(request.method, url, data=body, headers=headers) as up:
            data, status = await up.read(), up.status
            passed = {k: up.headers[k] for k in _PASSED if k in up.headers}
        if write and 200 <= status < 300:
            self._record(data)
        if mode == "commit_fail":
            return _refusal(500)
        if mode == "hang":
            await asyncio.sleep(HANG)
        return web.Response(body=data, status=status, headers=passed)

    def _record(self, data: bytes) -> None:
        record: dict[str, Any] = json.loads(data)["data"]
        name = record.get("call_id") or record.get("summary")
        self.commits.append((str(name), record.get("duration_ms")))


def _refusal(status: int) -> web.Response:
    answer = {"error": True, "message": f"refused with {status}", "code": status}
    headers = {"Retry-After": "0"} if status in (429, 503) else {}
    return web.json_response(answer, status=status, headers=headers)
