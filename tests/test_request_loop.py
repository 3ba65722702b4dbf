"""The request path's one loop and its hostile answers: a write without a usable 2xx is
reconciled, the deadline bounds everything, echoed secrets are redacted, careless
credentials and URLs are refused with one clear line."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from getbill_async import (
    AmbiguousWriteError,
    AuthenticationError,
    ClientCredentials,
    ConfigurationError,
    DecodeError,
    GetBillClient,
    GetBillError,
    LocalBudget,
    RateLimit,
    RetryPolicy,
    ServerError,
)
from getbill_async.transport import Request, default_max_wait, lane_of

from .loopback import serve

TOKEN = "ECHOTOKEN-1a2b3c4d-bearer"
SECRET = "ECHOSECRET-5e6f7a8b-client"
FAST = RetryPolicy(base=0.001, cap=0.01)


def _followup(fid: str, debt_id: str, call_id: str | None) -> dict[str, Any]:
    return {"id": fid, "debt_id": debt_id, "status": "sent", "type": "call", "call_id": call_id}


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    pagination = {"total": len(items), "page": 1, "limit": 100, "pages": 1}
    return {"error": False, "data": items, "pagination": pagination}


class Store:
    """An API that commits every create, answers the first one per ``call_id`` badly
    (``how``), and lists a debt's followups for the reconcile lookup."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.created: list[dict[str, Any]] = []
        self.posts = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/followups", self.create)
        app.router.add_get("/v1/followups/debt/{debt_id}", self.for_debt)
        return app

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        fields = await request.json()
        call_id = fields.get("call_id")
        first = not any(f["call_id"] == call_id for f in self.created)
        made = _followup(f"f{len(self.created)}", fields["debt_id"], call_id)
        self.created.append(made)
        if not first or self.how == "fine":
            return web.json_response({"error": False, "data": made}, status=201)
        if self.how == "oversize":
            padded = {"error": False, "data": made, "padding": "x" * 20_000}
            return web.json_response(padded, status=201)
        if self.how == "303":
            return web.Response(status=303, headers={"Location": "/v1/followups/" + made["id"]})
        # "truncated": the headers promise more than the body ever brings
        resp = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
        resp.content_length = 500
        await resp.prepare(request)
        await resp.write(b'{"error": false, "data": {"id": ')
        assert request.transport is not None
        request.transport.close()
        return resp

    async def for_debt(self, request: web.Request) -> web.Response:
        debt_id = request.match_info["debt_id"]
        return web.json_response(_page([f for f in self.created if f["debt_id"] == debt_id]))


@pytest.mark.parametrize("how", ["oversize", "303", "truncated"])
async def test_a_write_without_a_usable_2xx_is_reconciled_never_doubled(how: str) -> None:
    store = Store(how)
    async with serve(store.app()) as root:
        async with GetBillClient(
            TOKEN, base_url=root + "/v1", retry=FAST, max_response_bytes=4096
        ) as client:
            one = await client.followups.create(debt_id="d1", type="call", call_id="c-1")
            rows = [{"debt_id": "d2", "type": "call", "call_id": f"c-{i}"} for i in (2, 3)]
            async with client.followups.create_many(rows) as batch:
                results = [r async for r in batch]
    assert one.call_id == "c-1"
    assert [r.error for r in results] == [None, None]  # no failed outcome
    assert sorted(f["call_id"] for f in store.created) == ["c-1", "c-2", "c-3"]
    assert store.posts == 3  # each found by its call_id, none sent twice


class SlowLookup(Store):
    async def create(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        return web.json_response({"error": True, "message": "busy"}, status=502)

    async def for_debt(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response(_page([]))


async def test_max_time_bounds_a_whole_create_reconcile_lookups_included() -> None:
    store = SlowLookup("fine")
    policy = RetryPolicy(max_tries=8, max_time=0.8, base=0.001, cap=0.01)
    async with serve(store.app()) as root:
        async with GetBillClient(TOKEN, base_url=root + "/v1", retry=policy) as client:
            started = time.monotonic()
            with pytest.raises(AmbiguousWriteError):
                await client.followups.create(debt_id="d1", type="call", call_id="c-1")
            took = time.monotonic() - started
    assert took < 1.3, f"a create with max_time=0.8 ran {took:.2f}s"
    assert store.posts <= 3


async def test_max_time_bounds_the_token_refresh_too() -> None:
    tokens = 0

    async def token(request: web.Request) -> web.Response:
        nonlocal tokens
        tokens += 1
        if tokens > 1:
            await asyncio.sleep(3)  # the refresh hangs
        return web.json_response({"access_token": f"tok-{tokens}", "expires_in": 3600})

    async def revoked(request: web.Request) -> web.Response:
        return web.json_response({"error": True, "message": "revoked"}, status=401)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/v1/followups", revoked)
    async with serve(app) as root:
        creds = ClientCredentials("id", SECRET, token_url=root + "/token")
        async with GetBillClient(creds, base_url=root + "/v1") as client:
            hurried = client.with_options(retry=RetryPolicy(max_time=0.5))
            started = time.monotonic()
            with pytest.raises(GetBillError):
                await hurried.followups.list()
            took = time.monotonic() - started
    assert took < 1.2, f"a call with max_time=0.5 ran {took:.2f}s"


@pytest.fixture
async def echoing() -> AsyncIterator[str]:
    """A hostile server that echoes back every secret it is sent."""

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        said = f"invalid_client: secret {form.get('client_secret')!s} unknown"
        return web.json_response({"error": said, "error_description": said}, status=401)

    async def api(request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "")
        if request.query.get("page") == "3":  # a proxy's page, echoing the request
            return web.Response(text=f"<html>you sent {bearer}</html>", content_type="text/html")
        if request.query.get("page") == "2":
            said = {"error": True, "message": f"overloaded: {bearer}"}
            return web.json_response(said, status=503)
        body = {"error": True, "message": f"Token {bearer[7:]} is revoked", "details": {}}
        body["details"] = {"token": bearer}
        return web.json_response(body, status=401)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/v1/followups", api)
    async with serve(app) as root:
        yield root


async def test_secrets_echoed_by_a_server_are_redacted(
    echoing: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[GetBillError] = []
    async with GetBillClient(TOKEN, base_url=echoing + "/v1", retry=FAST) as client:
        with pytest.raises(AuthenticationError) as refused:
            await client.followups.list()
        errors.append(refused.value)
        with pytest.raises(ServerError) as failed:
            await client.followups.list(page=2)
        errors.append(failed.value)
        with pytest.raises(DecodeError) as proxied:
            await client.followups.list(page=3)
        errors.append(proxied.value)
    creds = ClientCredentials("id", SECRET, token_url=echoing + "/token")
    async with GetBillClient(creds, base_url=echoing + "/v1", retry=FAST) as client:
        with pytest.raises(AuthenticationError) as token_refused:
            await client.followups.list()
        errors.append(token_refused.value)
    texts = [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [f"{e} {e!r} {getattr(e, 'details', None)}" for e in errors]
    assert any("retrying GET /followups page 2" in t for t in texts)  # DEBUG was on
    assert "[REDACTED]" in str(refused.value) and "[REDACTED]" in str(token_refused.value)
    leaks = [t[:200] for t in texts if TOKEN in t or SECRET in t]
    assert leaks == []


async def test_the_cli_redacts_what_a_hostile_server_echoes(echoing: str, tmp_path: Path) -> None:
    env = {**os.environ, "GETBILL_TOKEN": TOKEN, "GETBILL_BASE_URL": echoing + "/v1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "getbill_async.cli",
        "export",
        "--out",
        str(tmp_path / "out.jsonl"),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"revoked" in err and b"[REDACTED]" in err
    assert TOKEN.encode() not in out + err


async def test_the_token_answer_is_capped() -> None:
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "tok", "padding": "x" * 200_000})

    async def api(request: web.Request) -> web.Response:
        return web.json_response(_page([]))

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/v1/followups", api)
    async with serve(app) as root:
        creds = ClientCredentials("id", SECRET, token_url=root + "/token")
        async with GetBillClient(
            creds, base_url=root + "/v1", retry=FAST, max_response_bytes=65_536
        ) as client:
            with pytest.raises(DecodeError, match="larger than max_response_bytes=65536"):
                await client.followups.list()


async def test_a_static_token_is_stripped_and_a_broken_one_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def api(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return web.json_response(_page([]))

    app = web.Application()
    app.router.add_get("/v1/followups", api)
    async with serve(app) as root:
        monkeypatch.setenv("GETBILL_TOKEN", TOKEN + "\n")
        async with GetBillClient(base_url=root + "/v1") as client:
            await client.followups.list()
    assert seen == [f"Bearer {TOKEN}"]
    with pytest.raises(ConfigurationError, match="token holds a control character") as info:
        GetBillClient("abc\r\nX-Evil: 1", base_url=root + "/v1")
    assert "X-Evil" not in str(info.value) and "\n" not in str(info.value)


async def test_a_token_endpoint_answering_a_line_break_is_a_clear_error() -> None:
    bad = "tok\r\nX-Evil: 1"

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": bad, "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    async with serve(app) as root:
        creds = ClientCredentials("id", SECRET, token_url=root + "/token")
        async with GetBillClient(creds, base_url=root + "/v1", retry=FAST) as client:
            with pytest.raises(AuthenticationError, match="control characters") as info:
                await client.followups.list()
    assert bad not in str(info.value) and "X-Evil" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("field", ["base_url", "token_url"])
def test_urls_holding_a_password_are_refused_without_echoing_it(field: str) -> None:
    url = "https://user:Pa55w0rd-secret@api.example.com/v1"
    with pytest.raises(ConfigurationError, match=f"{field} must not hold credentials") as info:
        if field == "base_url":
            GetBillClient(TOKEN, base_url=url)
        else:
            GetBillClient(ClientCredentials("id", SECRET, token_url=url))
    assert "Pa55w0rd" not in str(info.value)


async def test_close_during_a_walk_is_a_clear_sdk_error() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        page = _page([_followup(f"f{i}", "d", None) for i in range(100)])
        page["pagination"] = {"total": 1000, "page": 1, "limit": 100, "pages": 10}
        return web.json_response(page)

    app = web.Application()
    app.router.add_get("/v1/followups", slow)
    async with serve(app) as root:
        client = GetBillClient(TOKEN, base_url=root + "/v1", retry=FAST)

        async def walk() -> int:
            async with client.followups.iterate(concurrency=2) as items:
                return len([f async for f in items])

        task = asyncio.ensure_future(walk())
        await asyncio.sleep(0.5)  # page 1 is read, page 2 in flight
        await client.close()
        with pytest.raises(ConfigurationError, match="client was closed"):
            await task


def test_one_rule_puts_a_call_in_its_lane() -> None:
    walk, single = Request("GET", "/followups", bulk=True), Request("GET", "/followups")
    assert (lane_of(walk, None), lane_of(single, None)) == ("bulk", "interactive")
    assert (lane_of(walk, "interactive"), lane_of(single, "bulk")) == ("interactive", "bulk")


def test_max_wait_has_one_meaning_and_one_default() -> None:
    capped = GetBillClient(TOKEN, rate_limit=RateLimit(max_wait=5))
    uncapped = GetBillClient(TOKEN)
    assert capped._options.max_wait == 5.0 and uncapped._options.max_wait == math.inf
    assert capped.with_options(max_wait=None)._options.max_wait == math.inf
    assert default_max_wait(LocalBudget(RateLimit(max_wait=2))) == 2.0
    with pytest.raises(ConfigurationError, match="max_wait must be a number of seconds >= 0"):
        capped.with_options(max_wait=math.nan)
