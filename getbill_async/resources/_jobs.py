"""The long jobs of ``client.followups``: ``export``, ``sync`` and ``plan_export``, each a thin
front to ``getbill_async.export`` that checks its settings once and passes the client on."""

from __future__ import annotations

import os
import time
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT
from ..export import (
    ExportOptions,
    ExportPlan,
    ExportReport,
    Probe,
    Progress,
    SyncReport,
    export_followups,
    plan_export,
    sync_followups,
)
from ..models import FollowupStatus, FollowupType, Page
from ..support import check_int, fail, list_params
from ..transport import Request

if TYPE_CHECKING:
    from ..transport import Sender

__all__ = ["FollowupJobs", "probe_list"]

# The probe reads only the pagination: its one item is skipped, not decoded.
_probe_decoder = msgspec.json.Decoder(Page[msgspec.Raw])


class FollowupJobs:
    """Exports, syncs and plans over ``GET /followups`` (mixed into ``Followups``)."""

    _client: Sender

    async def export(
        self,
        /,
        path: str | os.PathLike[str],
        *,
        options: ExportOptions | None = None,
        progress: Progress | None = None,
        resume: bool = False,
        restart: bool = False,
        **settings: Any,
    ) -> ExportReport:
        """Export every followup matching the filters to JSONL, CSV or Parquet, resumably.

            await client.followups.export("calls.csv", format="csv", type="call")

        See ``getbill_async.export``: the file is written atomically and durably, a checkpoint
        beside it lets ``resume=True`` continue after a crash with no duplicate and no gap;
        JSONL keeps each item as the server sent it; CSV guards formula-like cells unless
        ``formula_guard=False``; Parquet needs the ``parquet`` extra.

        Args:
            path: the output file.
            options: every setting at once; or give them by name instead (below).
            progress: where to show progress (``getbill_async.export.make_progress``).
            resume: go on from the checkpoint of an unfinished export.
            restart: discard an unfinished export (without either, one is refused).
            **settings: the fields of ``ExportOptions`` (``format``, ``concurrency``,
                ``limit``, ``formula_guard``, ``row_group_pages``, ``commit_seconds``) and the
                filters by name (``status``, ``type``, ``date_from``, ``date_to``, ``debt_id``).

        Returns:
            What the export did (``ExportReport``).

        Raises:
            ValidationError: a bad setting or filter, before anything is written or sent.
            ExportError: an unfinished export is in the way, or does not match a resume.
        """
        if options is None:
            options = ExportOptions.of(resume=resume, restart=restart, **settings)
        elif settings or resume or restart:
            raise fail("options", "give the options object or settings by name, not both")
        return await export_followups(self._client, path, options, progress=progress)

    async def sync(
        self,
        out: str | os.PathLike[str],
        *,
        state: str | os.PathLike[str],
        format: Literal["parquet", "jsonl"] = "parquet",
        lag_days: int = 3,
        today: date | str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Progress | None = None,
    ) -> SyncReport:
        """Keep ``out`` a directory of day partitions (``date=YYYY-MM-DD/``) of every followup.

        The first run exports everything; later ones fetch only the days from ``lag_days``
        before the last run on and replace those partitions atomically. See
        ``getbill_async.export._sync``.
        """
        return await sync_followups(
            self._client,
            out,
            state=state,
            format=format,
            lag_days=lag_days,
            today=today,
            concurrency=concurrency,
            progress=progress,
        )

    async def plan_export(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        status: FollowupStatus | str | None = None,
        type: FollowupType | str | None = None,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        debt_id: str | None = None,
    ) -> ExportPlan:
        """How long ``export(**filters)`` would take, before it starts: an ``ExportPlan``
        (``items``, ``requests``, ``reads_left``, ``seconds``, ``budget_bound``).

        Costs one read: a ``limit=1`` probe whose answer carries the total and the
        ``X-RateLimit-*`` headers. The time is simulated under this client's budget and
        ``concurrency``; see ``getbill_async.export.plan_export``.
        """
        filters = {
            "status": status,
            "type": type,
            "date_from": date_from,
            "date_to": date_to,
            "debt_id": debt_id,
        }
        list_params(page=1, limit=DEFAULT_PAGE_LIMIT, **filters)  # the export's own checks
        check_int("concurrency", concurrency)
        probe = await probe_list(self._client, **filters)
        return plan_export(probe, concurrency=concurrency)


async def probe_list(client: Sender, **filters: Any) -> Probe:
    """One ``limit=1`` read of ``GET /followups`` (with ``filters``): what a plan needs.

    Args:
        client: the client (or view) to read through.
        **filters: the list's filters (``status``, ``type``, dates, ``debt_id``).

    Returns:
        The probe's figures: the total, the round trip, and the budget's status after it.
    """
    sent_at = time.monotonic()
    params = list_params(page=1, limit=1, **filters)
    request = Request("GET", "/followups", params=params, template="/followups")
    page = await client.send(request, _probe_decoder)
    rtt = time.monotonic() - sent_at
    return Probe(page.pagination.total, rtt, sent_at, await client.budget_status())
