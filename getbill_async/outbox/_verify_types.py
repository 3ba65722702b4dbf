"""What ``Outbox.verify`` reads from a store and what it reports.

A store hands over every entry it sent (``SentEntry``: done, kept for the retention window,
or in flight now). ``written`` folds them into one ``Written`` per followup: the last fields
the outbox wrote to it (its create's, then each done update's, in order), its key, its debt
and its call day. ``DeliveryReport`` says, per followup, what the server holds now:

- *confirmed*: there, once, with the fields written;
- *missing*: no followup with that id and none with that ``call_id`` under its debt;
- *doubled*: more than one followup with that ``call_id`` under its debt;
- *diverged*: there, once, with fields that differ from the last ones written (reported,
  never "fixed": someone may have changed them on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

__all__ = ["DeliveryFinding", "DeliveryReport", "SentEntry", "Written", "call_day", "written"]


@dataclass(frozen=True)
class SentEntry:
    """One entry a store sent: ``done`` (with the followup it wrote) or ``in_flight``.

    ``fields`` are the write's fields as stored (a create's body, an update's changes).
    """

    seq: int
    key: str | None
    op: str
    state: str
    debt_id: str | None
    fields: dict[str, Any]
    followup_id: str | None
    finished: float | None


@dataclass(frozen=True)
class DeliveryFinding:
    """One followup that is not confirmed.

    Attributes:
        key: the entry's ``call_id``; for a create without one, its followup id.
        followup_ids: the followup the outbox wrote (missing); every followup with the
            ``call_id`` under the debt (doubled); the followup found (diverged).
        debt_id: the debt it belongs to (None when the outbox never knew it).
        fields: for ``diverged``, each differing field: ``{name: [written, found]}``.
        entry: the outbox entry that created it (``requeue`` sends it again), if kept.
    """

    key: str
    followup_ids: tuple[str, ...]
    debt_id: str | None = None
    fields: dict[str, list[Any]] = field(default_factory=dict)
    entry: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready values."""
        return {
            "key": self.key,
            "followup_ids": list(self.followup_ids),
            "debt_id": self.debt_id,
            "fields": self.fields,
            "entry": self.entry,
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> DeliveryFinding:
        """The finding ``as_dict`` gave."""
        return cls(
            str(data["key"]),
            tuple(data["followup_ids"]),
            data.get("debt_id"),
            dict(data.get("fields") or {}),
            data.get("entry"),
        )


@dataclass(frozen=True)
class DeliveryReport:
    """What ``Outbox.verify`` found: proof of delivery for the entries marked done.

        report = await outbox.verify()
        if not report.ok:
            print(report.missing, report.doubled, report.diverged)

    Attributes:
        checked: followups checked (one per created followup, or per followup updated).
        confirmed: those found once, with the fields last written.
        missing: not on the server (see the module docstring for each state).
        doubled: more than one followup with the ``call_id`` under the debt.
        diverged: found once, with fields other than those last written.
        reads: requests spent (plan probes included).
        started_at: when the verify started (a resumed one: when it first started).
        finished_at: when it finished.
        planned: the reads the plan counted on (each followup not found where it was
            written costs one more: a look under its debt).
        resumed: whether it went on from an interrupted verify's checkpoint.
    """

    checked: int
    confirmed: int
    missing: tuple[DeliveryFinding, ...]
    doubled: tuple[DeliveryFinding, ...]
    diverged: tuple[DeliveryFinding, ...]
    reads: int
    started_at: datetime
    finished_at: datetime
    planned: int = 0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """Whether every followup checked is confirmed."""
        return self.confirmed == self.checked

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (``getbill outbox verify --json``)."""
        return {
            "checked": self.checked,
            "confirmed": self.confirmed,
            "missing": [f.as_dict() for f in self.missing],
            "doubled": [f.as_dict() for f in self.doubled],
            "diverged": [f.as_dict() for f in self.diverged],
            "reads": self.reads,
            "planned": self.planned,
            "resumed": self.resumed,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> DeliveryReport:
        """The report ``as_dict`` gave."""
        found = {
            name: tuple(DeliveryFinding.of(f) for f in data[name])
            for name in ("missing", "doubled", "diverged")
        }
        return cls(
            checked=int(data["checked"]),
            confirmed=int(data["confirmed"]),
            reads=int(data["reads"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            planned=int(data.get("planned", 0)),
            resumed=bool(data.get("resumed", False)),
            **found,
        )


@dataclass
class Written:
    """One followup as the outbox last wrote it.

    ``moving``: fields an update in flight is writing now (not compared: the server may or
    may not have them yet). ``entry``: the create's entry id, when the store still has it.
    """

    key: str
    call_id: str | None
    debt_id: str | None
    followup_id: str
    fields: dict[str, Any]
    finished: float
    entry: int | None = None
    moving: set[str] = field(default_factory=set)

    @property
    def day(self) -> date | None:
        """The day a date filter finds it on: its call date, else when it was scheduled."""
        return call_day(self.fields)


def call_day(fields: dict[str, Any]) -> date | None:
    """The UTC day of ``call_date`` (else ``scheduled_at``) in written fields, or None."""
    stamp = fields.get("call_date") or fields.get("scheduled_at")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(timezone.utc).date()


def _target(entry: SentEntry, creates: dict[str, Written]) -> Written | None:
    """The followup an update went to: its key's latest create, or the followup named."""
    if entry.key is not None and entry.key in creates:
        return creates[entry.key]
    return None


def written(entries: list[SentEntry], since: float | None, until: float | None) -> list[Written]:
    """The followups the entries wrote, each with its last fields; only those with a done
    entry finished within ``[since, until]`` (None: no bound), oldest first.

    Args:
        entries: what the store sent, oldest first (``SentEntry``).
        since: the earliest finish time to check (epoch seconds), or None.
        until: the latest, or None.

    Returns:
        One ``Written`` per followup.
    """
    creates: dict[str, Written] = {}  # by key: the key's latest create
    by_id: dict[str, Written] = {}
    touched: set[str] = set()
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.state != "done":
            target = _target(entry, creates)
            if target is not None and entry.op == "update":
                target.moving.update(entry.fields)
            continue
        if entry.followup_id is None:
            continue
        if entry.op == "create":
            item = Written(
                key=entry.key or entry.followup_id,
                call_id=entry.key,
                debt_id=entry.debt_id,
                followup_id=entry.followup_id,
                fields=dict(entry.fields),
                finished=entry.finished or 0.0,
                entry=entry.seq,
            )
            by_id[entry.followup_id] = item
            if entry.key is not None:
                creates[entry.key] = item
        else:
            item = (
                _target(entry, creates)
                or by_id.get(entry.followup_id)
                or Written(
                    key=entry.followup_id,
                    call_id=None,
                    debt_id=None,
                    followup_id=entry.followup_id,
                    fields={},
                    finished=0.0,
                )
            )
            by_id.setdefault(item.followup_id, item)
            item.fields.update(entry.fields)
            item.finished = max(item.finished, entry.finished or 0.0)
        finished = entry.finished or 0.0
        if (since is None or finished >= since) and (until is None or finished <= until):
            touched.add(item.followup_id)
    return [w for fid, w in by_id.items() if fid in touched]
