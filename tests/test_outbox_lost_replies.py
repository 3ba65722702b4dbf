"""A Redis reply lost on the way back, for real: a TCP proxy on loopback between the store and
a real redis-server lets a script run on the server and swallows its answer, so the client
times out. A lost claim leaves nothing in flight that no one will send (nor holds a keyless
create that was never sent); a create retried after a lost answer is enqueued once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from getbill_async.outbox import OutboxStoreError
from getbill_async.outbox import _redis_lua as lua
from getbill_async.outbox._redis_store import RETRIES, RedisStore
from tests.redis_fixtures import RedisServer

pytestmark = pytest.mark.timeout(30)
TIMEOUT = 0.3  # the store's socket timeout: how long it waits for a reply


class LossyProxy:
    """Forwards bytes both ways between its clients and a Redis; once armed with a marker,
    the replies to the next ``times`` requests holding it are swallowed (the server ran the
    request; the client never hears back, and times out)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = ""
        self.swallowed = 0
        self._marker = b""
        self._times = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, marker: bytes, times: int = 1) -> None:
        self._marker, self._times = marker, times

    async def __aenter__(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        lost = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self._times and self._marker in data:
                    self._times -= 1
                    lost.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if lost.is_set():
                    self.swallowed += 1
                    continue  # this connection answers nothing more: the client gives up
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(upstream(), downstream())
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            self._tasks.discard(task)


def sha(script: str) -> bytes:
    return hashlib.sha1(script.encode()).hexdigest().encode()


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[LossyProxy]:
    # The scripts are loaded first, so an armed request is the script itself, run on the
    # server, and not a first try that Redis answers with "no such script".
    direct = Redis.from_url(redis_server.url)
    for script in (lua.CLAIM, lua.ENQUEUE_CREATE):
        await direct.script_load(script)
    await direct.aclose()
    async with LossyProxy(redis_server.port) as made:
        yield made


@pytest.fixture
async def store(proxy: LossyProxy) -> AsyncIterator[RedisStore]:
    made = RedisStore(proxy.url, name=f"lost-{uuid.uuid4().hex[:8]}", timeout=TIMEOUT)
    await made.open()
    yield made
    await made.close()


async def test_a_lost_claim_answer_is_heard_on_retry(proxy: LossyProxy, store: RedisStore) -> None:
    await store.enqueue_create(None, "debt-1", "{}", time.time(), 0)
    await store.enqueue_create("k-1", "debt-1", "{}", time.time(), 0)
    proxy.arm(sha(lua.CLAIM))
    taken = await store.claim("a", 10, 30.0, time.time())
    assert proxy.swallowed == 1  # the claim ran on the server, and its answer was lost
    assert [(entry.key, entry.check) for entry in taken] == [(None, False), ("k-1", False)]
    assert await store.claim("a", 10, 30.0, time.time()) == []


async def test_a_claim_never_heard_of_gives_its_entries_back_unsent(
    proxy: LossyProxy, store: RedisStore
) -> None:
    await store.enqueue_create(None, "debt-1", "{}", time.time(), 0)
    await store.enqueue_create("k-1", "debt-1", "{}", time.time(), 0)
    proxy.arm(sha(lua.CLAIM), times=len(RETRIES) + 1)
    with pytest.raises(OutboxStoreError):
        await store.claim("a", 10, 1.0, time.time())
    assert (await store.counts()).in_flight == 2  # taken, and the drainer does not know it
    proxy.arm(b"", 0)  # Redis answers again
    await asyncio.sleep(1.2)  # the lease has ended too: still, nothing was sent
    taken = await store.claim("a", 10, 30.0, time.time())
    assert sorted((entry.key or "", entry.check) for entry in taken) == [
        ("", False),
        ("k-1", False),
    ]
    counts = await store.counts()
    assert (counts.held, counts.in_flight, counts.pending) == (0, 2, 0)


async def test_a_create_whose_answer_was_lost_is_enqueued_once(
    proxy: LossyProxy, store: RedisStore
) -> None:
    proxy.arm(sha(lua.ENQUEUE_CREATE))
    try:
        answer = await store.enqueue_create(None, "debt-1", "{}", time.time(), 0)
    except OutboxStoreError:  # what a caller does with an error: it tries again
        answer = await store.enqueue_create(None, "debt-1", "{}", time.time(), 0)
    assert proxy.swallowed == 1
    assert answer == "added"
    assert (await store.counts()).pending == 1


async def test_a_keyless_create_whose_answers_all_were_lost_says_a_retry_may_double_it(
    proxy: LossyProxy, store: RedisStore
) -> None:
    proxy.arm(sha(lua.ENQUEUE_CREATE), times=len(RETRIES) + 1)
    with pytest.raises(OutboxStoreError, match="may have been enqueued .*give creates a call_id"):
        await store.enqueue_create(None, "debt-1", "{}", time.time(), 0)
    assert proxy.swallowed == len(RETRIES) + 1
    assert (await store.counts()).pending == 1  # its own retries did not enqueue it again
