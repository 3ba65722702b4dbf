"""Media: streaming presigned audio/PDF to disk, refreshing expired URLs, no leaked secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest
from aiohttp import web

from getbill_async import (
    APIConnectionError,
    Followup,
    GetBillClient,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from getbill_async.sandbox import Sandbox

from .loopback import serve

FAR = datetime(2999, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
async def media_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(followups=300, seed=11, media_host=True, media_ttl=600) as sb:
        yield sb


@pytest.fixture
async def media_client(media_sandbox: Sandbox) -> AsyncIterator[GetBillClient]:
    async with GetBillClient(media_sandbox.token, base_url=media_sandbox.base_url) as client:
        yield client


async def first_with(client: GetBillClient, kind: str) -> Followup:
    page = await client.followups.list(type=kind, limit=100)
    return next(f for f in page.data if f.audio_url or f.pdf_url)


def expected_bytes(url: str) -> bytes:
    _, _, folder, name = urlsplit(url).path.split("/")
    return Sandbox.media_content(folder, name)


async def test_default_sandbox_keeps_s3_looking_urls(sandbox: Sandbox) -> None:
    record = sandbox.followup(sandbox.followup_ids(type="postmail")[0]) or {}
    assert record["pdf_url"].startswith("https://s3.amazonaws.com/getbill-sandbox/letters/")
    assert sandbox.media is None and sandbox.media_requests == []


async def test_audio_streams_to_disk_without_the_api_token(
    media_sandbox: Sandbox, media_client: GetBillClient, tmp_path: Path
) -> None:
    followup = await first_with(media_client, "call")
    assert followup.audio_url is not None and not followup.media_expired()
    assert followup.audio_url.startswith(media_sandbox.root_url + "/media/recordings/")
    target = tmp_path / "call.mp3"
    api_before = media_sandbox.stats.requests
    result = await media_client.followups.download_media(followup, target, chunk_size=4096)
    assert result == target
    assert target.read_bytes() == expected_bytes(followup.audio_url)
    assert len(target.read_bytes()) > 48 * 1024  # many chunks
    assert media_sandbox.stats.requests == api_before  # no refresh needed
    assert [(r.status, r.had_authorization) for r in media_sandbox.media_requests] == [(200, False)]
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


async def test_pdf_of_a_letter(media_client: GetBillClient, tmp_path: Path) -> None:
    letter = await first_with(media_client, "postmail")
    assert letter.pdf_url is not None
    path = await media_client.followups.download_media(letter, tmp_path / "l.pdf", kind="pdf")
    assert path.read_bytes() == expected_bytes(letter.pdf_url)


async def test_expired_by_the_followup_is_refreshed_with_one_get(
    media_sandbox: Sandbox, media_client: GetBillClient, tmp_path: Path
) -> None:
    followup = await first_with(media_client, "call")
    media = media_sandbox.media
    assert media is not None
    media.advance(3600)  # the URL it holds is now refused by the storage host
    stale = msgspec.structs.replace(
        followup, media_urls_expire_at=datetime.now(timezone.utc) - timedelta(seconds=1)
    )
    assert stale.media_expired()
    before = media_sandbox.stats.requests
    await media_client.followups.download_media(stale, tmp_path / "a.mp3")
    assert media_sandbox.stats.requests == before + 1  # one GET /followups/{id}
    # The old URL was never tried: the followup said it had expired.
    assert [r.status for r in media_sandbox.media_requests] == [200]


async def test_a_403_from_storage_refreshes_once(
    media_sandbox: Sandbox, media_client: GetBillClient, tmp_path: Path
) -> None:
    followup = await first_with(media_client, "call")
    media = media_sandbox.media
    assert media is not None
    media.advance(601)  # past the ttl, while the followup still claims its URL is fine
    believed = msgspec.structs.replace(followup, media_urls_expire_at=FAR)
    before = media_sandbox.stats.requests
    path = await media_client.followups.download_media(believed, tmp_path / "a.mp3")
    assert media_sandbox.stats.requests == before + 1
    assert [r.status for r in media_sandbox.media_requests] == [403, 200]
    assert followup.audio_url is not None
    assert path.read_bytes() == expected_bytes(followup.audio_url)


async def test_refused_after_refresh_is_an_error_without_the_signature(tmp_path: Path) -> None:
    refreshed: list[str] = []
    seen_auth: list[str | None] = []

    async def get_followup(request: web.Request) -> web.Response:
        refreshed.append(request.match_info["id"])
        data = {"id": "f1", "debt_id": "d1", "status": "delivered", "type": "call"}
        # scheme and host by hand: request.url breaks on aiohttp < 3.10.8 with yarl >= 1.13
        origin = f"{request.scheme}://{request.host}"
        data["audio_url"] = f"{origin}/m.mp3?X-Amz-Signature=fresh-but-bad"
        return web.json_response({"error": False, "data": data})

    async def storage(request: web.Request) -> web.Response:
        seen_auth.append(request.headers.get("Authorization"))
        return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")

    app = web.Application()
    app.router.add_get("/v1/followups/{id}", get_followup)
    app.router.add_get("/m.mp3", storage)
    async with serve(app) as root:
        stale = Followup(
            id="f1",
            debt_id="d1",
            status="delivered",
            type="call",
            audio_url=f"{root}/m.mp3?X-Amz-Expires=60&X-Amz-Signature=old-s3cr3t-sig",
            media_urls_expire_at=FAR,
        )
        async with GetBillClient("api-token-xyz", base_url=root + "/v1") as client:
            with pytest.raises(PermissionDeniedError, match="even after refreshing") as caught:
                await client.followups.download_media(stale, tmp_path / "x.mp3")
    assert refreshed == ["f1"]  # exactly one refresh
    assert seen_auth == [None, None]  # the API token never went to the storage host
    text = str(caught.value)
    assert "X-Amz-Signature=[REDACTED]" in text
    assert "s3cr3t" not in text and "fresh-but-bad" not in text
    assert "s3cr3t" not in repr(caught.value)
    assert list(tmp_path.iterdir()) == []


async def test_unknown_media_is_not_found(
    media_sandbox: Sandbox, media_client: GetBillClient, tmp_path: Path
) -> None:
    followup = await first_with(media_client, "call")
    url = f"{media_sandbox.root_url}/media/videos/x.mp4?X-Amz-Signature=s3cr3tsig"
    bad = msgspec.structs.replace(followup, audio_url=url, media_urls_expire_at=FAR)
    with pytest.raises(NotFoundError, match=r"GET .*/media/videos/x\.mp4\?X-Amz-Signature="):
        await media_client.followups.download_media(bad, tmp_path / "x")
    with pytest.raises(NotFoundError) as caught:
        await media_client.followups.download_media(bad, tmp_path / "x")
    assert "s3cr3tsig" not in str(caught.value)


async def test_a_cut_download_leaves_no_file(client: GetBillClient, tmp_path: Path) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(b"x" * 10_000)
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/m.mp3", cut)
    async with serve(app) as root:
        followup = Followup(
            id="f",
            debt_id="d",
            status="delivered",
            type="call",
            audio_url=f"{root}/m.mp3?X-Amz-Signature=topsecret",
        )
        target = tmp_path / "m.mp3"
        with pytest.raises(APIConnectionError) as caught:
            await client.followups.download_media(followup, target)
    assert "topsecret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


async def test_bad_arguments_are_refused(client: GetBillClient, tmp_path: Path) -> None:
    email = Followup(id="f", debt_id="d", status="sent", type="email")
    with pytest.raises(ValidationError, match="audio_url: followup f has no audio_url"):
        await client.followups.download_media(email, tmp_path / "x")
    with pytest.raises(ValidationError, match="kind: invalid value 'video'; allowed: audio, pdf"):
        await client.followups.download_media(email, tmp_path / "x", kind="video")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="chunk_size"):
        await client.followups.download_media(email, tmp_path / "x", chunk_size=0)
