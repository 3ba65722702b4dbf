"""The ``followups`` resource: incremental by day, moved on only by a proved walk, and swept
in full every ``full_every`` days.

A run is one of two kinds, decided from the resource's dlt state before any request:

- **incremental**: the followups dated from ``lag_days`` before the last run's day
  (``date_from``), merged on ``id``;
- **sweep** (the first run, and then every ``full_every`` days): every followup, merged on
  ``id``; then the ids in the warehouse that the sweep did not meet are loaded as rows with
  ``deleted_on_server = true``, a column with dlt's ``hard_delete`` hint, so the merge
  removes them. Its cost (``plan_sweep``: one ``limit=1`` read, then a pure estimate) is
  logged before the sweep sends its first page read.

Either walk overlaps its reads (``transport.walk_overlapping``) and so proves, or not, that
it met every followup that stayed on the list while it ran. Only a proved walk moves the
state on (``synced_through``, and ``swept_on`` for a sweep), and only a proved sweep marks
rows deleted: a followup skipped by a slide is never taken for a deleted one. New followups
logged during a walk (inserts at the list's head) do not break the proof; the next run,
whose window holds their day, loads them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import dlt
import msgspec
from dlt.sources import DltResource

from getbill_async import ExportPlan, Followup, GetBillClient, Page
from getbill_async.export import simulate, window_start
from getbill_async.resources import probe_list
from getbill_async.transport import reads_for, walk_overlapping

from ._rows import columns_of, to_rows
from ._shared import SharedClient

__all__ = ["DELETED", "followups_resource", "plan_sweep"]

log = logging.getLogger("getbill_async")
DELETED = "deleted_on_server"
COLUMNS = {
    **columns_of(Followup),
    DELETED: {"data_type": "bool", "nullable": True, "hard_delete": True},
}
_pages = msgspec.json.Decoder(Page[dict[str, Any]])
_CONCURRENCY = 4
_CPU_PER_ITEM = 10e-6


def _key(item: dict[str, Any]) -> str:
    return str(item.get("id"))


@dataclass(frozen=True)
class RunKind:
    """What one run of the resource does: ``date_from`` (None: every followup) and whether
    it is a sweep (rows the sweep does not meet are marked deleted)."""

    date_from: str | None
    sweep: bool


def run_kind(state: Any, today: date, lag_days: int, full_every: int | None) -> RunKind:
    """The kind of this run, from the resource's state (no request)."""
    synced = state.get("synced_through")
    if synced is None:
        return RunKind(None, True)
    swept = state.get("swept_on")
    if full_every is not None and (
        swept is None or (today - date.fromisoformat(swept)).days >= full_every
    ):
        return RunKind(None, True)
    return RunKind(window_start(synced, lag_days), False)


async def plan_sweep(client: GetBillClient, *, page_limit: int = 100) -> ExportPlan:
    """What a sweep of every followup costs, before it starts: one ``limit=1`` read, then a
    pure estimate (as ``plan_export``): ``requests`` are the sweep's reads, its pages
    overlapping (``reads_for``), ``seconds`` the time under the client's budget.

    Args:
        client: the client whose budget pays for the sweep.
        page_limit: the sweep's largest page size.

    Returns:
        The plan; ``plan.describe("followups sweep")`` says it in one line.
    """
    probe = await probe_list(client)
    reads = reads_for(probe.total, page_limit)
    each = probe.rtt + min(page_limit, max(probe.total, 1)) * _CPU_PER_ITEM
    age = time.monotonic() - probe.sent_at
    seconds = simulate(reads, probe.status.reads, _CONCURRENCY - 1, each, age)
    left = probe.status.reads.remaining
    return ExportPlan(probe.total, reads, left, seconds, budget_bound=reads > left)


def _ids_in_warehouse(pipeline: Any, table: str) -> set[str]:
    """The ids the destination holds in ``table`` (none before its first load)."""
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    if schema is None or not schema.get_table_columns(table, include_incomplete=False):
        return set()
    with pipeline.sql_client() as sql:
        name = sql.make_qualified_table_name(table)
        rows = sql.execute_sql(f"SELECT id FROM {name}")  # noqa: S608 - dlt's own quoted name
    return {str(row[0]) for row in rows or ()}


def followups_resource(
    shared: SharedClient, lag_days: int, page_limit: int, today: date, full_every: int | None
) -> DltResource:
    @dlt.resource(name="followups", write_disposition="merge", primary_key="id", columns=COLUMNS)
    async def followups() -> AsyncIterator[list[dict[str, Any]]]:
        state = dlt.current.resource_state()
        kind = run_kind(state, today, lag_days, full_every)
        loaded = state.get("synced_through") is not None
        params = {} if kind.date_from is None else {"date_from": kind.date_from}
        seen: set[str] = set()
        async with shared.use() as client:
            if kind.sweep and loaded:
                plan = await plan_sweep(client, page_limit=page_limit)
                log.info("%s", plan.describe("followups sweep"))
                state["sweep_plan"] = {"items": plan.items, "reads": plan.requests}
            walk = walk_overlapping(
                client, "/followups", params, _pages, _key, limit=page_limit,
                concurrency=_CONCURRENCY, template="/followups",
            )  # fmt: skip
            async with walk:
                async for page in walk:
                    if page.data:
                        if kind.sweep:
                            seen.update(_key(item) for item in page.data)
                        yield to_rows(page.data, COLUMNS)
        proved, gone = walk.stats.proved, 0
        if kind.sweep and loaded and proved:
            pipeline = dlt.current.pipeline()
            held = await asyncio.to_thread(_ids_in_warehouse, pipeline, "followups")
            marks = [{"id": key, DELETED: True} for key in sorted(held - seen)]
            gone = len(marks)
            if marks:
                yield marks
        if proved:  # else the next run fetches the same days (or sweeps) again
            state["synced_through"] = today.isoformat()
            if kind.sweep:
                state["swept_on"] = today.isoformat()
        state["last_date_from"] = kind.date_from
        state["last_run"] = {
            "sweep": kind.sweep, "proved": proved, "reads": walk.stats.requests, "deleted": gone,
        }  # fmt: skip

    return followups
