"""The two sides the request-path benchmarks compare, shared by ``pipeline.py`` (time) and
``pipeline_instructions.py`` (instruction counts), so both judge the same code.

- ``sdk_pages``: ``client.followups.list(page=n, limit=100)``, page after page;
- ``hand_pages``: what a careful user writes with the same stack: one aiohttp session, the
  headers built once, the URL already encoded, a status check and a cached
  ``msgspec.json.Decoder(Page[Followup])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
import msgspec
from yarl import URL

from getbill_async import GetBillClient
from getbill_async.models import Followup, Page

LIMIT = 100


async def sdk_pages(client: GetBillClient, pages: Sequence[int]) -> None:
    for number in pages:
        await client.followups.list(page=number, limit=LIMIT)


async def hand_pages(
    http: aiohttp.ClientSession,
    base_url: str,
    headers: dict[str, str],
    decoder: msgspec.json.Decoder[Page[Followup]],
    pages: Sequence[int],
) -> None:
    for number in pages:
        url = URL(f"{base_url}/followups?page={number}&limit={LIMIT}", encoded=True)
        async with http.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"page {number}: HTTP {resp.status}")
            decoder.decode(await resp.read())
