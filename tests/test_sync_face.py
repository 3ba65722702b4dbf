"""``getbill_async.sync``: the async surface, blocking; threads, running loops, errors."""

from __future__ import annotations

import asyncio
import inspect
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import getbill_async
from getbill_async import EventLoopError, NotFoundError, RateLimit, RetryPolicy, ValidationError
from getbill_async.resources import Debts, Followups
from getbill_async.sync import GetBillClient, Outbox
from getbill_async.sync._proxy import Face
from tests.sync_helpers import ThreadedSandbox

#: Async names the sync face leaves out, and why: aiohttp objects of the private loop, and
#: the pipeline's own entry point (resources call it; users call the resources).
# aclose: what `async with` calls; the sync face's `with` calls close().
NOT_MIRRORED = {"send", "http_session", "session", "drainer", "aclose"}


@pytest.fixture
def sb() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(followups=300, seed=7) as sandbox:
        yield sandbox


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")} - NOT_MIRRORED


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("async_cls", "sync_cls"),
    [
        (Followups, getbill_async.sync.Followups),
        (Debts, getbill_async.sync.Debts),
        (getbill_async.GetBillClient, GetBillClient),
        (getbill_async.Outbox, Outbox),
    ],
)
def test_every_public_method_is_mirrored_with_its_signature(
    async_cls: type, sync_cls: type
) -> None:
    missing = _public(async_cls) - _public(sync_cls)
    assert missing == set()
    client = GetBillClient("t", base_url="http://127.0.0.1:1")
    faces: dict[type, Face[Any]] = {
        Followups: client.followups,
        Debts: client.debts,
        getbill_async.GetBillClient: client,
    }
    face = faces.get(async_cls) or Outbox(client, ":memory:")
    for name in _public(async_cls):
        original = getattr(async_cls, name)
        if not callable(original) or name in ("close", "open"):
            continue
        mirrored = getattr(face, name)
        expected = inspect.signature(getattr(face._target, name))
        assert inspect.signature(mirrored) == expected, name
    client.close()


@pytest.mark.timeout(20)
def test_the_sync_client_reads_walks_writes_and_returns_what_the_async_one_does(
    sb: ThreadedSandbox,
) -> None:
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        assert client.followups.list(limit=1).pagination.total == 300
        ids = [f.id for f in client.followups.iterate(limit=100)]
        assert len(ids) == len(set(ids)) == 300
        with client.followups.pages(limit=100) as walk:
            assert [len(page.data) for page in walk] == [100, 100, 100]
        assert walk.stats.requests == 3
        followup = client.followups.get(ids[0])
        assert client.followups.debt_of(followup).id == followup.debt_id
        rows = [
            {
                "debt_id": followup.debt_id,
                "type": "call",
                "status": "in_progress",
                "call_id": f"c{i}",
            }
            for i in range(5)
        ]
        with client.followups.create_many(rows) as batch:
            assert sorted(r.index for r in batch if r.ok) == [0, 1, 2, 3, 4]
        view = client.with_options(priority="interactive", max_wait=5)
        assert view.lane == "interactive"
        assert view.followups.find_by_call_id(followup.debt_id, "c3") is not None
        assert client.budget_status().writes.used == 5
        assert client.stats.requests == view.stats.requests


@pytest.mark.timeout(20)
def test_errors_are_the_async_classes_raised_with_the_callers_frames(
    sb: ThreadedSandbox,
) -> None:
    with GetBillClient(
        sb.token, base_url=sb.base_url, retry=RetryPolicy(base=0.001, cap=0.01)
    ) as client:
        with pytest.raises(NotFoundError, match="404") as caught:
            client.followups.get("no-such-followup")
        names = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
        assert names[0] == "test_errors_are_the_async_classes_raised_with_the_callers_frames"
        assert "get" in names  # the async method's own frame, below the caller's
        with pytest.raises(ValidationError, match="limit"):
            client.followups.list(limit=1000)
        with pytest.raises(ValidationError, match="concurrency"):
            client.followups.pages(concurrency=0)  # checked at once, as in the async face


@pytest.mark.timeout(40)
def test_threads_share_one_pool_and_one_exact_budget() -> None:
    # 8 threads, 96 reads through a sandbox window of 24 reads per second: 0 refusals.
    with ThreadedSandbox(followups=100, seed=3, reads=24, window=1.0) as sb:
        rate = RateLimit(reads=24, writes=10, window=1.0)
        with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate) as client:
            sessions = set()
            errors: list[BaseException] = []

            def work() -> None:
                try:
                    for _ in range(12):
                        client.followups.list(limit=1)
                        sessions.add(id(client.async_client.session))
                except BaseException as exc:  # pragma: no cover - shown by the assert
                    errors.append(exc)

            threads = [threading.Thread(target=work) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(35)
            assert errors == []
            assert len(sessions) == 1
            assert client.stats.requests == 96
        assert sb.read(lambda s: s.answered(429)) == 0
        assert sb.read(lambda s: s.requests_made("read")) == 96


@pytest.mark.timeout(20)
async def test_a_call_inside_a_running_loop_works_without_touching_that_loop(
    sb: ThreadedSandbox,
) -> None:
    caller = asyncio.get_running_loop()
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        # A notebook cell's way: a plain call while the caller's loop runs.
        assert client.followups.list(limit=1).pagination.total == 300
        assert client.async_client.session is not None
        assert client.async_client.session._loop is not caller
    assert caller.is_running()


@pytest.mark.timeout(20)
def test_a_blocking_call_from_the_sync_loop_itself_says_it_would_deadlock(
    sb: ThreadedSandbox,
) -> None:
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        debt = client.followups.list(limit=1).data[0].debt_id

        def rows() -> Iterator[dict[str, str]]:
            client.followups.list(limit=1)  # runs on the loop's thread: refused
            yield {"debt_id": debt, "type": "call"}

        with pytest.raises(EventLoopError, match="would wait for itself forever"):
            with client.followups.create_many(rows()) as batch:
                list(batch)
        assert client.followups.list(limit=1).pagination.total == 300  # still serves


@pytest.mark.timeout(20)
def test_a_walk_left_early_and_dropped_is_closed_quietly(sb: ThreadedSandbox) -> None:
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        for n, _ in enumerate(client.followups.iterate(limit=10, concurrency=4)):
            if n == 15:
                break
        assert client.followups.list(limit=1).pagination.total == 300


@pytest.mark.timeout(20)
def test_the_sync_outbox_stores_and_drains(sb: ThreadedSandbox, tmp_path: object) -> None:
    path = f"{tmp_path}/outbox.db"
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        debt = client.followups.list(limit=1).data[0].debt_id
        with Outbox(client, path) as outbox:
            outbox.create(debt_id=debt, type="call", status="in_progress", call_id="o-1")
            outbox.update("o-1", status="deal_found")
            outbox.join(timeout=10)
            assert outbox.status().pending == 0
    created = sb.read(lambda s: s.created_followups(call_id="o-1"))
    assert len(created) == 1 and created[0]["status"] == "deal_found"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("async_cls", "sync_cls", "left_out"),
    [
        (getbill_async.GetBillClient, GetBillClient, {"session"}),
        (getbill_async.Outbox, Outbox, set()),
    ],
)
def test_the_constructors_take_the_async_ones_arguments(
    async_cls: type, sync_cls: type, left_out: set[str]
) -> None:
    def shape(cls: type) -> list[tuple[str, object, object]]:
        params = inspect.signature(vars(cls)["__init__"]).parameters.values()
        return [(p.name, p.kind, p.default) for p in params if p.name not in left_out]

    assert shape(sync_cls) == shape(async_cls)
