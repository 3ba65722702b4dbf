"""``client.followups``: list, walk, get, create and update followups."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .._constants import LOGGER_NAME
from ..bulk import CreateBatch
from ..errors import AmbiguousWriteError, GetBillError
from ..models import (
    Debt,
    Followup,
    FollowupCreate,
    FollowupUpdate,
)
from ..support import (
    build_create,
    build_update,
)
from ..transport import Request
from ._jobs import FollowupJobs, probe_list
from ._media import MediaKind, download_media
from ._reads import FollowupReads, _item_decoder, _path_id
from .debts import Debts

if TYPE_CHECKING:
    from ..transport import Sender

__all__ = ["Followups", "probe_list"]

log = logging.getLogger(LOGGER_NAME)
_encoder = msgspec.json.Encoder()


class Followups(FollowupReads, FollowupJobs):
    """The followups endpoints. Every method checks its input before anything is sent.

    Reads (``list``, ``pages``, ``iterate``, ``get``...) come from ``FollowupReads``, the
    long jobs (``export``, ``sync``, ``plan_export``) from ``FollowupJobs``; the writes are here.
    """

    def __init__(self, client: Sender) -> None:
        self._client = client

    async def create(self, item: FollowupCreate | None = None, /, **fields: Any) -> Followup:
        """``POST /followups``: log a call, email, SMS... against a debt.

        ``create(FollowupCreate(...))`` or ``create(debt_id=..., type=..., ...)``. When the
        outcome is unknown (a 5xx, a timeout or a reset after sending) and the followup has a
        ``call_id``, the debt's followups are searched for it: the one found is returned, and
        the create is sent again only if it is absent. Without a ``call_id`` such a failure
        raises ``AmbiguousWriteError`` instead of risking a duplicate.
        """
        body = build_create(item, fields)
        request = Request(
            "POST",
            "/followups",
            body=_encoder.encode(body),
            fields=msgspec.structs.asdict(body),
            template="/followups",
        )
        client = self._client
        tries = 0
        while True:
            tries += 1
            try:
                answer = await client.send(request, _item_decoder)
                return answer.data
            except AmbiguousWriteError as exc:
                if body.call_id is None or not client.retry.reconcile:
                    raise
                found = await self._reconcile(body, exc)
                if found is not None:
                    return found
                if tries >= client.retry.max_tries:
                    raise
                log.debug("create with call_id not found after an ambiguous failure: resending")

    async def find_by_call_id(self, debt_id: str, call_id: str) -> Followup | None:
        """The debt's followup with this ``call_id``, or None: walks
        ``GET /followups/debt/{debt_id}`` (one read per 100 of the debt's followups).

        This is how an ambiguous create is reconciled. It runs in the caller's lane
        (interactive by default): learning whether a write happened is not bulk work.
        """
        client = self._client
        lookup = Followups(client.in_lane(client.lane or "interactive"))
        async with lookup.iterate_for_debt(debt_id) as walk:
            async for followup in walk:
                if followup.call_id == call_id:
                    return followup
        return None

    async def _reconcile(self, body: FollowupCreate, exc: AmbiguousWriteError) -> Followup | None:
        """The followup with ``body.call_id`` among the debt's, or None when absent."""
        assert body.call_id is not None
        log.debug("reconciling an ambiguous create by call_id %s", body.call_id)
        try:
            found = await self.find_by_call_id(body.debt_id, body.call_id)
        except GetBillError as lookup_failed:
            raise AmbiguousWriteError(
                f"{exc.cause}; looking it up by call_id failed too ({lookup_failed})",
                method=exc.method,
                path=exc.path,
                fields=exc.fields,
                cause=exc.cause,
            ) from lookup_failed
        if found is not None:
            log.debug("call_id %s found: the create had happened", body.call_id)
        return found

    def create_many(
        self,
        items: Iterable[FollowupCreate | Mapping[str, Any]]
        | AsyncIterable[FollowupCreate | Mapping[str, Any]],
        *,
        concurrency: int = 8,
    ) -> CreateBatch:
        """Create many followups, ``concurrency`` at a time, in the bulk lane; yield a
        ``CreateResult`` per input as each completes (its ``index`` says which).

            async with client.followups.create_many(calls, concurrency=16) as batch:
                async for result in batch:
                    ...

        Bad input or a failed create is a result with an ``error``, not an exception: the
        others go on. Leaving early cancels what is in flight, and ``batch.unreported`` says
        what became of each create whose result was not yielded (see ``getbill_async.bulk``).
        """
        client = self._client
        if client.lane is None:
            client = client.in_lane("bulk")
        return CreateBatch(Followups(client).create, items, concurrency=concurrency)

    async def update(
        self, followup_id: str, item: FollowupUpdate | None = None, /, **fields: Any
    ) -> Followup:
        """``PUT /followups/{id}`` with only the given fields (``debt_id`` cannot change).

        An unknown outcome raises ``AmbiguousWriteError``: an update is not retried blindly.
        """
        path = f"/followups/{_path_id('followup_id', followup_id)}"
        body = build_update(item, fields)
        request = Request(
            "PUT", path, body=_encoder.encode(body), fields=body.given(), template="/followups/{id}"
        )
        answer = await self._client.send(request, _item_decoder)
        return answer.data

    async def debt_of(self, followup: Followup | str) -> Debt:
        """The debt a followup belongs to: ``GET /debts/{debt_id}`` (one more request to
        ``GET /followups/{id}`` first when given an id rather than a ``Followup``)."""
        if not isinstance(followup, Followup):
            followup = await self.get(followup)
        return await Debts(self._client).get(followup.debt_id)

    async def download_media(
        self,
        followup: Followup,
        path: str | os.PathLike[str],
        *,
        kind: MediaKind = "audio",
        chunk_size: int = 1 << 16,
    ) -> Path:
        """Stream the followup's ``audio_url`` (or ``pdf_url``) to ``path``, chunk by chunk.

        The URL is presigned and expires: when ``media_urls_expire_at`` has passed, or the
        storage host answers 403, the followup is fetched again (one ``get``) for fresh URLs.
        The file is written under a temporary name and renamed when complete. The storage
        host never sees the API's credentials, and errors show the URL without its signature.
        """
        return await download_media(
            self.get,
            self._client.http_session(),
            followup,
            path,
            kind=kind,
            chunk_size=chunk_size,
            timeout=self._client.timeout,
        )
