"""Bearer tokens: static, from the environment, and OAuth2 client credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from getbill_async import (
    AuthenticationError,
    ClientCredentials,
    ConfigurationError,
    GetBillClient,
)
from getbill_async.sandbox import Sandbox


def creds(sandbox: Sandbox, **kw: object) -> ClientCredentials:
    return ClientCredentials(
        "sandbox-client",
        "sandbox-secret",
        token_url=sandbox.token_url,
        **kw,  # type: ignore[arg-type]
    )


async def test_client_credentials_fetch_once_for_50_concurrent_requests(sandbox: Sandbox) -> None:
    async with GetBillClient(creds(sandbox), base_url=sandbox.base_url) as client:
        pages = await asyncio.gather(*(client.followups.list(page=i + 1) for i in range(50)))
    assert len(pages) == 50
    assert sandbox.stats.token_requests == 1


async def test_token_is_refreshed_before_it_expires() -> None:
    async with Sandbox(followups=10, token_lifetime=1) as sandbox:
        async with GetBillClient(creds(sandbox), base_url=sandbox.base_url) as client:
            await client.followups.list()
            await asyncio.sleep(1.0)  # past 90% of the 1 s lifetime
            await client.followups.list()
        assert sandbox.stats.token_requests == 2
        assert sandbox.stats.by_status.get(401, 0) == 0, "refreshed before, not after, expiry"


async def test_bad_client_secret_is_an_authentication_error(sandbox: Sandbox) -> None:
    bad = ClientCredentials("sandbox-client", "wrong-secret-123", token_url=sandbox.token_url)
    async with GetBillClient(bad, base_url=sandbox.base_url) as client:
        with pytest.raises(AuthenticationError, match="token request refused") as info:
            await client.followups.list()
    assert "wrong-secret-123" not in str(info.value) and "wrong-secret-123" not in repr(bad)
    assert sandbox.stats.requests == 0 and sandbox.stats.token_requests == 1


async def test_static_token_401_is_not_retried(sandbox: Sandbox) -> None:
    async with GetBillClient("not-a-real-token", base_url=sandbox.base_url) as client:
        with pytest.raises(AuthenticationError, match="credentials are missing or invalid") as e:
            await client.followups.list()
    assert e.value.status == 401 and "not-a-real-token" not in str(e.value)
    assert sandbox.stats.requests == 1


@pytest.fixture
async def revoking_server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """An API whose first token is revoked early: the client must refresh once on the 401."""
    counts = {"token": 0, "api": 0}

    async def token(request: web.Request) -> web.Response:
        counts["token"] += 1
        return web.json_response({"access_token": f"t{counts['token']}", "expires_in": 3600})

    async def followup(request: web.Request) -> web.Response:
        counts["api"] += 1
        if request.headers.get("Authorization") != "Bearer t2":
            return web.json_response(
                {
                    "error": True,
                    "message": "Authentication credentials are missing or invalid",
                    "code": 401,
                },
                status=401,
            )
        data = {"id": "f1", "debt_id": "d1", "status": "sent", "type": "sms"}
        return web.json_response({"error": False, "message": "Success", "data": data})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/v1/followups/{id}", followup)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", counts
    await runner.cleanup()


async def test_refreshes_once_on_401(revoking_server: tuple[str, dict[str, int]]) -> None:
    root, counts = revoking_server
    c = ClientCredentials("id", "secret", token_url=f"{root}/token")
    async with GetBillClient(c, base_url=f"{root}/v1") as client:
        results = await asyncio.gather(*(client.followups.get("f1") for _ in range(10)))
    assert {f.id for f in results} == {"f1"}
    assert counts["token"] == 2, "one first fetch, one refresh however many saw the 401"


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GETBILL_TOKEN", raising=False)
    monkeypatch.delenv("GETBILL_CLIENT_ID", raising=False)
    monkeypatch.delenv("GETBILL_CLIENT_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="no credentials: pass token="):
        GetBillClient(base_url="http://127.0.0.1:1/v1")
    monkeypatch.setenv("GETBILL_CLIENT_ID", "cid")
    monkeypatch.setenv("GETBILL_CLIENT_SECRET", "csecret-value")
    client = GetBillClient(base_url="http://127.0.0.1:1/v1", allow_insecure=True)
    assert "OAuthTokenSource" in repr(client._auth) and "csecret-value" not in repr(client._auth)
    monkeypatch.setenv("GETBILL_TOKEN", "env-token-value")
    client = GetBillClient(base_url="http://127.0.0.1:1/v1")
    assert repr(client._auth) == "StaticToken([REDACTED])"


def test_https_is_required_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="base_url must use https"):
        GetBillClient("t", base_url="http://api.example.com/v1")
    GetBillClient("t", base_url="http://api.example.com/v1", allow_insecure=True)
    GetBillClient("t", base_url="http://[::1]:8080/v1")
    with pytest.raises(ConfigurationError, match="token_url must use https"):
        GetBillClient(ClientCredentials("a", "b", token_url="http://evil.example/token"))


async def test_injected_session_is_used_and_left_open(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        async with GetBillClient(sandbox.token, base_url=sandbox.base_url, session=session) as c:
            await c.followups.list()
            assert c.session is session
        assert not session.closed
    owned = GetBillClient(sandbox.token, base_url=sandbox.base_url)
    await owned.followups.list()
    assert owned.session is not None
    await owned.close()
    assert owned.session.closed
    await owned.close()  # twice is fine


async def test_unclosed_client_warns(sandbox: Sandbox) -> None:
    client = GetBillClient(sandbox.token, base_url=sandbox.base_url)
    await client.followups.list()
    session = client.session
    with pytest.warns(ResourceWarning, match="unclosed GetBillClient"):
        client.__del__()
    assert session is not None
    await session.close()
