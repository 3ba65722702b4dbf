"""A dialer-like service for ``uvicorn tests.outbox_uvicorn_app:app --workers 2``.

``POST /calls/started`` enqueues a create (``debt_id``, ``summary``, ``call_id`` when given;
status ``in_progress``), ``POST /calls/ended`` an update by ``call_id`` (``status``,
``duration_ms``); each answers 200 once the entry is durable. ``GET /status`` gives the
outbox's counts, ``GET /held`` the summaries of the entries held for a person. The outbox
is opened in the lifespan, one per worker, all on one store, each draining, with short
leases (a lease exceeds the client's timeout + ``lease_margin`` + ``grace``).

Set by the environment (the test that starts uvicorn sets it): ``GETBILL_TOKEN`` and
``GETBILL_BASE_URL`` (a sandbox served by its own process); ``SERVICE_STORE``, a SQLite
path or a ``redis://`` URL, and ``SERVICE_NAME``, the outbox's name in Redis;
``SERVICE_WRITES`` and ``SERVICE_WINDOW``, the write budget; ``SERVICE_RECORD``, a file each
worker appends ``ready <pid>`` to when its outbox is open and ``closed <pid>`` when it closed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from getbill_async import GetBillClient, Outbox, RateLimit, RetryPolicy

TIMEOUT, LEASE, MARGIN, GRACE = 0.8, 2.0, 0.4, 0.5  # 2.0 > 0.8 + 0.4 + 0.5
PID = str(os.getpid())
boxes: list[Outbox] = []


def record(line: str) -> None:
    # One short write with O_APPEND: lines from several workers never interleave.
    fd = os.open(os.environ["SERVICE_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line} {PID}\n".encode())
    finally:
        os.close(fd)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    env = os.environ
    writes, window = int(env["SERVICE_WRITES"]), float(env["SERVICE_WINDOW"])
    limit = RateLimit(reads=100_000, writes=writes, window=window)
    client = GetBillClient(
        env["GETBILL_TOKEN"], base_url=env["GETBILL_BASE_URL"], rate_limit=limit,
        retry=RetryPolicy(base=0.01, cap=0.2), timeout=TIMEOUT,
    )  # fmt: skip
    name = env.get("SERVICE_NAME") or None
    box = Outbox(
        client, env["SERVICE_STORE"], name=name, concurrency=8, poll=0.05,
        lease=LEASE, lease_margin=MARGIN, grace=GRACE,
    )  # fmt: skip
    async with client, box:
        boxes.append(box)
        record("ready")
        try:
            yield
        finally:
            boxes.clear()
    record("closed")  # after close(): every outcome of this worker is recorded


app = FastAPI(lifespan=lifespan)


@app.post("/calls/started")
async def started(body: dict[str, Any]) -> dict[str, bool]:
    fields = {"debt_id": body["debt_id"], "summary": body["summary"], "status": "in_progress"}
    if body.get("call_id"):
        fields["call_id"] = body["call_id"]
    await boxes[0].create(type="call", **fields)
    return {"ok": True}


@app.post("/calls/ended")
async def ended(body: dict[str, Any]) -> dict[str, bool]:
    await boxes[0].update(body["call_id"], status=body["status"], duration_ms=body["duration_ms"])
    return {"ok": True}


@app.get("/status")
async def status() -> dict[str, Any]:
    counts = await boxes[0].status()
    return {**dataclasses.asdict(counts), "pid": PID}


@app.get("/held")
async def held() -> list[str]:
    return [str(e.fields.get("summary")) for e in await boxes[0].dead() if e.state == "held"]
