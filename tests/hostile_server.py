"""A hostile GetBill API on loopback: it misbehaves as a test's script says, and keeps count.

The server holds a fixed list of followups (``GET /followups``), the followups that creates
made (``POST /followups``, listed by ``GET /followups/debt/{debt_id}``) and a token endpoint
(``POST /token``). A ``Script`` says how each request is answered, keyed by what the request
asks and by how many times it was asked (page 3, second try), never by arrival order: the same
script gives the same answers whatever the client's concurrency, so Hypothesis can replay and
shrink an example.

What the server counts is what the invariants are checked against: requests per walk, POSTs per
``call_id`` after the create was committed, tokens used that came in an answer too large to
accept, and every secret it was sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

from aiohttp import web

TOKEN = "HOSTILETOKEN4c1e9b7a"
CLIENT_ID = "hostile-client"
CLIENT_SECRET = "HOSTILESECRET8d2f6a03"
ISSUED = "HOSTILEISSUED{n}x5e7"  # the n-th access token the token endpoint hands out
SIGNATURE = "HOSTILESIG93b1f0c7"  # a presigned URL's signature, in an item's audio_url
SIGNED_URL = f"https://s3.example/rec.mp3?X-Amz-Expires=60&X-Amz-Signature={SIGNATURE}"
LIMIT = 10  # items per page, as the walks ask
CAP = 32 * 1024  # the client's max_response_bytes
WINDOW = 0.2  # the window of the client's RateLimit, and the honest X-RateLimit-Window

Body = Literal[
    "honest", "empty", "html", "truncated", "cut", "oversized", "garbage", "echo", "plain"
]
# How a 2xx page lies: its echo, its items, its counts.
Lie = Literal[
    "none",
    "wrong_echo",
    "empty",
    "hole",
    "repeat",
    "huge_pages",
    "negative_total",
    "zero_pages",
    "ignore_page",
    "dup_item",
    "signed_bad",
]
TokenKind = Literal["honest", "crlf", "unicode", "blank", "expires_zero", "expires_negative"]


@dataclass(frozen=True)
class Fault:
    """One answer's misbehaviour. ``rate``: ``X-RateLimit-*`` / ``Retry-After`` headers to send
    instead of the honest ones (a value ``+x`` is "now + x" in Unix seconds); ``retry_after``:
    ``details.retry_after`` of an error envelope (absent when None); ``commit``: a create is
    made before the server answers this way; ``echo``: the message repeats the secrets the
    request carried; ``wrong_echo``: the page number a ``wrong_echo`` lie says; ``delay``:
    seconds the server waits before it answers (a create is made before)."""

    status: int = 200
    body: Body = "honest"
    lie: Lie = "none"
    rate: tuple[tuple[str, str], ...] = ()
    retry_after: Any = None
    commit: bool = False
    echo: bool = False
    wrong_echo: int = 1
    token: TokenKind = "honest"
    delay: float = 0.0


HONEST = Fault()


@dataclass
class Script:
    """How the server answers: per (page, try), per (create slot, try), per token try, and
    one lie a page tells on every try (``persistent``)."""

    items: int = 0
    pages: dict[tuple[int, int], Fault] = field(default_factory=dict)
    persistent: dict[int, Fault] = field(default_factory=dict)
    creates: dict[tuple[int, int], Fault] = field(default_factory=dict)
    lookups: dict[int, Fault] = field(default_factory=dict)
    tokens: dict[int, Fault] = field(default_factory=dict)

    def followups(self) -> list[dict[str, Any]]:
        return [_followup(f"fu{i:04d}", f"debt{i % 7}", f"seed{i}") for i in range(self.items)]

    def real_pages(self) -> int:
        return -(-self.items // LIMIT)


def _followup(fid: str, debt_id: str, call_id: str | None) -> dict[str, Any]:
    # The id first: an export reads it off the item's leading bytes.
    return {
        "id": fid,
        "debt_id": debt_id,
        "status": "delivered",
        "type": "call",
        "call_id": call_id,
        "call_date": "2024-01-22T10:30:00+00:00",
    }


class HostileServer:
    """The app and its counters. ``phase`` names the operation running (each walk's tries
    are counted afresh); ``honest`` turns every misbehaviour off."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.store = script.followups()
        self.phase = ""
        self.honest = False
        self.request_cap = 1000
        self.tries: Counter[tuple[str, ...]] = Counter()
        self.list_requests: Counter[str] = Counter()
        self.posts: Counter[str] = Counter()
        self.committed: dict[str, dict[str, Any]] = {}
        self.posts_after_commit: Counter[str] = Counter()
        self.issued: list[str] = []
        self.oversized_tokens: set[str] = set()
        self.oversized_tokens_used: set[str] = set()
        self.app = web.Application()
        self.app.router.add_get("/v1/followups", self._list)
        self.app.router.add_get("/v1/followups/debt/{debt_id}", self._lookup)
        self.app.router.add_post("/v1/followups", self._create)
        self.app.router.add_post("/token", self._token)

    def secrets(self) -> tuple[str, ...]:
        """Every secret in play: the static token, the client secret, each token issued."""
        return (TOKEN, CLIENT_SECRET, SIGNATURE, *self.issued)

    def _try(self, *key: str) -> int:
        self.tries[key] += 1
        return self.tries[key]

    def _fault(self, table: Mapping[Any, Fault], key: Any) -> Fault:
        return HONEST if self.honest else table.get(key, HONEST)

    # -- the API ---------------------------------------------------------------------------

    def _bearer(self, request: web.Request) -> str | None:
        """The token the request carries, if the server gave it out; None answers 401."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if token in self.oversized_tokens:
            self.oversized_tokens_used.add(token)
        if token == TOKEN or token in self.issued:
            return token
        return None

    async def _list(self, request: web.Request) -> web.StreamResponse:
        self.list_requests[self.phase] += 1
        if self.list_requests[self.phase] > self.request_cap:
            # Past any bound a walk may take: the invariant has failed already; end the walk.
            return web.json_response({"error": True, "message": "stop", "code": 404}, status=404)
        bearer = self._bearer(request)
        if bearer is None:
            return self._refused(request)
        number = _int(request.query.get("page", "1"))
        attempt = self._try(self.phase, "page", str(number))
        fault = self._fault(self.script.pages, (number, attempt))
        if fault is HONEST and not self.honest:
            fault = self._persistent(number)
        return await self._answer(request, fault, self._page(number, fault), bearer)

    def _persistent(self, number: int) -> Fault:
        """The lie this page tells on every try; a server that ignores ``page`` does so from
        the first page it ignores on."""
        for first, fault in self.script.persistent.items():
            if first == number or (fault.lie == "ignore_page" and number > first):
                return fault
        return HONEST

    def _page(self, number: int, fault: Fault) -> dict[str, Any]:
        store, lie = self.store, fault.lie
        asked = 1 if lie == "ignore_page" else number
        if lie == "repeat":
            asked = max(1, number - 1)
        data = store[(asked - 1) * LIMIT : asked * LIMIT] if asked >= 1 else []
        pages = -(-len(store) // LIMIT)
        echo, total = number, len(store)
        if lie == "empty":
            data = []
        elif lie == "hole":
            data = data[: len(data) // 2]
        elif lie == "wrong_echo":
            echo = fault.wrong_echo
        elif lie == "huge_pages":
            pages = 10**9
        elif lie == "negative_total":
            total = -5
        elif lie == "zero_pages":
            pages = 0
        elif lie == "dup_item" and len(data) > 1:
            data = [*data[:-1], data[0]]
        elif lie == "signed_bad" and data:
            # A signed URL in one item and a wrongly typed field in another.
            data = [{**data[0], "audio_url": SIGNED_URL}, *data[1:]]
            data[-1] = {**data[-1], "duration_ms": "180000"}
        elif lie == "ignore_page":
            echo = number if fault.wrong_echo == 1 else 1
            pages = 10**9
        pagination = {"total": total, "page": echo, "limit": LIMIT, "pages": pages}
        return {"error": False, "data": data, "pagination": pagination}

    async def _lookup(self, request: web.Request) -> web.StreamResponse:
        bearer = self._bearer(request)
        if bearer is None:
            return self._refused(request)
        debt_id = request.match_info["debt_id"]
        number = _int(request.query.get("page", "1"))
        mine = [f for f in self.committed.values() if f["debt_id"] == debt_id]
        attempt = self._try(self.phase, "lookup", debt_id)
        fault = self._fault(self.script.lookups, attempt)
        pages = -(-len(mine) // LIMIT)
        pagination = {"total": len(mine), "page": number, "limit": LIMIT, "pages": pages}
        honest = {
            "error": False,
            "data": mine[(number - 1) * LIMIT : number * LIMIT],
            "pagination": pagination,
        }
        return await self._answer(request, fault, honest, bearer)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        bearer = self._bearer(request)
        if bearer is None:
            return self._refused(request)
        fields = json.loads(await request.read())
        call_id = str(fields.get("call_id"))
        self.posts[call_id] += 1
        if call_id in self.committed:
            self.posts_after_commit[call_id] += 1
        slot = _int(call_id.removeprefix("call"))
        fault = self._fault(self.script.creates, (slot, self._try("create", call_id)))
        if fault is HONEST or fault.commit or 200 <= fault.status < 300:
            made = _followup(f"made-{call_id}-{self.posts[call_id]}", fields["debt_id"], call_id)
            self.committed.setdefault(call_id, made)
        honest = {
            "error": False,
            "message": "Followup created",
            "data": self.committed.get(call_id),
        }
        if fault is HONEST:
            return await self._answer(request, Fault(status=201), honest, bearer)
        return await self._answer(request, fault, honest, bearer)

    def _refused(self, request: web.Request) -> web.Response:
        body = {"error": True, "message": "Authentication credentials are missing or invalid"}
        return web.json_response({**body, "code": 401}, status=401, headers=_rate_headers(()))

    # -- the token endpoint ----------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = parse_qs((await request.read()).decode())
        secret = form.get("client_secret", [""])[0]
        fault = self._fault(self.script.tokens, self._try("token"))
        if secret != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = ISSUED.format(n=len(self.issued) + 1)
        if fault.token == "crlf":
            token += "\r\nX-Injected: 1"
        elif fault.token == "unicode":
            token += "\u00e9\u2603"
        elif fault.token == "blank":
            token = ""
        if token:
            self.issued.append(token)
        expires = {"expires_zero": 0, "expires_negative": -60}.get(fault.token, 3600)
        honest = {"access_token": token, "token_type": "Bearer", "expires_in": expires}
        if fault.body == "oversized" and 200 <= fault.status < 300:
            self.oversized_tokens.add(token)
        return await self._answer(request, fault, honest, secret, oauth=True)

    # -- answers ---------------------------------------------------------------------------

    async def _answer(
        self,
        request: web.Request,
        fault: Fault,
        honest: dict[str, Any],
        secret: str,
        *,
        oauth: bool = False,
    ) -> web.StreamResponse:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        status = fault.status
        headers = _rate_headers(fault.rate)
        if 300 <= status < 400:
            where = f"https://elsewhere.example/login/{secret}" if fault.echo else "/elsewhere"
            headers["Location"] = where
        if 200 <= status < 300:
            payload: Any = honest
        elif oauth:
            said = f"invalid_client: secret {secret} unknown" if fault.echo else "server_error"
            payload = {"error": said, "error_description": said}
        else:
            payload = _envelope(status, fault, secret)
        body, content_type = _render(fault, payload, secret)
        if status in (204, 304):
            body = b""
        return _respond(request, status, headers, content_type, body, fault.body == "cut")


def _envelope(status: int, fault: Fault, secret: str) -> dict[str, Any]:
    message = f"Token {secret} is revoked" if fault.echo else f"HTTP {status}"
    details: dict[str, Any] = {}
    if fault.retry_after is not None:
        details["retry_after"] = fault.retry_after
    if fault.echo:
        details["authorization"] = [f"Bearer {secret}"]
    envelope: dict[str, Any] = {"error": True, "message": message, "code": status}
    if details:
        envelope["details"] = details
    return envelope


def _render(fault: Fault, payload: Any, secret: str) -> tuple[bytes, str]:
    honest = json.dumps(payload).encode()
    kind = fault.body
    if kind in ("honest", "cut"):
        return honest, "application/json"
    if kind == "empty":
        return b"", "application/json"
    if kind == "html":
        said = f" for {secret}" if fault.echo else ""
        return f"<html><body>Bad gateway{said}</body></html>".encode(), "text/html"
    if kind == "plain":
        return honest, "text/plain"
    if kind == "truncated":
        return honest[: len(honest) // 2], "application/json"
    if kind == "garbage":
        return b'{"error": false, "data": {"id": 5}, "pagination": "x"', "application/json"
    if kind == "echo":
        return json.dumps({"error": True, "message": f"bad token {secret}"}).encode(), (
            "application/json"
        )
    assert kind == "oversized"
    return _oversized(payload), "application/json"


def _oversized(payload: Any) -> bytes:
    """Valid JSON over the client's cap; an item in it says it came from such an answer."""
    pad = " " * (CAP + 1024)
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        item = _followup("OVERSIZE-page", "debt0", "oversize")
        payload = {**payload, "data": [item, *payload["data"]]}
    elif isinstance(payload, dict) and isinstance(payload.get("data"), dict):
        payload = {**payload, "data": _followup("OVERSIZE-create", "debt0", "oversize")}
    text = json.dumps(payload)
    return (text[:-1] + pad + text[-1:]).encode()


def _respond(
    request: web.Request,
    status: int,
    headers: dict[str, str],
    content_type: str,
    body: bytes,
    cut: bool,
) -> web.StreamResponse:
    if content_type and body:
        headers["Content-Type"] = content_type
    if not cut or not body:
        return web.Response(status=status, body=body or None, headers=headers)
    return _Cut(status, headers, body)


class _Cut(web.StreamResponse):
    """An answer whose connection closes halfway through the body its length announced."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status=status, headers=headers)
        self.content_length = len(body)
        self._whole = body

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        await self.write(self._whole[: len(self._whole) // 2])
        if request.transport is not None:
            request.transport.close()
        return writer


def _rate_headers(overrides: tuple[tuple[str, str], ...]) -> dict[str, str]:
    now = time.time()
    headers = {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "900",
        "X-RateLimit-Reset": str(int(now) + 1),
        "X-RateLimit-Window": str(WINDOW),
    }
    for name, value in overrides:
        if value.startswith("+"):
            value = repr(now + float(value[1:]))
        headers[name] = value
    return headers


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1
