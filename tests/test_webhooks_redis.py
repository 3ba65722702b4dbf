"""The duplicate filter in Redis, in one process: two receivers stand for two workers.

Each receiver is served on loopback and shares one Redis key prefix with the other, as the
workers of one endpoint do. The whole thing under ``uvicorn --workers 2`` is in
``test_webhooks_workers.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from getbill_async.webhooks import (
    SIGNATURE_HEADER,
    DuplicateFilter,
    WebhookEvent,
    WebhookReceiver,
)

from .loopback import serve
from .redis_fixtures import RedisServer, free_port

SECRET = "whsec_redis_0123"


def payment() -> bytes:
    reference = uuid.uuid4().hex
    return msgspec.json.encode({"type": "payment.received", "data": {"reference": reference}})


def signed(body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


class Ledger:
    """Counts runs; fails while told to; holds each run at a gate."""

    def __init__(self, failures: int = 0) -> None:
        self.runs = 0
        self.failures = failures
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, event: WebhookEvent) -> None:
        self.runs += 1
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the ledger's database is down")


@asynccontextmanager
async def workers(
    url: str, prefix: str, ledger: Ledger, count: int = 2, **options: Any
) -> AsyncIterator[list[str]]:
    """``count`` receivers on one Redis prefix, each on loopback; yields their URLs."""
    async with AsyncExitStack() as stack:
        urls = []
        for _ in range(count):
            duplicates = DuplicateFilter(redis=url, prefix=prefix)
            receiver = WebhookReceiver(
                SECRET, ledger, acknowledge="after", duplicates=duplicates, **options
            )
            app = web.Application()
            app.router.add_post("/hooks", receiver.handler)
            app.on_cleanup.append(receiver.on_cleanup)
            urls.append(await stack.enter_async_context(serve(app)) + "/hooks")
        yield urls


async def deliver(url: str, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=signed(body)) as resp:
            answer = await resp.read()
            message = msgspec.json.decode(answer)["message"] if answer else ""
            return resp.status, message


def prefix() -> str:
    return f"test:hooks:{uuid.uuid4().hex[:8]}:"


async def test_a_copy_at_another_worker_waits_for_the_first_outcome(
    redis_server: RedisServer,
) -> None:
    ledger, body = Ledger(), payment()
    ledger.gate.clear()
    async with workers(redis_server.url, prefix(), ledger) as (one, two):
        first = asyncio.ensure_future(deliver(one, body))
        while ledger.runs == 0:
            await asyncio.sleep(0.01)
        copies = [asyncio.ensure_future(deliver(url, body)) for url in (one, two, two)]
        await asyncio.sleep(0.2)
        assert not any(copy.done() for copy in copies)  # waiting, not answered 5xx
        ledger.gate.set()
        answers = await asyncio.gather(first, *copies)
    assert [status for status, _ in answers] == [204, 204, 204, 204]
    assert ledger.runs == 1


async def test_a_failure_lets_go_and_the_redelivery_runs_at_another_worker(
    redis_server: RedisServer,
) -> None:
    ledger, body = Ledger(failures=1), payment()
    ledger.gate.clear()
    async with workers(redis_server.url, prefix(), ledger) as (one, two):
        first = asyncio.ensure_future(deliver(one, body))
        while ledger.runs == 0:
            await asyncio.sleep(0.01)
        copy = asyncio.ensure_future(deliver(two, body))
        await asyncio.sleep(0.1)
        ledger.gate.set()
        assert await first == (500, "callback failed")
        assert await copy == (503, "the same event is being handled, send again later")
        assert await deliver(two, body) == (204, "")  # the sender's retry
        assert await deliver(one, body) == (204, "")  # and a late copy of it
    assert ledger.runs == 2


async def test_the_claim_of_a_worker_that_died_expires(redis_server: RedisServer) -> None:
    ledger, body, keys = Ledger(), payment(), prefix()
    key = keys + hashlib.sha256(body).hexdigest()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        # What a worker killed mid-callback leaves: its claim, with a lease.
        await client.set(key, b"running:dead", px=1500)
        async with workers(redis_server.url, keys, ledger, deadline=0.3) as (one, _):
            status, message = await deliver(one, body)
            assert (status, ledger.runs) == (503, 0)
            assert message == "the same event is being handled, send again later"
            for _ in range(100):  # until the lease runs out
                if not await client.exists(key):
                    break
                await asyncio.sleep(0.05)
            assert await deliver(one, body) == (204, "")
        assert await client.get(key) == b"done"
        assert 0 < await client.pttl(key) <= 86_400_000
    finally:
        await client.aclose()
    assert ledger.runs == 1


async def test_an_unreachable_redis_is_a_503_never_a_second_run() -> None:
    ledger = Ledger()
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    async with workers(nowhere, prefix(), ledger, count=1) as (one,):
        status, message = await deliver(one, payment())
    assert (status, message) == (503, "duplicate filter unavailable, send again later")
    assert ledger.runs == 0


async def test_acknowledge_before_marks_the_event_before_it_answers(
    redis_server: RedisServer,
) -> None:
    ledger, body, keys = Ledger(), payment(), prefix()
    duplicates = DuplicateFilter(redis=redis_server.url, prefix=keys, ttl=60)
    receiver = WebhookReceiver(SECRET, ledger, duplicates=duplicates)
    app = web.Application()
    app.router.add_post("/hooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)
    async with serve(app) as root:
        assert [await deliver(root + "/hooks", body) for _ in range(3)] == [(204, "")] * 3
        assert await duplicates.seen(DuplicateFilter.digest(body))
    assert ledger.runs == 1 and receiver.repeated == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_entries": 10}, ValueError, "max_entries is an option of the in-memory"),
        ({"clock": lambda: 0.0}, ValueError, "clock is an option of the in-memory"),
        ({"prefix": ""}, ValueError, "prefix must be a non-empty str"),
        ({"timeout": 0}, ValueError, r"timeout must be in \(0, 60\] seconds"),
        ({"redis": "http://127.0.0.1/"}, ValueError, "redis is not a Redis URL"),
        ({"redis": 6379}, TypeError, "redis must be a Redis URL"),
    ],
)
def test_redis_filter_options_are_checked(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        DuplicateFilter(**{"redis": "redis://127.0.0.1:6379/0", **options})


def test_the_filter_never_shows_the_redis_password() -> None:
    duplicates = DuplicateFilter(redis="redis://user:s3cr3t-pw@127.0.0.1:6390/2")
    assert repr(duplicates) == (
        "<DuplicateFilter redis=127.0.0.1:6390/2 prefix='getbill:webhooks:' ttl=86400.0>"
    )
    with pytest.raises(TypeError, match="await duplicates.seen"):
        len(duplicates)


BLOCKER = """
import sys

class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "redis":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _Blocker())
"""

PROBE = """
import json
from getbill_async import MissingExtraError
from getbill_async.webhooks import DuplicateFilter

out = {"memory": repr(DuplicateFilter(ttl=5))}
try:
    DuplicateFilter(redis="redis://127.0.0.1:6379/0")
except MissingExtraError as exc:
    out["redis"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.timeout(60)
def test_without_redis_py_the_error_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "memory": "<DuplicateFilter in memory ttl=5 max_entries=100000>",
        "redis": "DuplicateFilter(redis=...) needs redis, which is not installed: "
        "pip install 'getbill-async[redis]'",
    }
