"""The sync face after ``fork()`` and at interpreter exit: real forks, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from getbill_async import RateLimit, RedisBudget
from getbill_async.sync import GetBillClient, Outbox
from tests.redis_fixtures import RedisServer
from tests.sync_helpers import ThreadedSandbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sb() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(followups=120, seed=5) as sandbox:
        yield sandbox


def in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child; its exit code (0: it returned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def local_ports(client: GetBillClient) -> set[int]:
    """The local ports of the client's pooled connections (aiohttp's pool, read on its loop)."""

    async def read() -> set[int]:
        session = client.async_client.session
        assert session is not None
        pool = session.connector._conns  # type: ignore[union-attr]
        return {
            proto.transport.get_extra_info("sockname")[1]
            for held in pool.values()
            for proto, _ in held
            if proto.transport is not None
        }

    return client._portal.run(read())


@pytest.mark.timeout(30)
def test_a_client_made_before_fork_works_in_the_child_on_its_own_sockets(
    sb: ThreadedSandbox,
) -> None:
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        assert client.followups.list(limit=1).pagination.total == 120
        parent_session = client.async_client.session
        parent_ports = local_ports(client)
        assert parent_ports

        def child() -> None:
            assert client.followups.list(limit=1).pagination.total == 120
            assert len(list(client.followups.iterate(limit=50))) == 120
            assert client.async_client.session is not parent_session
            child_ports = local_ports(client)
            assert child_ports and not child_ports & parent_ports
            client.close()

        assert in_child(child) == 0
        assert in_child(child) == 0
        # The parent: the same session and connections, untouched by the children.
        assert client.followups.list(limit=1).pagination.total == 120
        assert client.async_client.session is parent_session
        assert local_ports(client) == parent_ports
    assert sb.read(lambda s: s.answered(429)) == 0


@pytest.mark.timeout(30)
def test_a_redis_budget_connects_again_in_the_child(
    sb: ThreadedSandbox, redis_server: RedisServer
) -> None:
    budget = RedisBudget(redis_server.url, f"test:{uuid.uuid4().hex[:12]}", RateLimit())
    with GetBillClient(sb.token, base_url=sb.base_url, rate_limit=budget) as client:
        assert client.followups.list(limit=1).pagination.total == 120
        parent_redis = budget._redis

        def child() -> None:
            assert client.followups.list(limit=1).pagination.total == 120
            assert budget._redis is not parent_redis
            assert client.budget_status().reads.used >= 2  # one ledger: the parent's read too
            client.close()
            client._portal.run(budget.aclose())

        assert in_child(child) == 0
        assert client.followups.list(limit=1).pagination.total == 120
        assert budget._redis is parent_redis
        assert client.budget_status().reads.used == 3
        client._portal.run(budget.aclose())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_sync_outbox_made_before_fork_stores_from_the_child(
    sb: ThreadedSandbox, tmp_path: Path, redis_server: RedisServer, kind: str
) -> None:
    store = str(tmp_path / "outbox.db") if kind == "sqlite" else redis_server.url
    name = f"fork-{uuid.uuid4().hex[:8]}"
    # A SQLite outbox is opened after the fork, in each process (its writer thread may hold
    # SQLite's own locks at the moment of a fork); a Redis one may be open across it.
    open_across = kind == "redis"
    # A 2 s lease must exceed one try's deadline + lease_margin + grace.
    with GetBillClient(sb.token, base_url=sb.base_url, timeout=0.8) as client:
        debt = client.followups.list(limit=1).data[0].debt_id
        outbox = Outbox(client, store, name=name, lease=2.0, lease_margin=0.4, grace=0.5, poll=0.1)
        if open_across:
            outbox.open()
            outbox.create(debt_id=debt, type="call", call_id="parent-1")

        def child() -> None:
            if not open_across:
                outbox.open()
            outbox.create(debt_id=debt, type="call", call_id="child-1")
            outbox.join(timeout=10)
            outbox.close()
            client.close()

        assert in_child(child) == 0
        if not open_across:
            outbox.open()
            outbox.create(debt_id=debt, type="call", call_id="parent-1")
        outbox.join(timeout=10)
        outbox.close()
    made = sb.read(lambda s: s.created_per_call_id())
    assert made.get("parent-1") == 1 and made.get("child-1") == 1


EXIT_SCRIPT = """
import sys, warnings
warnings.simplefilter("error")
from getbill_async.sync import GetBillClient, Outbox
client = GetBillClient(sys.argv[1], base_url=sys.argv[2])
walk = client.followups.iterate(limit=10)
next(walk)  # a walk left open, pages in flight
page = client.followups.list(limit=1)
print(page.pagination.total)
outbox = Outbox(client, sys.argv[3]).__enter__()
outbox.create(debt_id=page.data[0].debt_id, type="call", call_id="at-exit")
# no close(), no with: the interpreter exits
"""


@pytest.mark.timeout(40)
def test_a_program_that_forgets_to_close_exits_at_once_and_quietly(
    sb: ThreadedSandbox, tmp_path: Path
) -> None:
    script = tmp_path / "forgets.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(script), sb.token, sb.base_url, str(tmp_path / "o.db")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "120", "")


INTERRUPT_SCRIPT = """
import os, signal, sys, threading, time, warnings
warnings.simplefilter("error")
from getbill_async.sync import GetBillClient
client = GetBillClient(sys.argv[1], base_url=sys.argv[2], timeout=30)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    client.followups.list(limit=1)  # the sandbox answers after 3 s
except KeyboardInterrupt:
    print("interrupted at once:", time.monotonic() - started < 2.5)
print(client.budget_status().reads.in_flight)  # the call was cancelled, its slot given back
client.close()
"""


@pytest.mark.timeout(40)
def test_ctrl_c_stops_a_waiting_call_and_its_request(tmp_path: Path) -> None:
    with ThreadedSandbox(followups=10, seed=1, latency=3.0) as slow:
        script = tmp_path / "interrupt.py"
        script.write_text(textwrap.dedent(INTERRUPT_SCRIPT))
        done = subprocess.run(
            [sys.executable, str(script), slow.token, slow.base_url],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
    assert (done.returncode, done.stdout.split("\n")[:2], done.stderr) == (
        0,
        ["interrupted at once: True", "0"],
        "",
    )
