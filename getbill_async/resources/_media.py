"""Streaming a followup's presigned media (call audio, letter PDF) to disk.

The URLs point at a storage host, not at the API: the request carries none of the API's
headers (no ``Authorization``), the URL is used byte for byte (re-encoding it would break its
signature), and every message shows it with its signature replaced. A file appears at its
path complete or not at all: the body goes to a temporary name beside it, renamed at the end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import aiohttp
from yarl import URL

from .._constants import LOGGER_NAME
from .._redact import SignedURL, redact, redact_url
from ..errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    NotFoundError,
    PermissionDeniedError,
)
from ..models import Followup
from ..support import check_int, fail

__all__ = ["MediaKind", "download_media"]

log = logging.getLogger(LOGGER_NAME)
MediaKind = Literal["audio", "pdf"]
_KINDS: tuple[str, ...] = ("audio", "pdf")


class _Refused(Exception):
    """Internal: the storage host answered 403 (an expired or invalid signature)."""


def _url_of(followup: Followup, kind: str) -> SignedURL:
    url = followup.audio_url if kind == "audio" else followup.pdf_url
    name = "audio_url" if kind == "audio" else "pdf_url"
    if not url:
        raise fail(name, f"followup {followup.id} has no {name}")
    return SignedURL(url)


async def download_media(
    get: Callable[[str], Awaitable[Followup]],
    session: aiohttp.ClientSession,
    followup: Followup,
    path: str | os.PathLike[str],
    *,
    kind: str,
    chunk_size: int,
    timeout: float,
) -> Path:
    """Stream ``followup``'s media to ``path``; ``get`` refreshes the followup at most once."""
    if kind not in _KINDS:
        raise fail("kind", f"invalid value {kind!r}", _KINDS)
    check_int("chunk_size", chunk_size)
    target = Path(path)
    refreshed = False
    if followup.media_expired():
        log.debug("media URLs of followup %s expired: refreshing it", followup.id)
        followup, refreshed = await get(followup.id), True
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    while True:
        url = _url_of(followup, kind)
        try:
            await _fetch(session, url, target, chunk_size, client_timeout)
            return target
        except _Refused:
            if refreshed:
                raise PermissionDeniedError(
                    "the storage host refused the media URL even after refreshing the followup",
                    status=403,
                    method="GET",
                    path=redact_url(url),
                ) from None
            log.debug("storage refused the media of followup %s (403): refreshing", followup.id)
            followup, refreshed = await get(followup.id), True


async def _fetch(
    session: aiohttp.ClientSession,
    url: SignedURL,
    target: Path,
    chunk_size: int,
    timeout: aiohttp.ClientTimeout,
) -> None:
    shown = redact_url(url)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    try:
        status = await _stream(session, url, temp, chunk_size, timeout)
        if status == 403:
            raise _Refused
        if status != 200:
            error = NotFoundError if status == 404 else APIError
            message = "the storage host refused the media download"
            raise error(message, status=status, method="GET", path=shown)
        os.replace(temp, target)
    except asyncio.TimeoutError:
        raise APITimeoutError(f"GET {shown}: no answer in time") from None
    except aiohttp.ClientError as exc:
        text = redact(str(exc) or type(exc).__name__)
        raise APIConnectionError(f"GET {shown}: {text}") from None
    finally:
        # Gone already after a successful rename; otherwise never leave a partial file.
        temp.unlink(missing_ok=True)


async def _stream(
    session: aiohttp.ClientSession,
    url: SignedURL,
    temp: Path,
    chunk_size: int,
    timeout: aiohttp.ClientTimeout,
) -> int:
    """GET ``url`` into ``temp`` when the answer is a 200; the status either way."""
    # No headers of the client's: the API's credentials stay with the API. The response
    # (its repr shows the URL) lives only in this frame, never in one an error passes.
    async with session.get(URL(str(url), encoded=True), timeout=timeout) as resp:
        if resp.status == 200:
            with open(temp, "wb") as out:
                async for chunk in resp.content.iter_chunked(chunk_size):
                    out.write(chunk)
        return resp.status
