"""Hardening: secrets never leak, credentials stay home, answers are capped and checked."""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from getbill_async import (
    AmbiguousWriteError,
    APIError,
    AuthenticationError,
    ClientCredentials,
    ConfigurationError,
    DecodeError,
    Followup,
    GetBillClient,
    GetBillError,
    NotFoundError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from getbill_async.sandbox import FaultPlan, Sandbox
from getbill_async.transport import OAuthTokenSource

from .loopback import serve

TOKEN = "CANARYTOKEN-7f3a9c-static-bearer"
BAD_TOKEN = "CANARYBADTOKEN-51e0-invalid"
CLIENT_ID = "canary-client"
SECRET = "CANARYSECRET-c0ffee-client"
WRONG_SECRET = "CANARYWRONGSECRET-beef"
SIG = "CANARYSIG0123456789abcdef"
SIGNED_URL = f"https://s3.amazonaws.com/b/k.mp3?X-Amz-Expires=60&X-Amz-Signature={SIG}"
FAST = RetryPolicy(base=0.001, cap=0.01)
ONCE = RetryPolicy(max_tries=1)
_SIGNATURES = re.compile(r"X-Amz-Signature=([^&\s\"'\\]+)")


# The caller's own arguments, shown back in a frame's locals: what the caller passed is theirs.
_CALLER_ARGUMENTS = frozenset({"fields"})


def _walk_tracebacks(error: BaseException) -> list[str]:
    """Every formatted traceback of ``error``, and the locals of the SDK's own frames."""
    texts = ["".join(traceback.format_exception(error))]
    exc = traceback.TracebackException.from_exception(error, capture_locals=True)
    seen: list[traceback.TracebackException] = [exc]
    while seen:
        current = seen.pop()
        for frame in current.stack:
            if "/getbill_async/" in frame.filename and "/sandbox/" not in frame.filename:
                local = (frame.locals or {}).items()
                texts.extend(f"{k}={v}" for k, v in local if k not in _CALLER_ARGUMENTS)
        seen.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return texts


async def _session(sb: Sandbox, out: list[object], errors: list[GetBillError]) -> list[str]:
    """A whole session touching every path; returns the signatures it was served."""
    signatures: list[str] = []
    creds = ClientCredentials(CLIENT_ID, SECRET, token_url=sb.token_url)
    async with GetBillClient(TOKEN, base_url=sb.base_url, retry=FAST) as a:
        page = await a.followups.list(limit=5)  # fault 1: a 500, retried
        one = await a.followups.get(page.data[0].id)  # fault 3: a 429, retried
        async with a.followups.iterate(limit=100, concurrency=1) as walk:
            seen = [f async for f in walk]
        for followup in seen:
            signatures += _SIGNATURES.findall(f"{followup.audio_url} {followup.pdf_url}")
        created = await a.followups.create(
            debt_id=one.debt_id, type="call", audio_url=SIGNED_URL, notes="canary"
        )
        updated = await a.followups.update(created.id, audio_url=SIGNED_URL + "2")
        try:
            await a.followups.get("nope")
        except NotFoundError as exc:
            errors.append(exc)
        try:  # media at a path nobody serves: the error shows the URL, never its signature
            ghost = Followup(id="f", debt_id="d", status="sent", type="call")
            ghost.audio_url = f"{sb.root_url}/media/x.mp3?X-Amz-Signature={SIG}"
            await a.followups.download_media(ghost, "/nonexistent-dir/never-written")
        except NotFoundError as exc:
            errors.append(exc)
        out += [a, page, one, seen[:3], created, updated, a.stats, await a.budget_status()]
    async with GetBillClient(TOKEN, base_url=sb.base_url, retry=ONCE) as b:
        try:
            await b.followups.get(one.id)  # fault 11: an HTML page with a 200
        except DecodeError as exc:
            errors.append(exc)
        try:
            await b.followups.create(debt_id=one.debt_id, type="sms", audio_url=SIGNED_URL)
        except AmbiguousWriteError as exc:  # fault 12: committed, then a 500
            errors.append(exc)
    async with GetBillClient(BAD_TOKEN, base_url=sb.base_url) as c:
        try:
            await c.followups.list()
        except AuthenticationError as exc:
            errors.append(exc)
    async with GetBillClient(creds, base_url=sb.base_url) as d:
        await d.followups.list(limit=1)
        out += [d, creds, d._auth]
        assert isinstance(d._auth, OAuthTokenSource) and d._auth._token is not None
        signatures.append(d._auth._token)  # the issued token must not show either
    wrong = ClientCredentials(CLIENT_ID, WRONG_SECRET, token_url=sb.token_url)
    async with GetBillClient(wrong, base_url=sb.base_url) as e:
        try:
            await e.followups.list()
        except AuthenticationError as exc:
            errors.append(exc)
        out += [e, wrong]
    return signatures


async def test_canary_nothing_secret_in_logs_reprs_errors_or_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = FaultPlan(at={1: "500", 3: "storm429", 11: "non_json", 12: "commit_500"})
    plan = FaultPlan(at=plan.at, storm_length=1)
    objects: list[object] = []
    errors: list[GetBillError] = []
    async with Sandbox(followups=300, seed=5, faults=plan) as sb:
        sb.add_token(TOKEN)
        sb.add_client(CLIENT_ID, SECRET)
        served = await _session(sb, objects, errors)
        assert sb.stats.faults_injected == {"500": 1, "storm429": 1, "non_json": 1, "commit_500": 1}
        assert sb.stats.by_status.get(401) == 1 and sb.stats.token_requests == 2
    assert [type(e).__name__ for e in errors] == [
        "NotFoundError",
        "NotFoundError",
        "DecodeError",
        "AmbiguousWriteError",
        "AuthenticationError",
        "AuthenticationError",
    ]
    assert len(served) > 10  # the seeded media URLs were signed
    texts = [caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(o) for o in objects] + [str(o) for o in objects]
    for error in errors:
        texts += [str(error), repr(error), *_walk_tracebacks(error)]
    assert any("retrying GET /followups page 1" in t for t in texts)  # DEBUG was on
    secrets = [TOKEN, BAD_TOKEN, SECRET, WRONG_SECRET, SIG, *served]
    leaks = [(s, t[:200]) for t in texts for s in secrets if s in t]
    assert leaks == [], "\n".join(map(str, leaks))


# credentials stay with base_url's host -------------------------------------------------------


@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Another loopback server (another origin) that records what reaches it."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({**request.headers, "body": (await request.read()).decode()})
        return web.json_response(
            {
                "error": False,
                "data": [],
                "pagination": {"total": 0, "page": 1, "limit": 1, "pages": 0},
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with serve(app) as root:
        yield root, seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_api_redirects_are_not_followed(
    elsewhere: tuple[str, list[dict[str, str]]], status: int
) -> None:
    other, seen = elsewhere

    async def moved(request: web.Request) -> web.Response:
        location = f"{other}/steal?X-Amz-Signature=hidden{status}"
        return web.Response(status=status, headers={"Location": location})

    app = web.Application()
    app.router.add_route("*", "/v1/{tail:.*}", moved)
    async with serve(app) as root:
        async with GetBillClient(TOKEN, base_url=root + "/v1", retry=FAST) as client:
            with pytest.raises(APIError, match=f"GET /followups: {status} redirected to ") as err:
                await client.followups.list()
            # A redirect answering a write leaves its outcome unknown (issue 19, item 1).
            with pytest.raises(AmbiguousWriteError, match="redirects are not followed"):
                await client.followups.create(debt_id="d", type="sms")
    assert seen == []
    assert f"hidden{status}" not in str(err.value) and "X-Amz-Signature=[REDACTED]" in str(
        err.value
    )


async def test_aiohttp_alone_drops_authorization_across_origins(
    elsewhere: tuple[str, list[dict[str, str]]],
) -> None:
    """Why not following is needed at all: aiohttp strips the header, not a 307's body."""
    other, seen = elsewhere

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": other + "/token"})

    app = web.Application()
    app.router.add_post("/token", moved)
    async with serve(app) as root:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(root + "/token", data={"s": SECRET}, headers=headers) as resp:
                assert resp.status == 200
    assert "Authorization" not in seen[0]
    assert SECRET in seen[0]["body"]  # the body went along: a client secret would leak


async def test_token_request_is_not_redirected(elsewhere: tuple[str, list[dict[str, str]]]) -> None:
    other, seen = elsewhere

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": other + "/token"})

    app = web.Application()
    app.router.add_post("/token", moved)
    async with serve(app) as root:
        creds = ClientCredentials(CLIENT_ID, SECRET, token_url=root + "/token")
        async with GetBillClient(creds, base_url=other + "/v1") as client:
            with pytest.raises(APIError, match="token request redirected to http") as err:
                await client.followups.list()
    assert not isinstance(err.value, AuthenticationError)  # nothing was refused
    assert seen == []  # neither the secret (token URL) nor a request (API) got there
    assert err.value.status == 307


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="base_url must use https"):
        GetBillClient(TOKEN, base_url="http://api.example.com/v1")
    creds = ClientCredentials(CLIENT_ID, SECRET, token_url="http://auth.example.com/token")
    with pytest.raises(ConfigurationError, match="token_url must use https") as err:
        GetBillClient(creds)
    assert SECRET not in str(err.value)


# answers are capped and checked --------------------------------------------------------------


def _big_json() -> bytes:
    return b'{"error":false,"data":[' + b'"x",' * 40_000 + b'"x"],"pagination":{}}'


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    while True:  # never ends: only the client's cap stops this
        await response.write(b'"filler",' * 4096)


@pytest.mark.parametrize("shape", ["content-length", "chunked", "endless", "huge-claim"])
async def test_answers_over_the_cap_are_a_clear_error(shape: str) -> None:
    body = _big_json()

    async def big(request: web.Request) -> web.StreamResponse:
        if shape == "endless":
            return await _endless(request)
        if shape == "huge-claim":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 10**12
            await response.prepare(request)
            await response.write(b"[")
            await asyncio.sleep(30)
            return response
        if shape == "chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(body), 5000):
                await response.write(body[start : start + 5000])
            await response.write_eof()
            return response
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/followups", big)
    async with serve(app) as root:
        async with GetBillClient(
            TOKEN, base_url=root + "/v1", retry=ONCE, max_response_bytes=64 * 1024
        ) as client:
            with pytest.raises(DecodeError, match="larger than max_response_bytes=65536") as err:
                await asyncio.wait_for(client.followups.list(), 10)
    assert err.value.status == 200


@pytest.mark.parametrize(
    ("status", "content_type", "body", "error", "match"),
    [
        (
            200,
            "text/html",
            b"<html><body>Welcome to nginx</body></html>",
            DecodeError,
            r"expected JSON, got text/html.*status 200, body starts b'<html><body>Welcome",
        ),
        (
            200,
            "text/plain",
            b'{"error":false,"data":[]}',
            DecodeError,
            r"expected JSON, got text/plain.*status 200",
        ),
        (
            200,
            "application/json",
            b"<!DOCTYPE html><title>Login</title>",
            DecodeError,
            r"not the documented JSON.*status 200, body starts b'<!DOCTYPE html>",
        ),
        (
            502,
            "text/html",
            b"<html><h1>502 Bad Gateway</h1></html>",
            ServerError,
            r"GET /followups: 502 HTTP 502, body starts b'<html><h1>502 Bad Gateway",
        ),
        (
            403,
            "text/html",
            b"<html>Forbidden by WAF</html>",
            APIError,
            r"403 HTTP 403, body starts b'<html>Forbidden by WAF",
        ),
    ],
)
async def test_proxy_pages_and_wrong_types_name_status_and_body(
    status: int, content_type: str, body: bytes, error: type[Exception], match: str
) -> None:
    async def proxy(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/v1/followups", proxy)
    async with serve(app) as root:
        async with GetBillClient(TOKEN, base_url=root + "/v1", retry=ONCE) as client:
            with pytest.raises(error, match=match):
                await client.followups.list()


@pytest.mark.parametrize(
    ("details", "headers"),
    [
        ('{"retry_after": 1e400}', {}),
        ('{"retry_after": 1e12}', {}),
        ("{}", {"Retry-After": "inf"}),
        ("{}", {"Retry-After": "nan"}),
        ("{}", {"X-RateLimit-Reset": "1e300"}),
    ],
)
async def test_absurd_retry_after_does_not_freeze_the_client(
    details: str, headers: dict[str, str]
) -> None:
    async def limited(request: web.Request) -> web.Response:
        body = f'{{"error":true,"message":"Rate limit exceeded","code":429,"details":{details}}}'
        return web.Response(status=429, text=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/v1/followups", limited)
    async with serve(app) as root:
        async with GetBillClient(
            TOKEN,
            base_url=root + "/v1",
            retry=RetryPolicy(max_tries=2, base=0.001, cap=0.01),
            rate_limit=RateLimit(reads=100, writes=100, window=1.0),
        ) as client:
            with pytest.raises(RateLimitError) as err:
                await asyncio.wait_for(client.followups.list(), 10)
            assert err.value.retry_after is None
            assert (await client.budget_status()).reads.blocked_for < 1.0


async def test_deeply_nested_error_body_is_an_api_error() -> None:
    nested = b'{"error":true,"message":"x","code":400,"details":{"a":' + b"[" * 100_000

    async def deep(request: web.Request) -> web.Response:
        return web.Response(status=400, body=nested, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/followups", deep)
    async with serve(app) as root:
        async with GetBillClient(TOKEN, base_url=root + "/v1") as client:
            with pytest.raises(APIError, match="400 HTTP 400, body starts"):
                await client.followups.list()


async def test_download_errors_do_not_write_outside_the_target(tmp_path: Path) -> None:
    async with Sandbox(followups=10, seed=1) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            ghost = Followup(id="f", debt_id="d", status="sent", type="call")
            ghost.audio_url = f"{sb.root_url}/nothing?X-Amz-Signature={SIG}"
            with pytest.raises(NotFoundError):
                await client.followups.download_media(ghost, tmp_path / "a.mp3")
    assert list(tmp_path.iterdir()) == []


async def test_canary_json_bodies_with_signed_urls_stay_out_of_traceback_locals() -> None:
    items = [
        {"id": "f1", "debt_id": "d", "status": "sent", "type": "call", "audio_url": SIGNED_URL},
        {"id": "f2", "debt_id": "d", "status": "sent", "type": "call", "duration_ms": "long"},
    ]
    page = {
        "error": False,
        "data": items,
        "pagination": {"total": 2, "page": 1, "limit": 20, "pages": 1},
    }

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(page)

    app = web.Application()
    app.router.add_get("/v1/followups", listing)
    errors: list[GetBillError] = []
    async with serve(app) as root:
        async with GetBillClient(TOKEN, base_url=root + "/v1", retry=ONCE) as client:
            with pytest.raises(DecodeError, match="not the documented JSON") as info:
                await client.followups.list()
            errors.append(info.value)
            async with client.followups.iterate(concurrency=1) as walk:
                with pytest.raises(DecodeError) as walked:
                    [f async for f in walk]
            errors.append(walked.value)
    texts = [t for error in errors for t in (str(error), repr(error), *_walk_tracebacks(error))]
    assert any("body=" in t for t in texts)  # the frames holding the body were looked at
    leaks = [t[:200] for t in texts if SIG in t]
    assert leaks == [], "\n".join(leaks)
