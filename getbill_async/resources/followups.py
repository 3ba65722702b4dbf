"""``client.followups``: list, walk, get, create and update followups."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT, LOGGER_NAME
from ..bulk import CreateBatch
from ..models import (
    Debt,
    Followup,
    FollowupCreate,
    FollowupUpdate,
)
from ..support import (
    build_create,
    build_update,
    page_params,
)
from ..transport import ItemEnvelope, ItemWalk, Request, SentRecord
from ._jobs import FollowupJobs, probe_list
from ._media import MediaKind, download_media
from ._reads import _FOR_DEBT, FollowupReads, _item_decoder, _path_id
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
        outcome is unknown (any answer but a usable 2xx or a 4xx: a 5xx, a redirect, a body
        too big or cut, a timeout or a reset after sending) and the followup has a
        ``call_id``, the debt's followups are searched for it, within the call's deadline:
        the one found is returned, and the create is sent again only if it is absent. Without
        a ``call_id`` such a failure raises ``AmbiguousWriteError`` instead of risking a
        duplicate.

        Args:
            item: the followup to create, or None to give its fields as keywords.
            **fields: the followup's fields (``debt_id``, ``type``, ...).

        Returns:
            The followup created (or found by its ``call_id``).

        Raises:
            ValidationError: a field is missing or invalid (nothing is sent).
            AmbiguousWriteError: the outcome is unknown and cannot be looked up.
        """
        return await self._create(build_create(item, fields))

    async def _create(
        self, body: FollowupCreate, sent: SentRecord | None = None, bulk: bool = False
    ) -> Followup:
        call_id = body.call_id
        reconcile = (
            None
            if call_id is None
            else functools.partial(self._created, body.debt_id, call_id, bulk)
        )
        request = Request(
            "POST",
            "/followups",
            body=_encoder.encode(body),
            fields=msgspec.structs.asdict(body),
            template="/followups",
            bulk=bulk,
            sent=sent,
            reconcile=reconcile,
        )
        answer = await self._client.send(request, _item_decoder)
        return answer.data

    async def _create_one(
        self, item: FollowupCreate | Mapping[str, Any], sent: SentRecord
    ) -> Followup:
        """One create of ``create_many``: bulk work, telling ``sent`` whether it left."""
        if isinstance(item, FollowupCreate):
            body = build_create(item, {})
        else:
            body = build_create(None, dict(item))
        return await self._create(body, sent, bulk=True)

    async def _created(
        self, debt_id: str, call_id: str, bulk: bool, deadline: float | None
    ) -> ItemEnvelope[Followup] | None:
        """The reconcile lookup of an ambiguous create, as the create's answer would have
        been; None when absent. It keeps the create's deadline and its kind of work."""
        log.debug("reconciling an ambiguous create by call_id %s", call_id)
        found = await Followups(self._client.until(deadline))._find(debt_id, call_id, bulk)
        return None if found is None else ItemEnvelope(data=found)

    async def find_by_call_id(self, debt_id: str, call_id: str) -> Followup | None:
        """The debt's followup with this ``call_id``, or None: walks
        ``GET /followups/debt/{debt_id}`` (one read per 100 of the debt's followups).

        This is how an ambiguous create is reconciled. It runs in the interactive lane
        unless the client's view chose one: learning whether a write happened is not bulk
        work.

        Args:
            debt_id: the debt's id.
            call_id: the ``call_id`` the followup was created with.

        Returns:
            The followup, or None when the debt has none with that ``call_id``.
        """
        return await self._find(debt_id, call_id, bulk=False)

    async def _find(self, debt_id: str, call_id: str, bulk: bool) -> Followup | None:
        path = f"/followups/debt/{_path_id('debt_id', debt_id)}"
        params = page_params(1, DEFAULT_PAGE_LIMIT)
        walk = self._walk(path, _FOR_DEBT, params, 1, DEFAULT_CONCURRENCY, bulk=bulk)
        async with ItemWalk(walk) as items:
            async for followup in items:
                if followup.call_id == call_id:
                    return followup
        return None

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

        Args:
            items: the followups to create (structs or mappings of their fields).
            concurrency: creates in flight at once.

        Returns:
            The batch, to iterate in ``async with``.
        """
        return CreateBatch.tracking(self._create_one, items, concurrency=concurrency)

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
