"""Duplicates across workers and restarts: a real ``uvicorn --workers 2`` and a real Redis.

``tests/webhook_workers_app.py`` is the endpoint; each worker appends a line to a file when
its callback runs, so the test counts runs across processes. One event is sent 12 times at
once (12 connections, so both workers get copies), then again after a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import msgspec
import pytest

from getbill_async.webhooks import SIGNATURE_HEADER

from .redis_fixtures import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_workers_0123"
WORKERS = 2
COPIES = 12


def runs(record: Path, body: bytes) -> list[str]:
    """The pids of the workers whose callback ran on the event ``body``, one per run."""
    reference = msgspec.json.decode(body)["data"]["reference"]
    lines = record.read_text().splitlines() if record.exists() else []
    return [line.split()[2] for line in lines if line.startswith(f"run {reference} ")]


def ready(record: Path) -> set[str]:
    lines = record.read_text().splitlines() if record.exists() else []
    return {line.split()[1] for line in lines if line.startswith("ready ")}


@asynccontextmanager
async def uvicorn_workers(record: Path, redis_url: str, prefix: str) -> AsyncIterator[str]:
    """``uvicorn --workers 2`` serving the endpoint; yields its URL once both workers are up."""
    port = free_port()
    record.unlink(missing_ok=True)
    env = {
        **os.environ,
        "GETBILL_TEST_SECRET": SECRET,
        "GETBILL_TEST_RECORD": str(record),
        "GETBILL_TEST_REDIS": redis_url,
        "GETBILL_TEST_PREFIX": prefix,
        "GETBILL_TEST_DELAY": "0.5",
    }
    command = [
        sys.executable, "-m", "uvicorn", "tests.webhook_workers_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 30
        while len(ready(record)) < WORKERS:
            assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
            assert loop.time() < until, "uvicorn's workers did not start within 30 s"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        proc.send_signal(signal.SIGTERM)  # a graceful stop: each worker's lifespan shutdown
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def burst(url: str, body: bytes) -> tuple[list[int], set[str]]:
    """``COPIES`` deliveries of one body at once, each on its own connection."""
    headers = {SIGNATURE_HEADER: hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def deliver() -> tuple[int, str]:
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                return resp.status, resp.headers["X-Worker"]

        answers = await asyncio.gather(*(deliver() for _ in range(COPIES)))
    return [status for status, _ in answers], {worker for _, worker in answers}


def payment() -> bytes:
    reference = uuid.uuid4().hex  # a new event each time: the session's Redis is shared
    return msgspec.json.encode({"type": "payment.received", "data": {"reference": reference}})


async def bursts(url: str, record: Path) -> list[tuple[bytes, set[str], list[str]]]:
    """Bursts of new events until one reached both workers (the kernel hands a burst's
    connections to whichever worker wakes first, so a burst may land on one): for each
    event, the workers that answered it and those whose callback ran on it."""
    sent = []
    for _ in range(5):
        body = payment()
        statuses, answered_by = await burst(url, body)
        assert statuses == [204] * COPIES
        sent.append((body, answered_by, runs(record, body)))
        if len(answered_by) == WORKERS:
            return sent
    raise AssertionError("no burst of 12 connections reached both workers")


@pytest.mark.timeout(120)
async def test_a_redis_filter_runs_one_event_once_across_workers_and_restarts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    prefix = f"test:workers:{uuid.uuid4().hex[:8]}:"
    async with uvicorn_workers(record, redis_server.url, prefix) as url:
        sent = await bursts(url, record)
    # Every copy got the 204, the callback ran once per event, though both workers
    # answered copies of the last one.
    assert [len(ran) for _, _, ran in sent] == [1] * len(sent)
    async with uvicorn_workers(record, redis_server.url, prefix) as url:
        for body, _, _ in sent:
            statuses, _ = await burst(url, body)
            assert statuses == [204] * COPIES
            assert runs(record, body) == []  # the new workers remember it through Redis


@pytest.mark.timeout(120)
async def test_the_in_memory_filter_is_per_process(tmp_path: Path) -> None:
    """What the Redis filter fixes: each worker has its own memory (and a restart empties it)."""
    record = tmp_path / "record"
    async with uvicorn_workers(record, "", "") as url:
        sent = await bursts(url, record)
    for _, answered_by, ran in sent:
        assert sorted(ran) == sorted(answered_by)  # once per worker that got a copy
    assert len(sent[-1][2]) == WORKERS  # twice in all
