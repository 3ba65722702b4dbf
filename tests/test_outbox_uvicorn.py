"""The outbox in a real service: ``uvicorn --workers 2`` (tests/outbox_uvicorn_app.py) on one
store, a dialer posting call-started and call-ended with 20 concurrent clients, and faults
at seeded random points while it runs.

The sandbox runs in a process of its own, so that it outlives the service and sees only what
reaches it. The dialer posts ``CALLS`` calls: each keyed one is started (a create with its
``call_id``) and ended (an update with its final status); one in ten is started without
``call_id`` (a create that cannot be looked up) and never ended. A post that gets no answer
is posted again, as a dialer would, except a keyless one (posted twice, it would be two
calls). Meanwhile the test, in a seeded order: kills a worker with SIGKILL (uvicorn starts
another), and the whole service (the test starts it again); sends a worker SIGTERM (its
outbox closes with a 0.5 s grace), and the whole service; freezes a worker with SIGSTOP past
its 2 s lease, three times, then lets it go on with SIGCONT. Each worker's client believes in
a larger budget than the sandbox's, so its writes wait on 429s: a worker frozen then holds
writes not yet sent, which the other takes over (a drainer that sent them on waking, past its
lease, would create a call twice: with the lease's deadline left out, this test fails).

At the end (the service drained, then stopped) the sandbox holds every keyed call exactly
once, with the status of its ended post; no keyless create twice; and every keyless create
that was acknowledged either on the server or held for a person. Nothing is dead.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .redis_fixtures import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
CALLS, CLIENTS, SEED = 150, 20, 30
WRITES, WINDOW, LATENCY = 8, 1.0, 0.2  # the sandbox's budget: 8 writes in a sliding 1 s
BELIEVED = 100  # each worker's client believes in 100 a second: its writes wait on 429s
PACE = 0.2  # a call starts every 0.2 s: the dialing lasts about as long as the faults
STOPPED = 3.5  # a frozen worker's stop: past its lease (2 s), within uvicorn's 5 s health check
FAULTS = ["kill_worker", "stop_worker", "term_worker", "stop_worker", "kill_service",
          "stop_worker", "term_service", "kill_worker", "term_worker"]  # fmt: skip
STATUSES = ("deal_found", "no_answer", "deal_not_found")


def final_status(i: int) -> str:
    return STATUSES[i % len(STATUSES)]


def keyless(i: int) -> bool:
    return i % 10 == 5


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def until(what: str, check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def sandbox_process() -> AsyncIterator[tuple[str, str]]:
    """``getbill sandbox`` in its own process; yields its base URL and static token."""
    command = [
        sys.executable, "-m", "getbill_async.cli", "sandbox", "--port", str(free_port()),
        "--followups", "100", "--seed", "3", "--reads", "100000", "--writes", str(WRITES),
        "--window", str(WINDOW), "--latency", str(LATENCY),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        said: dict[str, str] = {}
        while "static token" not in said:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "the sandbox exited at start"
            name, _, value = line.partition(":")
            said[name.strip()] = value.strip()
        yield said["base URL"], said["static token"]
    finally:
        with suppress(ProcessLookupError):
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@dataclass
class Service:
    """``uvicorn --workers 2`` serving the app, in a session of its own (so that the test
    kills it whole); ``record`` is where each worker says it is ready, then closed."""

    env: dict[str, str]
    record: Path
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The workers that are alive and whose outbox is open."""
        lines = self.record.read_text().split("\n") if self.record.exists() else []
        pids = [int(line.split()[1]) for line in lines if line.startswith("ready ")]
        return [pid for pid in pids if alive(pid) and f"closed {pid}" not in lines]

    async def start(self) -> None:
        command = [
            sys.executable, "-m", "uvicorn", "tests.outbox_uvicorn_app:app", "--host",
            "127.0.0.1", "--port", str(self.port), "--workers", "2", "--log-level",
            "warning", "--no-access-log", "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip
        with self.log.open("ab") as log:  # the workers' warnings, for a failure's message
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        await self.whole()

    async def whole(self) -> None:
        """Until two workers are up (uvicorn replaces one that died)."""
        proc = self.proc
        assert proc is not None
        try:
            await until("two workers", lambda: proc.poll() is None and len(self.workers()) == 2, 30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.log.read_text()[-2000:]}") from None

    async def stop(self, sig: signal.Signals) -> None:
        """The whole service, by ``sig`` to its session (SIGTERM: the master stops each
        worker gracefully; SIGKILL: everything at once)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 20)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind, if any
        await until("the workers to end", lambda: not self.workers(), 10)


async def fault(service: Service, kind: str, rng: random.Random) -> None:
    pid = rng.choice(service.workers())
    if kind == "kill_worker":
        os.kill(pid, signal.SIGKILL)
    elif kind == "term_worker":
        os.kill(pid, signal.SIGTERM)
    elif kind == "stop_worker":
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(STOPPED)
        os.kill(pid, signal.SIGCONT)
    else:
        await service.stop(signal.SIGKILL if kind == "kill_service" else signal.SIGTERM)
        await service.start()
    if kind != "stop_worker":
        await until("the worker to go", lambda: pid not in service.workers(), 10)
    await service.whole()


async def chaos(service: Service, rng: random.Random) -> list[str]:
    done = []
    for kind in FAULTS:
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        await fault(service, kind, rng)
        done.append(kind)
    return done


@dataclass
class Dialer:
    http: aiohttp.ClientSession
    service: Service
    debts: list[str]
    acknowledged: list[str] = field(default_factory=list)  # keyless summaries answered 200
    retried: int = 0

    async def post(self, path: str, body: dict[str, Any], *, again: bool = True) -> bool:
        deadline = time.monotonic() + 40
        while True:
            try:
                url, timeout = self.service.url + path, aiohttp.ClientTimeout(total=1.5)
                async with self.http.post(url, json=body, timeout=timeout) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            if not again:
                return False
            assert time.monotonic() < deadline, f"{path} {body} never answered"
            self.retried += 1
            await asyncio.sleep(0.1)

    async def call(self, i: int, gate: asyncio.Semaphore) -> None:
        pause = random.Random(i).uniform(1.0, 3.0)  # the call's length
        body: dict[str, Any] = {"debt_id": self.debts[i % len(self.debts)], "summary": f"svc-{i}"}
        await asyncio.sleep(i * PACE)  # calls start at a steady rate, ended ones overlap
        async with gate:
            if keyless(i):
                if await self.post("/calls/started", body, again=False):
                    self.acknowledged.append(body["summary"])
                return
            await self.post("/calls/started", {**body, "call_id": f"svc-{i}"})
            await asyncio.sleep(pause)
            ended = {"call_id": f"svc-{i}", "status": final_status(i), "duration_ms": 1000 + i}
            await self.post("/calls/ended", ended)

    async def run(self) -> None:
        gate = asyncio.Semaphore(CLIENTS)
        await asyncio.gather(*(self.call(i, gate) for i in range(CALLS)))


async def drained(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        async with http.get(url + "/status") as resp:
            status: dict[str, Any] = await resp.json()
        if status["pending"] + status["in_flight"] == 0:
            return status
        assert time.monotonic() < deadline, f"not drained within 30 s: {status}"
        await asyncio.sleep(0.2)


async def server_followups(base: str, token: str, debts: list[str]) -> list[dict[str, Any]]:
    """Every followup the sandbox holds on ``debts`` (straight from its API)."""
    found = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for debt in debts:
            page, pages = 1, 1
            while page <= pages:
                url = f"{base}/followups/debt/{debt}?page={page}&limit=100"
                async with http.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    body = await resp.json()
                found += body["data"]
                page, pages = page + 1, body["pagination"]["pages"]
    return found


async def debt_ids(base: str, token: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/debts?limit=100") as resp:
            return [str(debt["id"]) for debt in (await resp.json())["data"]][:8]


Outcome = tuple[Dialer, dict[str, Any], list[str], list[str]]


async def serve_and_dial(service: Service, debts: list[str]) -> Outcome:
    """Start the service, dial with faults, drain; the dialer, the drained status, the
    faults done and the summaries held."""
    rng = random.Random(SEED)
    await service.start()
    try:
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(connector=connector) as http:
            dialer = Dialer(http, service, debts)
            dialing = asyncio.ensure_future(dialer.run())
            faults = await chaos(service, rng)
            await asyncio.wait_for(dialing, 40)
            status = await drained(http, service.url)
            async with http.get(service.url + "/held") as resp:
                held: list[str] = await resp.json()
        await service.stop(signal.SIGTERM)
    finally:
        await service.stop(signal.SIGKILL)
    return dialer, status, faults, held


@pytest.mark.timeout(120)
@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_a_service_under_kills_sigterm_and_sigstop_logs_each_call_once(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    async with sandbox_process() as (base, token):
        env = {
            **os.environ, "GETBILL_TOKEN": token, "GETBILL_BASE_URL": base,
            "SERVICE_STORE": str(tmp_path / "calls.db"), "SERVICE_NAME": "",
            "SERVICE_WRITES": str(BELIEVED), "SERVICE_WINDOW": str(WINDOW),
            "SERVICE_RECORD": str(tmp_path / "record"),
        }  # fmt: skip
        if store == "redis":
            redis: RedisServer = request.getfixturevalue("redis_server")
            env |= {"SERVICE_STORE": redis.url, "SERVICE_NAME": f"svc-{os.urandom(4).hex()}"}
        debts = await debt_ids(base, token)
        dialer, status, faults, held = await serve_and_dial(
            Service(env, tmp_path / "record", tmp_path / "service.log"), debts
        )
        followups = await server_followups(base, token, debts)
    elapsed = time.monotonic() - started
    print(f"{store}: {faults} in {elapsed:.1f}s, {dialer.retried} posts again, {status}")
    assert faults == FAULTS
    assert (status["dead"], status["pending"], status["in_flight"]) == (0, 0, 0)
    ours = [f for f in followups if str(f.get("summary", "")).startswith("svc-")]
    keyed = [f for f in ours if f.get("call_id")]
    per_call = Counter(str(f["call_id"]) for f in keyed)
    expected = [f"svc-{i}" for i in range(CALLS) if not keyless(i)]
    assert sorted(per_call.items()) == sorted((c, 1) for c in expected)  # 0 lost, 0 doubled
    for f in keyed:
        assert f["status"] == final_status(int(f["call_id"][4:])), f
    sent = Counter(str(f["summary"]) for f in ours if not f.get("call_id"))
    assert [s for s, n in sent.items() if n > 1] == []  # no keyless create twice
    assert set(sent) | set(held) >= set(dialer.acknowledged)  # none lost: sent or held
