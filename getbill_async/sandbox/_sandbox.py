"""`Sandbox`: the stand-in API served on loopback, and what tests and benchmarks ask of it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from aiohttp import web

from ._app import API_PREFIX, build_app, followup_filter
from ._data import ALL_SCOPES, STATUSES, TYPES
from ._faults import FaultDraw, FaultPlan
from ._media import MediaHost, MediaRequest, media_content
from ._ratelimit import Clock, RateLimiter
from ._state import OAuthClient, SandboxStats, State, TokenGrant, check_scopes
from ._store import Store
from ._validate import Details
from ._webhooks import Delivery, WebhookSender

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_WEBHOOK_SECRET",
    "STATIC_CLIENT",
    "Sandbox",
]

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
STATIC_CLIENT = "static"  # the OAuth client the static token belongs to
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox"


class Sandbox:
    """GetBill's external API, served by aiohttp.web on loopback from seeded data.

        async with Sandbox(followups=1_000, reads=40, window=4.0) as sb:
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {sb.token}"}
                async with http.get(f"{sb.base_url}/followups", headers=headers) as resp:
                    page = await resp.json()

    Rate limits are per OAuth client and per class (reads are GET, writes POST/PUT). `clock`
    drives windows and token expiry (monotonic seconds); tests may pass a fake one.

    `webhook_url` (or `add_webhook`): POST signed followup.created / followup.updated events
    there from a background task. `media_host=True`: seeded audio/pdf URLs point at the
    sandbox's own `/media/...`, presigned for `media_ttl` seconds of `media_clock` (wall time).
    """

    def __init__(
        self,
        *,
        followups: int = 25_000,
        seed: int = 1,
        reads: int = 1000,
        writes: int = 500,
        window: float = 3600.0,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token_lifetime: int = 3600,
        max_page_limit: int = 100,
        clock: Clock = time.monotonic,
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        media_host: bool = False,
        media_ttl: float = 3600.0,
        media_clock: Callable[[], float] = time.time,
    ) -> None:
        if latency < 0 or token_lifetime < 0 or max_page_limit < 1:
            raise ValueError("latency and token_lifetime must be >= 0, max_page_limit >= 1")
        self._store = Store(followups, seed)
        self._state = State(
            store=self._store,
            limiter=RateLimiter(reads=reads, writes=writes, window=window, clock=clock),
            faults=FaultDraw(faults) if faults is not None else None,
            latency=latency,
            token_lifetime=token_lifetime,
            max_page_limit=max_page_limit,
            clock=clock,
        )
        self._webhooks = WebhookSender(self._state.stats)
        self._state.on_event = self._webhooks.emit
        if webhook_url is not None:
            self.add_webhook(webhook_url, webhook_secret)
        self._media = MediaHost(seed, ttl=media_ttl, clock=media_clock) if media_host else None
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.token = "sbx_" + hashlib.sha256(f"static-token:{seed}".encode()).hexdigest()[:40]
        self.add_token(self.token, scopes=ALL_SCOPES, client=STATIC_CLIENT)
        self.add_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, scopes=ALL_SCOPES)

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("sandbox already started")
        self._state.stopping = False
        app = build_app(self._state)
        if self._media is not None:
            app.router.add_get("/media/{folder}/{name}", self._media.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner
        if self._media is not None:
            self._media.bind(self.root_url)
            self._store.present = self._media.present
        await self._webhooks.start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        await self._webhooks.stop()
        if runner is not None:
            self._state.stopping = True  # ends "slow" faults early
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # addresses and credentials -----------------------------------------------------------

    @property
    def root_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("sandbox not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        return self.root_url + API_PREFIX

    @property
    def token_url(self) -> str:
        return self.root_url + "/token"

    @property
    def port(self) -> int:
        return self._port

    @property
    def clients(self) -> dict[str, OAuthClient]:
        """The OAuth clients that may use POST /token, by client id (a copy)."""
        return dict(self._state.clients)

    @property
    def client_id(self) -> str:
        return DEFAULT_CLIENT_ID

    @property
    def client_secret(self) -> str:
        return DEFAULT_CLIENT_SECRET

    def add_token(
        self,
        token: str,
        *,
        scopes: Iterable[str] = ALL_SCOPES,
        client: str = STATIC_CLIENT,
        expires_in: float | None = None,
    ) -> None:
        """Accept `token` as a bearer token of OAuth client `client` (own rate windows)."""
        expires_at = None if expires_in is None else self._state.clock() + expires_in
        grant = TokenGrant(client, frozenset(check_scopes(scopes)), expires_at)
        self._state.tokens[token] = grant

    def add_client(
        self, client_id: str, client_secret: str, *, scopes: Iterable[str] = ALL_SCOPES
    ) -> None:
        self._state.clients[client_id] = OAuthClient(client_id, client_secret, check_scopes(scopes))

    def add_webhook(self, url: str, secret: str = DEFAULT_WEBHOOK_SECRET) -> None:
        """Also deliver followup events to `url`, signed with `secret`."""
        self._webhooks.add(url, secret)

    # webhooks and media ------------------------------------------------------------------

    @property
    def webhook_deliveries(self) -> list[Delivery]:
        """The webhook deliveries so far (the most recent 10,000), oldest first."""
        return list(self._webhooks.deliveries)

    async def webhooks_idle(self, timeout: float = 5.0) -> None:
        """Wait until every webhook queued so far has been delivered (or has failed)."""
        await self._webhooks.drain(timeout)

    @property
    def media(self) -> MediaHost | None:
        """The media host (`media_host=True`): `advance(seconds)` moves its clock on."""
        return self._media

    @property
    def media_requests(self) -> list[MediaRequest]:
        return [] if self._media is None else list(self._media.requests)

    @staticmethod
    def media_content(folder: str, name: str) -> bytes:
        """The bytes the media host serves for `/media/{folder}/{name}`."""
        return media_content(folder, name)

    # observation -------------------------------------------------------------------------

    @property
    def stats(self) -> SandboxStats:
        return self._state.stats

    def arrivals(self, client: str = STATIC_CLIENT, cls: str = "read") -> list[float]:
        """Clock times of the requests admitted in that client's window, oldest first."""
        if cls not in ("read", "write"):
            raise ValueError("cls must be 'read' or 'write'")
        return self._state.limiter.window(client, cls).arrivals()

    def created_per_call_id(self) -> dict[str, int]:
        """How many creates were committed per call_id (creates without call_id not counted)."""
        return dict(self._store.created_per_call_id)

    def created_followups(self, *, call_id: str | None = None) -> list[dict[str, Any]]:
        """The followups created through POST /followups, oldest first, as they are now.

        Args:
            call_id: Only those created with this ``call_id``.

        Returns:
            Copies of their JSON objects (later updates included).
        """
        store = self._store
        found = [dict(store.record(row)) for row in store.created_rows if row not in store.deleted]
        return found if call_id is None else [f for f in found if f.get("call_id") == call_id]

    def request_log(self) -> list[tuple[str, str]]:
        """The last 100,000 API requests as ``(method, path?query)``, oldest first."""
        return list(self._state.seen)

    def requests_made(self, cls: str | None = None) -> int:
        """API requests that reached the sandbox (not /token), answered or not.

        Args:
            cls: ``"read"`` (GET) or ``"write"`` (POST, PUT); None counts both.

        Returns:
            How many there were.

        Raises:
            ValueError: ``cls`` is neither.
        """
        if cls is None:
            return self._state.stats.requests
        if cls not in ("read", "write"):
            raise ValueError(f"cls: invalid value {cls!r}; allowed: 'read', 'write', None")
        return self._state.stats.by_class.get(cls, 0)

    def limits(self) -> dict[str, Any]:
        """The rate limits served per OAuth client: ``{"reads", "writes", "window"}``."""
        limiter = self._state.limiter
        return {"reads": limiter.reads, "writes": limiter.writes, "window": limiter.window_seconds}

    def answered(self, status: int) -> int:
        """How many API answers with HTTP ``status`` were sent (``answered(429)``: every 429,
        from a spent window or from a "storm429" fault)."""
        return self._state.stats.by_status.get(status, 0)

    def delivered_webhooks(self, event: str | None = None) -> list[Delivery]:
        """The webhook deliveries answered 2xx (the most recent 10,000), oldest first.

        Args:
            event: Only deliveries of this event type (``"followup.created"``, ...).

        Returns:
            The deliveries; wait for ``webhooks_idle()`` first to see every queued event.
        """
        return [
            d for d in self._webhooks.deliveries if d.ok and (event is None or d.event == event)
        ]

    # data --------------------------------------------------------------------------------

    def followup_ids(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        debt_id: str | None = None,
    ) -> list[str]:
        """Ids in exactly the order GET /followups answers them for these filters."""
        given = {"status": status, "type": type, "date_from": date_from, "date_to": date_to}
        query: dict[str, str] = {k: v for k, v in given.items() if v is not None}
        if debt_id is not None:
            query["debt_id"] = debt_id
        details: Details = {}
        flt = followup_filter(self._state, query, details)
        if details:
            raise ValueError(f"bad filter: {details}")
        rows = self._store.matching(flt)
        encode = self._store.followup_id
        return [encode(row) for row in reversed(rows)]

    def followup(self, followup_id: str) -> dict[str, Any] | None:
        """A copy of the stored JSON object of one followup, or None."""
        row = self._store.followup_row(followup_id)
        return None if row is None else dict(self._store.record(row))

    def debt_ids(self) -> list[str]:
        """Every debt id, in the order GET /debts answers them (newest first)."""
        return [self._store.debt_id(row) for row in reversed(range(self._store.debts))]

    def debt(self, debt_id: str) -> dict[str, Any] | None:
        row = self._store.debt_row(debt_id)
        return None if row is None else self._store.debt(row)

    def change_followup(self, followup_id: str, **fields: Any) -> dict[str, Any]:
        """Change a followup without HTTP (an agent's edit on the server's side); a
        followup.updated webhook goes out as for an update through the API.

        Fields the docs do not list are stored and served too, like a field the API adds.

        Args:
            followup_id: The followup to change.
            **fields: The new values (JSON values; datetimes as ISO 8601 text).

        Returns:
            A copy of the followup as it is now.

        Raises:
            ValueError: An unknown id, a change of ``id`` or ``debt_id``, or an unknown
                ``status`` or ``type``.
        """
        row = self._store.followup_row(followup_id)
        if row is None:
            raise ValueError(f"unknown followup_id {followup_id!r}")
        fixed = sorted({"id", "debt_id"} & fields.keys())
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot change")
        for name, allowed in (("status", STATUSES), ("type", TYPES)):
            if name in fields and fields[name] not in allowed:
                raise ValueError(f"{name}: invalid value {fields[name]!r}; allowed: {allowed}")
        record = self._store.update(row, fields)
        self._state.emit("followup.updated", record, fields)
        return dict(record)

    def delete_followup(self, followup_id: str) -> None:
        """Delete a followup on the server's side (the API documents no DELETE): from now on
        no list, filter or lookup shows it.

        Raises:
            ValueError: An unknown id.
        """
        row = self._store.followup_row(followup_id)
        if row is None:
            raise ValueError(f"unknown followup_id {followup_id!r}")
        self._store.delete(row)

    def insert_followups(self, n: int, debt_id: str | None = None) -> list[str]:
        """Add `n` followups without HTTP (new data arriving); they come first in list order.

        Returns their ids, newest first.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        debt_row = None
        if debt_id is not None:
            debt_row = self._store.debt_row(debt_id)
            if debt_row is None:
                raise ValueError(f"unknown debt_id {debt_id!r}")
        return self._store.insert(n, debt_row)
