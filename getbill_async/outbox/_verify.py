"""``Outbox.verify``: read back what the outbox wrote and say what is missing, doubled or changed.

Invariants:

- reads go through the client's bulk lane, so a service's own calls go first;
- it never writes: a doubled or diverged followup is reported for a person, never "fixed";
- a group (a day, a debt, an id; see ``_verify_plan``) is read in full, compared, and only
  then checkpointed in the store (``save_verify_state``), with its findings; a verify that is
  interrupted (Ctrl-C, a kill) and run again with the same arguments goes on from there, the
  same window and the same day counts, and reads no finished group again;
- a followup not on its day's list is looked for under its debt (or by its id) before it is
  called missing: someone may have moved its date.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import NotFoundError, ValidationError
from ..export import Progress
from ..models import Followup
from ..transport import CallStats
from ._delivery_store import VerifiableStore
from ._verify_plan import PAGE, Group, VerifyPlan, make_plan
from ._verify_types import DeliveryFinding, DeliveryReport, Written, written

__all__ = ["Verifier", "bad", "differences", "epoch", "judge", "read_state"]

FORMAT = 1
_NOT_COMPARED = frozenset({"debt_id", "audio_url"})  # fixed; presigned by the server anew
_DATETIMES = frozenset({"call_date", "scheduled_at"})
_STATES = ("missing", "doubled", "diverged")


def _instant(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def _shown(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def differences(item: Written, found: Followup) -> dict[str, list[Any]]:
    """The fields of ``found`` that differ from those last written: ``{name: [written,
    found]}``. Not compared: ``debt_id`` (it cannot change), ``audio_url`` (the server
    serves its own presigned URL), and the fields an update in flight is writing."""
    out: dict[str, list[Any]] = {}
    for name, value in item.fields.items():
        if name in _NOT_COMPARED or name in item.moving:
            continue
        have = getattr(found, name, None)
        wanted = _instant(value) if name in _DATETIMES else value
        if have != wanted:
            out[name] = [value, _shown(have)]
    return out


@dataclass
class _Result:
    """What one group proved."""

    checked: int = 0
    confirmed: int = 0
    found: dict[str, list[DeliveryFinding]] = field(
        default_factory=lambda: {state: [] for state in _STATES}
    )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"checked": self.checked, "confirmed": self.confirmed}
        for state in _STATES:
            data[state] = [f.as_dict() for f in self.found[state]]
        return data

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Result:
        result = cls(int(data["checked"]), int(data["confirmed"]))
        for state in _STATES:
            result.found[state] = [DeliveryFinding.of(f) for f in data[state]]
        return result

    def add(self, other: _Result) -> None:
        self.checked += other.checked
        self.confirmed += other.confirmed
        for state in _STATES:
            self.found[state] += other.found[state]


class Seen:
    """The followups of a list read in full, by id and by (``call_id``, debt)."""

    def __init__(self, followups: list[Followup]) -> None:
        self.by_id = {f.id: f for f in followups}
        self.by_call: dict[tuple[str, str], list[Followup]] = {}
        for f in followups:
            if f.call_id is not None:
                self.by_call.setdefault((f.call_id, f.debt_id), []).append(f)


def judge(item: Written, seen: Seen, result: _Result) -> bool:
    """Compare ``item`` with the followups of a list read in full; False when it is not
    among them (neither by id nor by ``call_id`` under its debt)."""
    mine = seen.by_id.get(item.followup_id)
    by_id = [] if mine is None else [mine]
    same: list[Followup] = []
    if item.call_id is not None and item.debt_id is not None:
        same = seen.by_call.get((item.call_id, item.debt_id), [])
    ids = [*dict.fromkeys(f.id for f in by_id + same)]
    if not ids:
        return False
    result.checked += 1
    finding = DeliveryFinding(item.key, tuple(ids), item.debt_id, entry=item.entry)
    if len(same) > 1:
        result.found["doubled"].append(finding)
        return True
    chosen = (by_id or same)[0]
    changed = differences(item, chosen)
    if changed:
        finding = DeliveryFinding(item.key, (chosen.id,), item.debt_id, changed, item.entry)
        result.found["diverged"].append(finding)
    else:
        result.confirmed += 1
    return True


def _missing(item: Written, result: _Result) -> None:
    result.checked += 1
    finding = DeliveryFinding(item.key, (item.followup_id,), item.debt_id, entry=item.entry)
    result.found["missing"].append(finding)


def bad(field_name: str, reason: str) -> ValidationError:
    """A ``ValidationError`` naming the field."""
    return ValidationError(
        f"{field_name}: {reason}", field=field_name, details={field_name: [reason]}
    )


def epoch(value: datetime | float | None, field_name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise bad(field_name, "must be an aware datetime (with a time zone)")
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise bad(field_name, f"must be a datetime or epoch seconds, got {value!r}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Verifier:
    """One verify of one store through one client view (bulk lane); see the module docstring."""

    def __init__(
        self,
        client: Any,
        store: VerifiableStore,
        *,
        concurrency: int = 4,
        progress: Progress | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._concurrency = concurrency
        self._progress = progress
        self.stats = CallStats()
        self._extra = 0  # reads counted by hand (GET by id)
        self._lock = asyncio.Lock()
        self.state: dict[str, Any] = {}
        self._checked = 0  # followups judged so far (progress)

    @property
    def reads(self) -> int:
        """Reads spent by this process (a resumed verify's earlier reads are in its state)."""
        return self.stats.requests + self._extra

    async def _probe(self, day: str) -> int:
        page = await self._client.followups.list(
            date_from=day, date_to=day, limit=1, stats=self.stats
        )
        total = int(page.pagination.total)
        if self.state:  # a run (not a plan alone): a kill must not probe this day again
            self.state["totals"][day] = total
            await self._save()
        return total

    async def _items(self, since: float | None, until: float | None) -> list[Written]:
        return written(await self._store.sent_entries(), since, until)

    async def plan(
        self, since: float | None, until: float | None, totals: dict[str, int] | None = None
    ) -> tuple[VerifyPlan, list[Written]]:
        """The plan (probing the days not in ``totals``) and the followups it covers."""
        items = await self._items(since, until)
        plan = await make_plan(
            items,
            totals=dict(totals or {}),
            probe=self._probe,
            status=self._client.budget_status,
            concurrency=self._concurrency,
        )
        return plan, items

    def _start(self, args: list[float | None], resume: bool, saved: str | None) -> bool:
        """Take up an interrupted verify with the same arguments, or start a new state."""
        old = json.loads(saved) if saved else None
        if (
            resume
            and old is not None
            and old.get("format") == FORMAT
            and old.get("phase") == "running"
            and old.get("args") == args
        ):
            self.state = old
            return True
        until = args[1] if args[1] is not None else time.time()
        self.state = {
            "format": FORMAT,
            "phase": "running",
            "args": args,
            "window": [args[0], until],
            "started_at": _now().isoformat(),
            "totals": {},
            "reads": 0,
            "planned": 0,
            "done": {},
        }
        return False

    async def _save(self) -> None:
        state = dict(self.state)
        state["reads"] = self.state["reads"] + self.reads
        await self._store.save_verify_state(json.dumps(state))

    async def run(
        self, since: datetime | float | None, until: datetime | float | None, *, resume: bool
    ) -> DeliveryReport:
        """Verify every followup with a done entry in the window; see the module docstring."""
        args = [epoch(since, "since"), epoch(until, "until")]
        resumed = self._start(args, resume, await self._store.verify_state())
        window = self.state["window"]
        plan, items = await self.plan(window[0], window[1], self.state["totals"])
        self.state["totals"] = plan.totals
        if not resumed:
            self.state["planned"] = plan.reads
        await self._save()
        done: dict[str, Any] = self.state["done"]
        total = _Result()
        for data in done.values():
            total.add(_Result.of(data))
        by_id = {w.followup_id: w for w in items}
        todo = [g for g in plan.groups if g.name not in done]
        if self._progress is not None:
            spent = int(self.state["reads"]) + self.reads
            left = sum(g.reads for g in todo)
            self._progress.start(spent + left, len(items), spent, total.checked)
        self._checked = total.checked
        await self._read_all(todo, by_id, total)
        return await self._finish(total, resumed)

    async def _read_all(self, todo: list[Group], by_id: dict[str, Written], total: _Result) -> None:
        queue: asyncio.Queue[Group] = asyncio.Queue()
        for group in todo:
            queue.put_nowait(group)

        async def worker() -> None:
            while not queue.empty():
                group = queue.get_nowait()
                items = [by_id[f] for f in group.followups if f in by_id]
                result = await self._group(group, items)
                async with self._lock:
                    total.add(result)
                    self.state["done"][group.name] = result.as_dict()
                    await self._save()
                    self._checked = total.checked

        workers = [asyncio.create_task(worker()) for _ in range(self._concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _show(self) -> None:
        """A read was answered: tell the progress (as an export tells it of a page), with
        the budget's figure when the line will be shown."""
        progress = self._progress
        if progress is None or not self.state:
            return
        pages = int(self.state["reads"]) + self.reads
        due = getattr(progress, "due", None)
        budget = None
        if due is None or due(pages):
            try:
                budget = (await self._client.budget_status()).reads
            except Exception:  # progress must not fail a verify
                budget = None
        progress.update(pages, self._checked, budget)

    async def _finish(self, total: _Result, resumed: bool) -> DeliveryReport:
        if self._progress is not None:
            self._checked = total.checked
            await self._show()
            self._progress.finish()
        report = DeliveryReport(
            checked=total.checked,
            confirmed=total.confirmed,
            missing=tuple(total.found["missing"]),
            doubled=tuple(total.found["doubled"]),
            diverged=tuple(total.found["diverged"]),
            reads=int(self.state["reads"]) + self.reads,
            started_at=datetime.fromisoformat(self.state["started_at"]),
            finished_at=_now(),
            planned=int(self.state["planned"]),
            resumed=resumed,
        )
        last = {"format": FORMAT, "phase": "done", "report": report.as_dict()}
        await self._store.save_verify_state(json.dumps(last))
        return report

    # reading -------------------------------------------------------------------------------

    async def _list(self, **filters: Any) -> Seen:
        """Every followup under ``filters``, page by page (100 a read)."""
        seen: dict[str, Followup] = {}
        page, pages = 1, 1
        while page <= pages:
            answer = await self._client.followups.list(
                page=page, limit=PAGE, stats=self.stats, **filters
            )
            for followup in answer.data:
                seen.setdefault(followup.id, followup)
            pages = answer.pagination.pages
            page += 1
            await self._show()
        return Seen(list(seen.values()))

    async def _by_id(self, followup_id: str) -> Seen:
        self._extra += 1
        try:
            return Seen([await self._client.followups.get(followup_id)])
        except NotFoundError:
            return Seen([])
        finally:
            await self._show()

    async def _group(self, group: Group, items: list[Written]) -> _Result:
        """Read one group in full and judge its followups (looking again, under its debt or
        by its id, for each not on its day's list)."""
        result = _Result()
        if group.kind == "id":
            seen = await self._by_id(group.value)
        elif group.kind == "debt":
            seen = await self._list(debt_id=group.value)
        else:
            seen = await self._list(date_from=group.value, date_to=group.value)
        lost = [w for w in items if not judge(w, seen, result)]
        if group.kind != "day":
            for item in lost:
                _missing(item, result)
            return result
        debts: dict[str, Seen] = {}
        for item in lost:
            if item.call_id is None or item.debt_id is None:
                again = await self._by_id(item.followup_id)
            else:
                if item.debt_id not in debts:
                    debts[item.debt_id] = await self._list(debt_id=item.debt_id)
                again = debts[item.debt_id]
            if not judge(item, again, result):
                _missing(item, result)
        return result


async def read_state(store: VerifiableStore) -> dict[str, Any] | None:
    """The verifier's state kept in ``store`` (a checkpoint, or the last report), if any."""
    text = await store.verify_state()
    return None if text is None else dict(json.loads(text))
