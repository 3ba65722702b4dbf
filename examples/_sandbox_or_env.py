"""Where the examples connect: GETBILL_BASE_URL + GETBILL_TOKEN, else an embedded sandbox."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from getbill_async import GetBillClient


@asynccontextmanager
async def connect(**options: object) -> AsyncIterator[GetBillClient]:
    base_url = os.environ.get("GETBILL_BASE_URL")
    if base_url:
        async with GetBillClient(base_url=base_url, **options) as client:  # type: ignore[arg-type]
            yield client
        return
    from getbill_async.sandbox import Sandbox

    async with Sandbox(followups=2_000) as sandbox:
        print(f"(no GETBILL_BASE_URL: using an embedded sandbox at {sandbox.base_url})")
        async with GetBillClient(sandbox.token, base_url=sandbox.base_url, **options) as client:  # type: ignore[arg-type]
            yield client
