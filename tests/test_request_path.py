"""The request path over hours: token blips, sent-means-sent, deadlines, views, big bodies.

Each test reproduces a defect seen against a strict server on loopback.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from getbill_async import (
    AmbiguousWriteError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    ClientCredentials,
    ConfigurationError,
    DecodeError,
    GetBillClient,
    RateLimit,
    RetryPolicy,
    ServerError,
)
from getbill_async.models import Followup, Page
from getbill_async.transport import OAuthTokenSource, Request

from .loopback import serve

FAST = RetryPolicy(max_tries=4, base=0.001, cap=0.005)
_PAGE_DECODER = msgspec.json.Decoder(Page[Followup])
RATE_HEADERS = {
    "X-RateLimit-Limit": "1000",
    "X-RateLimit-Remaining": "990",
    "X-RateLimit-Window": "3600",
}


def followup(number: int) -> dict[str, Any]:
    return {"id": f"f{number}", "debt_id": "d1", "status": "on_hold", "type": "call"}


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    pagination = {"total": len(items), "page": 1, "limit": 20, "pages": 1}
    return {"error": False, "data": items, "pagination": pagination}


def unauthorized() -> web.Response:
    body = {
        "error": True,
        "message": "Authentication credentials are missing or invalid",
        "code": 401,
    }
    return web.json_response(body, status=401)


class TokenServer:
    """``/token`` answering from a script of statuses (then 200s), and ``/v1/followups``."""

    def __init__(self, statuses: list[int], *, expires_in: float = 3600) -> None:
        self.statuses = list(statuses)
        self.expires_in = expires_in
        self.issued = 0
        self.token_requests = 0
        self.rejected: set[str] = set()
        self.api_delay: dict[str, float] = {}
        self.app = web.Application()
        self.app.router.add_post("/token", self.token)
        self.app.router.add_get("/v1/followups", self.followups)

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return web.json_response({"error": "temporarily_unavailable"}, status=status)
        self.issued += 1
        return web.json_response(
            {
                "access_token": f"tok{self.issued}",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            }
        )

    async def followups(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        await asyncio.sleep(self.api_delay.get(token, 0.0))
        if not token.startswith("tok") or token in self.rejected:
            return unauthorized()
        return web.json_response(page([followup(1)]), headers=RATE_HEADERS)


@pytest.fixture
async def token_server() -> AsyncIterator[tuple[TokenServer, str]]:
    server = TokenServer([])
    async with serve(server.app) as root:
        yield server, root


def credentials(root: str) -> ClientCredentials:
    return ClientCredentials("blip-client", "blip-secret-9f2", token_url=root + "/token")


# the token endpoint is part of the request path -----------------------------------------------


async def test_one_503_from_the_token_endpoint_is_retried(
    token_server: tuple[TokenServer, str],
) -> None:
    server, root = token_server
    server.statuses = [503]
    async with GetBillClient(credentials(root), base_url=root + "/v1", retry=FAST) as client:
        answer = await client.followups.list()
    assert [f.id for f in answer.data] == ["f1"]
    assert server.token_requests == 2


async def test_a_token_endpoint_that_keeps_failing_is_a_server_error(
    token_server: tuple[TokenServer, str],
) -> None:
    server, root = token_server
    server.statuses = [500, 502, 503, 504]
    async with GetBillClient(credentials(root), base_url=root + "/v1", retry=FAST) as client:
        with pytest.raises(ServerError, match="token endpoint failed") as info:
            await client.followups.list()
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.status == 504 and server.token_requests == FAST.max_tries
    assert "blip-secret-9f2" not in str(info.value)


async def test_a_refused_client_is_still_an_authentication_error(
    token_server: tuple[TokenServer, str],
) -> None:
    server, root = token_server
    server.statuses = [401]
    async with GetBillClient(credentials(root), base_url=root + "/v1", retry=FAST) as client:
        with pytest.raises(AuthenticationError, match="token request refused"):
            await client.followups.list()
    assert server.token_requests == 1  # a refusal is not retried


async def test_a_failed_refresh_keeps_the_valid_token_and_tries_again_later(
    token_server: tuple[TokenServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, root = token_server
    now = [0.0]
    source = OAuthTokenSource(credentials(root), timeout=5, retry=FAST, clock=lambda: now[0])
    async with aiohttp.ClientSession() as session:
        assert await source.token(session) == "tok1"
        server.statuses = [503] * 8  # the next two refreshes (4 tries each) fail
        now[0] = 3545.0  # past the refresh point (3540), the token valid until 3595
        with caplog.at_level(logging.WARNING, logger="getbill_async"):
            assert await source.token(session) == "tok1"
        assert "token refresh failed" in caplog.text and "tok1" not in caplog.text
        assert server.token_requests == 1 + 4
        now[0] = 3560.0  # within the pause before the next try: no request
        assert await source.token(session) == "tok1"
        assert server.token_requests == 5
        now[0] = 3580.0  # the next try fails too, the token still valid
        assert await source.token(session) == "tok1"
        assert server.token_requests == 9
        now[0] = 3590.0
        assert await source.token(session) == "tok2"  # the endpoint is back


async def test_a_failed_refresh_past_expiry_raises(token_server: tuple[TokenServer, str]) -> None:
    server, root = token_server
    now = [0.0]
    source = OAuthTokenSource(credentials(root), timeout=5, retry=FAST, clock=lambda: now[0])
    async with aiohttp.ClientSession() as session:
        await source.token(session)
        server.statuses = [503] * 4
        now[0] = 3600.0
        with pytest.raises(ServerError):
            await source.token(session)


async def test_refresh_after_401_replaces_only_the_token_that_was_sent(
    token_server: tuple[TokenServer, str],
) -> None:
    # A sends tok1 and gets a slow 401; meanwhile tok1 reaches its refresh point and B fetches
    # tok2. A's 401 must not throw tok2 away: one refresh in all, not two.
    server, root = token_server
    server.expires_in = 1.0
    server.rejected.add("tok1")
    server.api_delay["tok1"] = 1.2
    async with GetBillClient(credentials(root), base_url=root + "/v1", retry=FAST) as client:
        slow = asyncio.ensure_future(client.followups.list())
        await asyncio.sleep(1.0)  # past 90% of tok1's life
        await client.followups.list()
        await slow
    assert server.token_requests == 2


# sent means sent ----------------------------------------------------------------------------


class WriteServer:
    """Counts creates by arrival; the first one answers after ``first_delay``."""

    def __init__(self, first_delay: float) -> None:
        self.first_delay = first_delay
        self.arrived = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/followups", self.create)

    async def create(self, request: web.Request) -> web.Response:
        self.arrived += 1
        number = self.arrived
        await request.read()
        if number == 1:
            await asyncio.sleep(self.first_delay)
        body = {"error": False, "message": "Created", "data": followup(number)}
        return web.json_response(body, status=201, headers=RATE_HEADERS)


async def test_a_create_waiting_for_a_pooled_connection_is_not_ambiguous() -> None:
    server = WriteServer(first_delay=1.5)
    async with serve(server.app) as root:
        async with GetBillClient(
            "static-token", base_url=root + "/v1", timeout=0.6, connections=1, retry=FAST
        ) as client:
            results = await asyncio.gather(
                client.followups.create(debt_id="d1", type="call"),
                client.followups.create(debt_id="d1", type="sms"),
                return_exceptions=True,
            )
            status = await client.budget_status()
    ambiguous = [r for r in results if isinstance(r, AmbiguousWriteError)]
    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(ambiguous) == 1 and len(created) == 1, results
    assert "may have happened" in str(ambiguous[0])
    assert str(ambiguous[0]).count("POST /followups") == 1  # said once, not twice
    assert server.arrived == 2
    # The ledger counted what reached the server, no more.
    assert status.writes.used == server.arrived and status.writes.in_flight == 0


# deadlines and views ---------------------------------------------------------------------------


@pytest.fixture
async def list_server() -> AsyncIterator[str]:
    async def followups(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "0")))
        return web.json_response(page([followup(1)]), headers=RATE_HEADERS)

    app = web.Application()
    app.router.add_get("/v1/followups", followups)
    async with serve(app) as root:
        yield root + "/v1"


async def test_max_time_cuts_a_budget_wait_short(list_server: str) -> None:
    rate = RateLimit(reads=1, writes=1, window=30.0)
    async with GetBillClient("t", base_url=list_server, rate_limit=rate) as client:
        await client.followups.list()
        hurried = client.with_options(retry=RetryPolicy(max_time=0.5))
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="max_time would pass while waiting") as info:
            await hurried.followups.list()
        assert time.monotonic() - started < 0.3  # refused at once, not after 30 s
        assert isinstance(info.value.__cause__, BudgetExhaustedError)
        with pytest.raises(BudgetExhaustedError, match="over max_wait 0.2s"):
            await client.with_options(max_wait=0.2).followups.list()


async def test_with_options_is_a_view_sharing_session_budget_and_stats(list_server: str) -> None:
    async with GetBillClient("t", base_url=list_server, retry=FAST) as client:
        quick = client.with_options(timeout=0.2, priority="bulk")
        await quick.followups.list()
        assert quick.session is client.session and quick.budget is client.budget
        assert client.stats.requests == 1
        await quick.close()  # a view owns nothing
        await client.followups.list()
        assert client.stats.requests == 2
        # the view's timeout applies to its calls only (the server waits 0.5 s here)
        sleepy = {"delay": "0.5"}
        with pytest.raises(APITimeoutError):
            await quick.with_options(retry=RetryPolicy(max_tries=1)).send(
                _list_request(sleepy), _PAGE_DECODER
            )
        await client.send(_list_request(sleepy), _PAGE_DECODER)


def test_with_options_checks_its_arguments() -> None:
    client = GetBillClient("t", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(
        ConfigurationError, match="priority: invalid value 'urgent'; allowed: interactive, bulk"
    ):
        client.with_options(priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout must be a number of seconds > 0"):
        client.with_options(timeout=0)
    with pytest.raises(ConfigurationError, match="max_wait must be"):
        client.with_options(max_wait=-1)
    assert client.with_options(max_wait=None)._options.max_wait == math.inf


# the response cap counts decoded bytes -------------------------------------------------------


async def test_a_gzip_bomb_is_refused_by_its_decoded_size() -> None:
    inflated = b'{"error": false, "data": [], "pad": "' + b"0" * (50 << 20) + b'"}'
    bomb = gzip.compress(inflated, compresslevel=9)
    assert len(bomb) < 300_000

    async def followups(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    app = web.Application()
    app.router.add_get("/v1/followups", followups)
    async with serve(app) as root:
        async with GetBillClient(
            "t", base_url=root + "/v1", max_response_bytes=1 << 20, retry=FAST
        ) as client:
            with pytest.raises(
                DecodeError, match=r"larger than max_response_bytes=1048576 \(decoded\)"
            ):
                await client.followups.list()


def _list_request(params: dict[str, str]) -> Request:
    return Request("GET", "/followups", params=params)
