"""The outbox's proof of delivery, as methods of ``Outbox``: ``verify``, ``plan_verify``,
``last_verify``, and sending missing followups again (``requeue(report.missing)``).

See ``_verify`` for how a verify reads and resumes, ``_verify_plan`` for its cost model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ..export import Progress
from ..support import build_create
from ._delivery_store import VerifiableStore, verifiable
from ._store import Store
from ._verify import Verifier, bad, epoch, read_state
from ._verify_plan import VerifyPlan
from ._verify_types import DeliveryFinding, DeliveryReport, written

if TYPE_CHECKING:
    from .._client import GetBillClient
    from ._drain import Drainer

__all__ = ["Selector", "Verifying", "resend"]

_encode = msgspec.json.Encoder().encode
#: What ``Outbox.requeue`` takes: keys and entry ids, or a verify's findings (``report.missing``).
Selector = str | int | DeliveryFinding | Iterable[DeliveryFinding]


def _findings(selectors: Iterable[Any]) -> list[DeliveryFinding]:
    found: list[DeliveryFinding] = []
    for selector in selectors:
        if isinstance(selector, DeliveryFinding):
            found.append(selector)
        elif isinstance(selector, Iterable) and not isinstance(selector, (str, bytes)):
            found += _findings(selector)
        else:
            reason = f"must be DeliveryFinding items (report.missing), got {selector!r}"
            raise bad("missing", reason)
    return found


def _positive(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad(field, f"must be an integer >= 1, got {value!r}")


class Verifying:
    """Proof of delivery (mixed into ``Outbox``)."""

    _client: GetBillClient
    _store: Store
    _drainer: Drainer

    def _verifier(self, concurrency: int, progress: Progress | None = None) -> Verifier:
        _positive("concurrency", concurrency)
        view = self._client.with_options(priority="bulk")
        store = verifiable(self._store)
        return Verifier(view, store, concurrency=concurrency, progress=progress)

    async def verify(
        self,
        since: datetime | float | None = None,
        *,
        until: datetime | float | None = None,
        concurrency: int = 4,
        progress: Progress | None = None,
        resume: bool = True,
    ) -> DeliveryReport:
        """Read back every followup this outbox wrote (entries done within the retention
        window, or finished within ``since``/``until``) and compare each with the server.

            report = await outbox.verify()
            print(report.confirmed, "of", report.checked, "confirmed")

        Reads go in the bulk lane, through the list endpoint (100 followups a read, by call
        day or by debt, whichever the plan finds cheaper; see ``plan_verify``). Nothing is
        written: ``requeue(report.missing)`` sends the missing ones again; the doubled and
        diverged ones are for a person.

        Args:
            since: the earliest finish time to check (an aware ``datetime`` or epoch
                seconds); None: everything the outbox still keeps.
            until: the latest; None: now.
            concurrency: groups read at once.
            progress: where to show progress (``getbill_async.export.make_progress``).
            resume: go on from the checkpoint of an interrupted verify with the same
                ``since``/``until`` (no finished group is read again); False starts anew.

        Returns:
            The ``DeliveryReport`` (it is also kept in the store: ``last_verify()``).

        Raises:
            ValidationError: a bad ``since``, ``until`` or ``concurrency``; nothing read.
        """
        verifier = self._verifier(concurrency, progress)
        return await verifier.run(since, until, resume=resume)

    async def plan_verify(
        self,
        since: datetime | float | None = None,
        *,
        until: datetime | float | None = None,
        concurrency: int = 4,
    ) -> VerifyPlan:
        """What ``verify(since, until=...)`` would read, and how long it would take under the
        current budget, before it runs (as ``plan_export`` does for an export).

        Costs one ``limit=1`` read per call day it must weigh (the day's followups, everyone's).

        Returns:
            The ``VerifyPlan``: ``reads``, ``seconds``, the days and debts it reads.
        """
        verifier = self._verifier(concurrency)
        window = [epoch(since, "since"), epoch(until, "until")]
        plan, _ = await verifier.plan(window[0], window[1])
        return plan

    async def last_verify(self) -> DeliveryReport | None:
        """The report of the last verify that finished (kept in the store), or None."""
        state = await read_state(verifiable(self._store))
        if state is None or state.get("phase") != "done":
            return None
        return DeliveryReport.of(state["report"])

    async def _resend(self, selectors: Iterable[Any]) -> int:
        """Send missing followups again (see ``resend``)."""
        count = await resend(verifiable(self._store), _findings(selectors))
        self._drainer.wake()
        return count


async def resend(store: VerifiableStore, findings: Iterable[DeliveryFinding]) -> int:
    """Put each missing followup's create back to pending with the last fields written, to
    be looked up by its ``call_id`` before it is sent (so it is created once).

    Args:
        store: the outbox's store.
        findings: ``report.missing``.

    Returns:
        How many went back; a followup whose create the store no longer keeps (past the
        retention window) cannot.
    """
    items = {w.entry: w for w in written(await store.sent_entries(), None, None)}
    count = 0
    for finding in findings:
        item = None if finding.entry is None else items.get(finding.entry)
        if item is None or item.entry is None:
            continue
        fields = json.loads(_encode(build_create(None, dict(item.fields))))
        if await store.resend(item.entry, fields):
            count += 1
    return count
