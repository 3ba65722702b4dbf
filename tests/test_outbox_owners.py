"""Who owns an entry in flight in a SQLite outbox is decided by a lock the owner holds, not by
its process id: a drainer in another PID namespace (a container on the same host) is never
taken for dead while it runs, and a killed one gives its entries back at once."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from getbill_async.outbox._sqlite_store import SQLiteStore

pytestmark = pytest.mark.timeout(30)

# A drainer that claims every entry under the owner id it is given, says how many, and then
# holds them until its stdin closes (or it is killed).
HOLDER = """
import asyncio, sys, time
from getbill_async.outbox._sqlite_store import SQLiteStore

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    await store.open()
    claimed = await store.claim(sys.argv[2], 10, 300.0, time.time())
    print(len(claimed), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def a_pid_of_no_process() -> int:
    finished = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await finished.wait()
    return finished.pid


async def test_a_drainer_of_another_pid_namespace_keeps_its_entries_until_it_ends(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.enqueue_create(None, "debt-1", '{"summary": "no call_id"}', time.time(), 0)
        await store.enqueue_create("ns-1", "debt-1", "{}", time.time(), 0)
        # Same host name, and a pid that names no process here: what a drainer in another
        # PID namespace looks like from this one.
        owner = f"{socket.gethostname()}:{await a_pid_of_no_process()}:other-namespace"
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, str(path), owner,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"2\n"
        assert await store.claim("here:1:me", 10, 30.0, time.time()) == []
        counts = await store.counts()
        assert (counts.in_flight, counts.held, counts.pending) == (2, 0, 0)
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        taken = await store.claim("here:1:me", 10, 30.0, time.time())
        assert [(entry.key, entry.check) for entry in taken] == [("ns-1", True)]
        assert (await store.counts()).held == 1  # the keyless one: it may have been sent
    finally:
        await store.close()


async def test_a_closed_store_lets_go_of_its_owners_lock(tmp_path: Path) -> None:
    path = tmp_path / "closed.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    await first.open()
    await second.open()
    try:
        await first.enqueue_create("c-1", "debt-1", "{}", time.time(), 0)
        assert len(await first.claim("first", 10, 300.0, time.time())) == 1
        assert await second.claim("second", 10, 300.0, time.time()) == []
        await first.close()  # closed with the entry still in flight under its lease
        [taken] = await second.claim("second", 10, 300.0, time.time())
        assert (taken.key, taken.check) == ("c-1", True)
    finally:
        await first.close()
        await second.close()
    # What is left: the file of the owner still holding an entry (free, after close).
    assert len(list((tmp_path / "closed.db.owners").iterdir())) == 1


async def test_a_claim_whose_caller_was_cancelled_gives_its_entries_back_unsent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cancel.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.enqueue_create(None, "debt-1", "{}", time.time(), 0)
        await store.enqueue_create("c-1", "debt-1", "{}", time.time(), 0)
        claiming = asyncio.create_task(store.claim("me", 10, 300.0, time.time()))
        await asyncio.sleep(0)  # the claim is queued for the writer
        claiming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claiming
        taken = await store.claim("me", 10, 300.0, time.time())
        assert [(entry.key, entry.check, entry.attempts) for entry in taken] == [
            (None, False, 1),
            ("c-1", False, 1),
        ]
        claiming = asyncio.create_task(store.claim("other", 10, 300.0, time.time()))
        await store.enqueue_create("c-2", "debt-1", "{}", time.time(), 0)
        await asyncio.sleep(0)
        claiming.cancel()
        await asyncio.gather(claiming, return_exceptions=True)
    finally:
        await store.close()  # what the cancelled claim took goes back, unsent
    again = SQLiteStore(path)
    await again.open()
    try:
        counts = await again.counts()
        assert (counts.pending, counts.held) == (1, 0)
    finally:
        await again.close()
