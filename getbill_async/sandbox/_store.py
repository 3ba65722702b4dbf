"""The sandbox's data store: followups and debts, list order, filters and their cached results.

Rows are numbered in creation order; every list answers newest first, so list position `p`
of a result holding rows `r[0] < r[1] < ...` is `r[-1 - p]`. A filter's matching rows are found
once (one pass over the columns) and then kept up to date on every create, insert and update,
so walking all pages of a filter costs one pass, not one pass per page.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

from ._data import (
    DEBT_STATUSES,
    NO_DAY,
    STATUSES,
    TYPES,
    debt_record,
    followup_record,
    generate_columns,
    generate_debt_statuses,
)
from ._ids import IdCodec

__all__ = ["FollowupFilter", "Store", "activity_day"]

_CACHE_SIZE = 128
_ENCODED_ROWS = 50_000
_UNKNOWN_DEBT = -1  # a debt_id filter naming no debt matches nothing


@dataclass(frozen=True, slots=True)
class FollowupFilter:
    """A list filter in column terms (indexes into STATUSES/TYPES, days since 1970, debt row)."""

    status: int | None = None
    type: int | None = None
    day_from: int | None = None
    day_to: int | None = None
    debt: int | None = None

    def matches(self, status: int, kind: int, day: int, debt: int) -> bool:
        if self.status is not None and status != self.status:
            return False
        if self.type is not None and kind != self.type:
            return False
        if self.debt is not None and debt != self.debt:
            return False
        if self.day_from is None and self.day_to is None:
            return True
        # A date filter excludes followups that have neither call_date nor scheduled_at.
        return day != NO_DAY and (self.day_from or NO_DAY + 1) <= day <= (self.day_to or 2**31 - 1)


def activity_day(record: dict[str, Any]) -> int:
    """Day (since 1970, UTC) a date filter sees: call_date if set, else scheduled_at."""
    stamp = record.get("call_date") or record.get("scheduled_at")
    if not stamp:
        return NO_DAY
    moment = datetime.fromisoformat(stamp).astimezone(timezone.utc)
    return moment.date().toordinal() - 719_163  # 719_163 = date(1970, 1, 1).toordinal()


def _page_of(rows: array[int] | range, page: int, limit: int) -> list[int]:
    total = len(rows)
    start = (page - 1) * limit
    if start >= total:
        return []
    high = total - start
    return list(reversed(rows[max(0, high - limit) : high]))


class Store:
    """Followups and debts of one sandbox; all methods are synchronous and cheap per call."""

    def __init__(self, followups: int, seed: int) -> None:
        if followups < 0:
            raise ValueError("followups must be >= 0")
        self.seed = seed
        self.debts = max(1, followups // 10)
        self.cols = generate_columns(random.Random(seed), followups, self.debts)
        self.debt_status = generate_debt_statuses(random.Random(f"{seed}:debts"), self.debts)
        self.followup_codec = IdCodec(seed, "followup")
        self.debt_codec = IdCodec(seed, "debt")
        self.overrides: dict[int, dict[str, Any]] = {}
        self.created_per_call_id: Counter[str] = Counter()
        self.created_rows: list[int] = []  # rows committed by POST /followups, in order
        self.deleted: set[int] = set()  # rows deleted on the server's side (no list shows them)
        counts = Counter(self.cols.debt)
        self.debt_counts = array("i", (counts.get(d, 0) for d in range(self.debts)))
        self._cache: OrderedDict[FollowupFilter, array[int]] = OrderedDict()
        self._groups: list[array[int]] | None = None
        self._debt_status_rows: dict[int, array[int]] = {}
        # Applied to every record served (the optional media host presigns URLs there).
        self.present: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        # Encoded rows, most recently served last: a page is then mostly a join of bytes, so
        # the sandbox stays a small share of the benchmarks it serves. Bounded (~40 MB).
        self._encoded: OrderedDict[int, msgspec.Raw] = OrderedDict()

    def __len__(self) -> int:
        return len(self.cols)

    # ids -----------------------------------------------------------------------------------

    def followup_id(self, row: int) -> str:
        return self.followup_codec.encode(row)

    def followup_row(self, followup_id: str) -> int | None:
        row = self.followup_codec.decode(followup_id)
        if row is None or row >= len(self.cols) or row in self.deleted:
            return None
        return row

    def debt_id(self, row: int) -> str:
        return self.debt_codec.encode(row)

    def debt_row(self, debt_id: str) -> int | None:
        row = self.debt_codec.decode(debt_id)
        return row if row is not None and row < self.debts else None

    def debt_filter_row(self, debt_id: str) -> int:
        row = self.debt_row(debt_id)
        return _UNKNOWN_DEBT if row is None else row

    # followups -----------------------------------------------------------------------------

    def record(self, row: int) -> dict[str, Any]:
        """The JSON object of a row; shared, never mutate it."""
        stored = self.overrides.get(row)
        if stored is None:
            cols = self.cols
            stored = followup_record(
                row, cols, self.seed, self.followup_id(row), self.debt_id(cols.debt[row])
            )
        return stored if self.present is None else self.present(stored)

    def record_json(self, row: int) -> msgspec.Raw:
        """The row's JSON, encoded (cached; a presenting hook is applied fresh each time)."""
        if self.present is not None:
            return msgspec.Raw(msgspec.json.encode(self.record(row)))
        cache = self._encoded
        raw = cache.get(row)
        if raw is None:
            raw = cache[row] = msgspec.Raw(msgspec.json.encode(self.record(row)))
            if len(cache) > _ENCODED_ROWS:
                cache.popitem(last=False)
        else:
            cache.move_to_end(row)
        return raw

    def list_rows(self, flt: FollowupFilter, page: int, limit: int) -> tuple[list[int], int]:
        """Rows of one page, newest first, and the total matching the filter."""
        rows = self.matching(flt)
        return _page_of(rows, page, limit), len(rows)

    def matching(self, flt: FollowupFilter) -> array[int] | range:
        """Rows matching `flt`, ascending (oldest first)."""
        if flt == FollowupFilter() and not self.deleted:
            return range(len(self.cols))
        cached = self._cache.get(flt)
        if cached is not None:
            self._cache.move_to_end(flt)
            return cached
        result = self._scan(flt)
        self._cache[flt] = result
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def _scan(self, flt: FollowupFilter) -> array[int]:
        cols = self.cols
        rows: Iterable[int]
        if flt.debt is not None:
            rows = self._group(flt.debt)
        else:
            rows = range(len(cols))
        if flt.status is not None:
            status, wanted = cols.status, flt.status
            rows = [i for i in rows if status[i] == wanted]
        if flt.type is not None:
            kind, wanted = cols.type, flt.type
            rows = [i for i in rows if kind[i] == wanted]
        if flt.day_from is not None or flt.day_to is not None:
            day, low, high = cols.day, flt.day_from or NO_DAY + 1, flt.day_to or 2**31 - 1
            rows = [i for i in rows if low <= day[i] <= high]
        if self.deleted:
            rows = [i for i in rows if i not in self.deleted]
        return array("i", rows)

    def _group(self, debt: int) -> array[int]:
        if not 0 <= debt < self.debts:
            return array("i")
        if self._groups is None:
            groups = [array("i") for _ in range(self.debts)]
            for row, owner in enumerate(self.cols.debt):
                if row not in self.deleted:
                    groups[owner].append(row)
            self._groups = groups
        return self._groups[debt]

    def _appended(self, row: int) -> None:
        """Keep cached filter results, groups and counts in step with a new last row."""
        cols = self.cols
        values = (cols.status[row], cols.type[row], cols.day[row], cols.debt[row])
        for flt, rows in self._cache.items():
            if flt.matches(*values):
                rows.append(row)
        if self._groups is not None:
            self._groups[values[3]].append(row)
        self.debt_counts[values[3]] += 1

    def create(self, fields: dict[str, Any], debt_row: int) -> dict[str, Any]:
        """Commit a validated create; `fields` holds the normalized body (debt_id resolved)."""
        row = len(self.cols)
        record: dict[str, Any] = {
            "id": self.followup_id(row),
            "debt_id": self.debt_id(debt_row),
            "status": fields.get("status", "on_hold"),
            "type": fields["type"],
            "call_date": fields.get("call_date"),
            "scheduled_at": fields.get("scheduled_at"),
            "summary": fields.get("summary"),
            "notes": fields.get("notes"),
            "call_id": fields.get("call_id"),
            "audio_url": fields.get("audio_url"),
            "pdf_url": None,
            "duration_ms": fields.get("duration_ms"),
            "disconnection_reason": fields.get("disconnection_reason"),
            "direction": fields.get("direction"),
            "phone_number_used": fields.get("phone_number_used"),
            "is_retry": fields.get("is_retry", False),
            "processed_at": None,
            "triggered_payment": False,
            "email_opened": False,
            "email_open_count": 0,
            "email_first_opened_at": None,
            "email_clicked": False,
            "email_click_count": 0,
            # No media_urls_expire_at: the docs' create answer omits it, and so does a later read.
        }
        cols = self.cols
        cols.status.append(STATUSES.index(record["status"]))
        cols.type.append(TYPES.index(record["type"]))
        cols.scheduled.append(255)
        cols.base.append(0)
        cols.day.append(activity_day(record))
        cols.debt.append(debt_row)
        self.overrides[row] = record
        self.created_rows.append(row)
        self._appended(row)
        if record["call_id"] is not None:
            self.created_per_call_id[record["call_id"]] += 1
        return record

    def update(self, row: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Commit a validated update of the given fields only."""
        cols = self.cols
        record = dict(self.record(row))
        record.update(changes)
        self._encoded.pop(row, None)
        if record["type"] == "email":
            record.pop("media_urls_expire_at", None)
        self.overrides[row] = record
        old = (cols.status[row], cols.type[row], cols.day[row], cols.debt[row])
        cols.status[row] = STATUSES.index(record["status"])
        cols.type[row] = TYPES.index(record["type"])
        cols.day[row] = activity_day(record)
        new = (cols.status[row], cols.type[row], cols.day[row], cols.debt[row])
        if new != old:
            for flt, rows in self._cache.items():
                was, now = flt.matches(*old), flt.matches(*new)
                if was and not now:
                    del rows[bisect_left(rows, row)]
                elif now and not was:
                    rows.insert(bisect_left(rows, row), row)
        return record

    def delete(self, row: int) -> None:
        """Delete a row: no list, filter or lookup shows it any more."""
        self.deleted.add(row)
        self._encoded.pop(row, None)
        owner = self.cols.debt[row]
        lists = [*self._cache.values()]
        if self._groups is not None:
            lists.append(self._groups[owner])
        for rows in lists:
            at = bisect_left(rows, row)
            if at < len(rows) and rows[at] == row:
                del rows[at]
        self.debt_counts[owner] -= 1

    def insert(self, count: int, debt_row: int | None = None) -> list[str]:
        """Add `count` seeded-like rows (newest of all); their ids, newest first."""
        start = len(self.cols)
        rng = random.Random(f"{self.seed}:insert:{start}")
        extra = generate_columns(rng, count, self.debts)
        if debt_row is not None:
            extra.debt = array("i", [debt_row]) * count
        self.cols.extend(extra)
        for row in range(start, start + count):
            self._appended(row)
        return [self.followup_id(row) for row in reversed(range(start, start + count))]

    # debts ---------------------------------------------------------------------------------

    def debt(self, row: int) -> dict[str, Any]:
        return debt_record(
            row,
            self.debts,
            self.seed,
            self.debt_id(row),
            DEBT_STATUSES[self.debt_status[row]],
            self.debt_counts[row],
        )

    def debt_rows(self, status: str | None, page: int, limit: int) -> tuple[list[int], int]:
        """One page of debt rows, newest first; an unknown status (open set) matches nothing."""
        rows: array[int] | range
        if status is None:
            rows = range(self.debts)
        elif status not in DEBT_STATUSES:
            rows = array("i")
        else:
            wanted = DEBT_STATUSES.index(status)
            cached = self._debt_status_rows.get(wanted)
            if cached is None:
                statuses = self.debt_status
                cached = array("i", [i for i in range(self.debts) if statuses[i] == wanted])
                self._debt_status_rows[wanted] = cached
            rows = cached
        return _page_of(rows, page, limit), len(rows)
