"""Who drives the sync face's loop: a caller on its own (no thread hop), the daemon thread
while anything needs the loop between calls (an open outbox's drainer, a dropped walk's
cleanup), and never a caller's own running loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from getbill_async import Hooks
from getbill_async.sync import GetBillClient, Outbox
from getbill_async.sync._portal import portal
from tests.hostile_server import _followup
from tests.sync_helpers import LoopThread, ThreadedSandbox, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sb() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(followups=50, seed=3) as sandbox:
        yield sandbox


def test_a_lone_caller_drives_the_loop_in_its_own_thread(sb: ThreadedSandbox) -> None:
    threads: list[int] = []
    hooks = Hooks(on_request=lambda attempt: threads.append(threading.get_ident()))
    with GetBillClient(sb.token, base_url=sb.base_url, hooks=hooks) as client:
        client.followups.list(limit=1)
        worker: list[int] = []

        def elsewhere() -> None:
            worker.append(threading.get_ident())
            client.followups.list(limit=1)

        other = threading.Thread(target=elsewhere)
        other.start()
        other.join()
        assert threads == [threading.get_ident(), worker[0]]  # each in its caller's thread
        assert portal()._driver is None  # nobody drives between calls


async def test_a_caller_with_a_running_loop_is_served_by_the_daemon(
    sb: ThreadedSandbox,
) -> None:
    threads: list[int] = []
    hooks = Hooks(on_request=lambda attempt: threads.append(threading.get_ident()))
    with GetBillClient(sb.token, base_url=sb.base_url, hooks=hooks) as client:
        client.followups.list(limit=1)  # a notebook cell: our loop never runs on this one
        daemon = portal()._daemon
        assert daemon is not None and threads == [daemon.ident]
    wait_for("the daemon to let go", lambda: portal()._driver is None)


def test_an_open_outbox_drains_between_calls(sb: ThreadedSandbox, tmp_path: Any) -> None:
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        debt = client.followups.list(limit=1).data[0].debt_id
        with Outbox(client, f"{tmp_path}/o.db", poll=0.05) as outbox:
            outbox.create(debt_id=debt, type="call", call_id="between")
            # No call drives the loop from here on: the daemon does, for the drainer.
            made = lambda: sb.read(lambda s: s.created_followups(call_id="between"))  # noqa: E731
            wait_for("the drainer to send it", made)
        wait_for("the daemon to let go", lambda: portal()._driver is None)


def test_a_walk_dropped_midway_is_closed_in_the_background_then_the_loop_is_let_go(
    sb: ThreadedSandbox,
) -> None:
    with GetBillClient(sb.token, base_url=sb.base_url) as client:
        walk = client.followups.iterate(limit=5, concurrency=4)
        next(walk)
        assert portal()._driver is not None  # its fetches ahead go on
        del walk
        wait_for("the daemon to let go", lambda: portal()._driver is None)
        loop = portal().loop
        assert not [t for t in asyncio.all_tasks(loop) if not t.done()]
        assert client.followups.list(limit=1).pagination.total == 50


class KeepAliveServer(LoopThread):
    """A server that closes an idle keep-alive connection after 0.1 s."""

    base_url = ""

    async def start(self) -> None:
        async def one(request: web.Request) -> web.Response:
            fid = request.match_info["fid"]
            return web.json_response({"data": _followup(fid, "debt-1", None)})

        app = web.Application()
        app.router.add_get("/v1/followups/{fid}", one)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        await self._runner.cleanup()


def test_a_keep_alive_connection_closed_while_no_one_drove_is_not_used() -> None:
    with KeepAliveServer() as server:
        with GetBillClient("t", base_url=server.base_url, allow_insecure=True) as client:
            assert client.followups.get("fu-1").id == "fu-1"
            time.sleep(0.6)  # the server closes the connection; no one hears it meanwhile
            assert client.followups.get("fu-2").id == "fu-2"
            assert client.stats.retries == 0
