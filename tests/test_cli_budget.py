"""``getbill budget``: the shared ledger (one node and a cluster), the server's headers, and
``--watch`` with and without rich, run as the real command in a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from getbill_async import Outcome, RateLimit, RedisBudget
from getbill_async.sandbox import STATIC_CLIENT, Sandbox
from tests.redis_fixtures import RedisCluster, RedisServer
from tests.test_redis_budget import ROOT, fresh_key

pytestmark = pytest.mark.timeout(40)


async def getbill(*args: str, env: dict[str, str], blocked: str = "") -> tuple[int, str]:
    """Run ``getbill`` (with module ``blocked`` made unimportable); (exit code, output)."""
    code = f"import sys; sys.modules[{blocked!r}] = None\n" if blocked else "import sys\n"
    code += "from getbill_async.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def seed(url: str, client_id: str, *, cluster: bool = False) -> RedisBudget:
    """A worker of client ``client_id`` with one answered read (the server counted 9 more)
    and one bulk read in flight."""
    rate = RateLimit(reads=40, window=60.0, reserve=0.2)
    budget = RedisBudget(url, f"getbill:{client_id}", rate, cluster=cluster)
    headers = {"X-RateLimit-Limit": "40", "X-RateLimit-Remaining": "30"}
    await budget.release(await budget.acquire("read"), Outcome(status=200, headers=headers))
    await budget.acquire("read", lane="bulk")
    return budget


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_shows_the_shared_budget(kind: str, request: pytest.FixtureRequest) -> None:
    server: RedisServer | RedisCluster = request.getfixturevalue(
        "redis_server" if kind == "redis" else "redis_cluster"
    )
    client_id = fresh_key().replace(":", "-")
    budget = await seed(server.url, client_id, cluster=kind == "cluster")
    args = ["budget", "--redis", server.url, "--window", "60", "--reserve", "0.2"]
    if kind == "cluster":
        args.append("--cluster")
    try:
        code, out = await getbill(*args, env={"GETBILL_CLIENT_ID": client_id})
    finally:
        await budget.aclose()
    assert code == 0, out
    where = "Redis Cluster at 127.0.0.1:" if kind == "cluster" else "Redis at 127.0.0.1:"
    assert f"shared budget: {where}" in out and f"'getbill:{client_id}'" in out
    reads = next(line.split() for line in out.splitlines() if line.startswith("reads"))
    # used, in flight, remaining, limit/window, next slot, paused, lanes (i/b/other), reserve
    assert reads[:8] == ["reads", "10", "1", "29", "40/60s", "0.0s", "-", "1/1/9"]
    assert "(reserve 8)" in out
    writes = next(line for line in out.splitlines() if line.startswith("writes"))
    assert "500 cold" in writes


async def test_watch_without_rich_prints_plain_refreshes(redis_server: RedisServer) -> None:
    client_id = fresh_key().replace(":", "-")
    budget = await seed(redis_server.url, client_id)
    args = ["budget", "--redis", redis_server.url, "--watch", "--count", "2", "--interval", "0.1"]
    try:
        code, out = await getbill(*args, env={"GETBILL_CLIENT_ID": client_id}, blocked="rich")
    finally:
        await budget.aclose()
    assert code == 0, out
    assert sum(line.startswith("reads ") for line in out.splitlines()) == 2


async def test_watch_needs_redis() -> None:
    code, out = await getbill("budget", "--watch", env={})
    assert code == 2
    assert "--watch needs --redis (each look at the server costs a read)" in out


async def test_without_redis_it_asks_the_server_with_one_named_read() -> None:
    async with Sandbox(followups=20, reads=40, window=60.0) as sb:
        env = {"GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        code, out = await getbill("budget", env=env)
        assert len(sb.arrivals(STATIC_CLIENT, "read")) == 1
    assert code == 0, out
    assert "GET /followups?page=1&limit=1 (one read of this OAuth client's budget)" in out
    assert "X-RateLimit-Limit: 40" in out and "X-RateLimit-Remaining: 39" in out
    assert "X-RateLimit-Window: 60" in out
    assert sb.token not in out


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
async def test_watch_on_a_terminal_draws_a_live_table(redis_server: RedisServer) -> None:
    import pty

    client_id = fresh_key().replace(":", "-")
    budget = await seed(redis_server.url, client_id)
    args = ["budget", "--redis", redis_server.url, "--watch", "--count", "2", "--interval", "0.1"]
    code = "import sys; from getbill_async.cli import main; sys.exit(main(sys.argv[1:]))"
    leader, follower = pty.openpty()
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, *args, cwd=ROOT,
                env={**os.environ, "GETBILL_CLIENT_ID": client_id, "COLUMNS": "160"},
                stdout=follower, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(follower)  # the child has its own copy
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        await budget.aclose()
    text = shown.decode(errors="replace")
    assert "shared budget: Redis at 127.0.0.1:" in text  # rich's table title
    assert "│" in text or "┃" in text, "no rich table drawn"
    assert "1/1/9" in text
