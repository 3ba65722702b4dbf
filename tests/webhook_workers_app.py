"""A webhook endpoint for ``uvicorn tests.webhook_workers_app:app --workers N``.

Set by the environment (the test that starts uvicorn sets it):
``GETBILL_TEST_SECRET``; ``GETBILL_TEST_RECORD``, a file each worker appends to (``ready
<pid>`` when it starts, ``run <reference> <pid>`` each time the callback runs on a payment);
``GETBILL_TEST_REDIS``,
a Redis URL for a shared duplicate filter (empty: the in-memory one), and
``GETBILL_TEST_PREFIX``, its key prefix; ``GETBILL_TEST_DELAY``, seconds the callback takes.
Each answer carries ``X-Worker: <pid>``, so a test sees which worker answered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import MutableMapping
from typing import Any

from getbill_async.webhooks import DuplicateFilter, WebhookEvent, WebhookReceiver

Message = MutableMapping[str, Any]

RECORD = os.environ["GETBILL_TEST_RECORD"]
DELAY = float(os.environ.get("GETBILL_TEST_DELAY", "0.5"))
PID = str(os.getpid())


def record(line: str) -> None:
    # One short write with O_APPEND: lines from both workers never interleave.
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line} {PID}\n".encode())
    finally:
        os.close(fd)


async def on_event(event: WebhookEvent) -> None:
    data = getattr(event, "data", None)
    record(f"run {data['reference'] if isinstance(data, dict) else '-'}")
    await asyncio.sleep(DELAY)


def make_filter() -> DuplicateFilter:
    url = os.environ.get("GETBILL_TEST_REDIS", "")
    if not url:
        return DuplicateFilter()
    return DuplicateFilter(redis=url, prefix=os.environ["GETBILL_TEST_PREFIX"])


receiver = WebhookReceiver(
    os.environ["GETBILL_TEST_SECRET"], on_event, acknowledge="after", duplicates=make_filter()
)


async def app(scope: Message, receive: Any, send: Any) -> None:
    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-worker", PID.encode())]
        if message["type"] == "lifespan.startup.complete":
            record("ready")
        await send(message)

    await receiver.asgi(scope, receive, tagged)
