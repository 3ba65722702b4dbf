"""Webhook delivery: signed POSTs of followup events to the configured endpoints.

From the docs: GetBill POSTs `{"type": ..., "data": {...}, "changes": {...}?}` with header
`X-GetBill-Signature`, the hex HMAC-SHA256 of the raw body under the endpoint's secret, and
expects a 2xx within 10 seconds. Where the docs are silent: events go out in commit order, one
at a time per sandbox, from a background task (an API answer never waits for a delivery); each
is tried once (a failure is counted, not retried); `changes` is sent for updates only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from ._state import SandboxStats

__all__ = ["Delivery", "WebhookEndpoint", "WebhookSender", "sign"]

log = logging.getLogger("getbill_async.sandbox")
SIGNATURE_HEADER = "X-GetBill-Signature"
DELIVERY_TIMEOUT = 10.0  # the docs' deadline for a 2xx


def sign(body: bytes, secret: str) -> str:
    """The documented signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery attempt: the event type, where it went, the status (None: no answer)."""

    event: str
    url: str
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Queues events as they are committed and POSTs them from one background task."""

    def __init__(self, stats: SandboxStats) -> None:
        self.endpoints: list[WebhookEndpoint] = []
        self.deliveries: deque[Delivery] = deque(maxlen=10_000)  # the most recent
        self._stats = stats
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def add(self, url: str, secret: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s), got {url!r}")
        if not secret:
            raise ValueError("webhook secret must not be empty")
        self.endpoints.append(WebhookEndpoint(url, secret))

    def emit(self, event: str, data: dict[str, Any], changes: dict[str, Any] | None) -> None:
        """The State hook: called synchronously in the handler that committed the change."""
        if not self.endpoints or self._queue is None:
            return
        payload: dict[str, Any] = {"type": event, "data": data}
        if changes is not None:
            payload["changes"] = changes
        # Encoded now, so a later change to the record cannot alter what this event says.
        self._queue.put_nowait((event, msgspec.json.encode(payload)))

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(DELIVERY_TIMEOUT))
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has been delivered (or has failed)."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), timeout)

    async def stop(self, grace: float = 2.0) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                await self.drain(grace)
            except asyncio.TimeoutError:
                log.warning("sandbox stopping with undelivered webhooks")
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        self._queue = None
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run(self) -> None:
        assert self._queue is not None  # set by start() before the task exists
        queue = self._queue
        while True:
            event, body = await queue.get()
            try:
                for endpoint in list(self.endpoints):
                    await self._deliver(endpoint, event, body)
            finally:
                queue.task_done()

    async def _deliver(self, endpoint: WebhookEndpoint, event: str, body: bytes) -> None:
        assert self._session is not None  # set by start()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, endpoint.secret),
        }
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(endpoint.url, data=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = type(exc).__name__
        delivery = Delivery(event, endpoint.url, status, error)
        self.deliveries.append(delivery)
        if delivery.ok:
            self._stats.webhooks_delivered += 1
        else:
            self._stats.webhooks_failed += 1
            log.info("webhook %s to %s failed: %s", event, endpoint.url, status or error)
