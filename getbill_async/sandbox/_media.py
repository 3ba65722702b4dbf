"""Optional media host: the sandbox serves the recordings and letters its followups link to.

By default seeded `audio_url`/`pdf_url` values look like S3 presigned URLs that lead nowhere.
With `Sandbox(media_host=True)` they point at the sandbox's own `/media/{folder}/{name}`,
signed like S3 query-string auth (`X-Amz-Date`, `X-Amz-Expires`, `X-Amz-Signature`): every
read of a followup presigns afresh and sets `media_urls_expire_at` to match, as the docs
describe. The host answers in chunks, 403 once the URL has expired or its signature is wrong,
404 for names it does not know. Its clock is wall time plus an offset a test can `advance`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._data import iso

__all__ = ["MediaHost", "MediaRequest"]

_S3_PREFIX = "https://s3.amazonaws.com/getbill-sandbox"
_FOLDERS = {"recordings": "audio/mpeg", "letters": "application/pdf"}
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired or the signature does not match</Message></Error>"
)
CHUNK = 16 * 1024


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """One request the media host saw: its path, its answer, whether it carried credentials."""

    path: str
    status: int
    had_authorization: bool


def media_content(folder: str, name: str) -> bytes:
    """The bytes served for a media name: deterministic, 48 to 240 KiB."""
    seed = hashlib.sha256(f"{folder}/{name}".encode()).digest()
    size = 48 * 1024 + int.from_bytes(seed[:4], "big") % (192 * 1024)
    return hashlib.shake_256(seed).digest(size)


class MediaHost:
    """Signs media URLs and serves them; `root` is set when the sandbox starts."""

    def __init__(self, seed: int, *, ttl: float = 3600.0, clock: Callable[[], float] = time.time):
        if ttl <= 0:
            raise ValueError("media_ttl must be > 0")
        self._key = hashlib.sha256(f"media-key:{seed}".encode()).digest()
        self.ttl = int(ttl)
        self.clock = clock
        self.offset = 0.0
        self.requests: deque[MediaRequest] = deque(maxlen=10_000)
        self._ours: re.Pattern[str] | None = None
        self.root = ""

    def bind(self, root: str) -> None:
        self.root = root
        prefixes = f"(?:{re.escape(_S3_PREFIX)}|{re.escape(root)}/media)"
        self._ours = re.compile(prefixes + r"/(recordings|letters)/([^/?#]+)(?:\?|$)")

    def now(self) -> float:
        return self.clock() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the host's clock on (URLs signed earlier expire as they would later)."""
        self.offset += seconds

    def _signature(self, path: str, issued: int, expires: int) -> str:
        message = f"{path}\n{issued}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, folder: str, name: str) -> tuple[str, int]:
        """A freshly signed URL and the Unix time it expires."""
        issued, path = int(self.now()), f"/media/{folder}/{name}"
        query = (
            f"X-Amz-Date={issued}&X-Amz-Expires={self.ttl}"
            f"&X-Amz-Signature={self._signature(path, issued, self.ttl)}"
        )
        return f"{self.root}{path}?{query}", issued + self.ttl

    def present(self, record: dict[str, Any]) -> dict[str, Any]:
        """`record` with its seeded media URLs presigned now (a copy; the input is shared)."""
        ours = self._ours
        if ours is None:
            return record
        changed: dict[str, Any] | None = None
        expires = 0
        for key in ("audio_url", "pdf_url"):
            value = record.get(key)
            match = ours.match(value) if isinstance(value, str) else None
            if match is None:
                continue
            if changed is None:
                changed = dict(record)
            changed[key], expires = self.url(match.group(1), match.group(2))
        if changed is None:
            return record
        changed["media_urls_expire_at"] = iso(expires)
        return changed

    async def handle(self, request: web.Request) -> web.StreamResponse:
        folder, name = request.match_info["folder"], request.match_info["name"]
        status = self._check(request, folder, name)
        self.requests.append(MediaRequest(request.path, status, "Authorization" in request.headers))
        if status != 200:
            body = _DENIED if status == 403 else b"<Error><Code>NoSuchKey</Code></Error>"
            return web.Response(status=status, body=body, content_type="application/xml")
        content = media_content(folder, name)
        response = web.StreamResponse(headers={"Content-Type": _FOLDERS[folder]})
        response.content_length = len(content)
        await response.prepare(request)
        for start in range(0, len(content), CHUNK):
            await response.write(content[start : start + CHUNK])
        await response.write_eof()
        return response

    def _check(self, request: web.Request, folder: str, name: str) -> int:
        if folder not in _FOLDERS:
            return 404
        query = request.query
        try:
            issued = int(query.get("X-Amz-Date", ""))
            expires = int(query.get("X-Amz-Expires", ""))
        except ValueError:
            return 403
        expected = self._signature(request.path, issued, expires)
        given = query.get("X-Amz-Signature", "").encode()
        if not hmac.compare_digest(expected.encode(), given):
            return 403
        if self.now() >= issued + expires:
            return 403
        return 200
