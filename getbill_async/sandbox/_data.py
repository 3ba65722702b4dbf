"""Seeded data: the vocabularies of the docs, compact columns, and records derived on demand.

A followup is stored as a few bytes in parallel columns (status, type, debt, base time, activity
day). Everything else in its JSON is derived from its row number and the seed when a page is
served, so a million rows cost tens of megabytes and the same seed always gives the same data.
"""

from __future__ import annotations

import functools
import hashlib
import random
from array import array
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "ALL_SCOPES",
    "DEBT_STATUSES",
    "DIRECTIONS",
    "NO_DAY",
    "STATUSES",
    "TYPES",
    "Columns",
    "debt_record",
    "followup_record",
    "generate_columns",
    "generate_debt_statuses",
    "iso",
]

STATUSES = (
    "on_hold",
    "scheduled",
    "in_progress",
    "sent",
    "delivered",
    "deal_found",
    "no_answer",
    "deal_not_found",
    "bad_behavior",
    "failed",
    "cancelled",
)
TYPES = ("call", "email", "sms", "whatsapp", "voicemail", "manual_call", "physical", "postmail")
DIRECTIONS = ("inbound", "outbound")
ALL_SCOPES = (
    "followups:read",
    "followups:write",
    "debts:read",
    "debts:write",
    "reports:read",
    "company:read",
    "users:read",
    "webhooks:read",
)
# Debt statuses are an open set (companies add their own); "promise_to_pay" plays the custom one.
DEBT_STATUSES = (
    "pending",
    "in_progress",
    "promise_to_pay",
    "partially_paid",
    "paid",
    "disputed",
    "cancelled",
)

NO_DAY = -(2**31)  # activity-day sentinel: neither call_date nor scheduled_at
_BASE = 1_672_531_200  # 2023-01-01T00:00:00Z
_BASE_DAY = _BASE // 86_400
# Base times leave four hours of room so derived call/processed times stay inside 2024.
_SPAN = 731 * 86_400 - 4 * 3_600
_HAS_SCHEDULED_BELOW = 230  # a raw byte below this means scheduled_at is set (about 90 %)
_CALL_TYPES = frozenset({"call", "voicemail", "manual_call"})
# Statuses whose followup has been carried out, so it has a call_date (when it was executed).
_EXECUTED = frozenset(STATUSES) - {"on_hold", "scheduled", "cancelled"}


def _weighted_table(weights: Sequence[int]) -> bytes:
    """A 256-byte translation table: a uniform random byte becomes a weighted choice."""
    total = sum(weights)
    out = bytearray()
    for index, weight in enumerate(weights):
        out.extend([index] * (weight * 256 // total))
    out.extend([len(weights) - 1] * (256 - len(out)))
    return bytes(out)


_STATUS_TABLE = _weighted_table((6, 10, 4, 18, 20, 8, 14, 6, 2, 7, 5))
_TYPE_TABLE = _weighted_table((30, 25, 15, 8, 7, 6, 2, 7))
_DEBT_STATUS_TABLE = _weighted_table((30, 20, 10, 10, 15, 8, 7))
_EXECUTED_TABLE = bytes(STATUSES[s] in _EXECUTED if s < len(STATUSES) else 0 for s in range(256))


@functools.lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def iso(timestamp: int) -> str:
    """`2024-01-22T10:30:00+00:00`, the docs' datetime shape (UTC, whole seconds)."""
    day, seconds = divmod(timestamp, 86_400)
    hours, rest = divmod(seconds, 3_600)
    return f"{_day_text(day)}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}+00:00"


def _call_offset(base: int) -> int:
    # A call happens 0..46 minutes after it was scheduled; kept a pure function of the base
    # time so the activity-day column and the record always agree.
    return 60 * (base % 47)


class Columns:
    """Parallel compact columns, one entry per followup row."""

    __slots__ = ("status", "type", "scheduled", "base", "day", "debt")

    def __init__(self) -> None:
        self.status = bytearray()  # index into STATUSES
        self.type = bytearray()  # index into TYPES
        self.scheduled = bytearray()  # raw byte; < _HAS_SCHEDULED_BELOW means scheduled_at set
        self.base = array("i")  # seconds since 2023-01-01 (seeded rows only)
        self.day = array("i")  # activity day (days since 1970-01-01) or NO_DAY
        self.debt = array("i")  # debt row number

    def __len__(self) -> int:
        return len(self.status)

    def extend(self, other: Columns) -> None:
        self.status += other.status
        self.type += other.type
        self.scheduled += other.scheduled
        self.base += other.base
        self.day += other.day
        self.debt += other.debt


def generate_columns(rng: random.Random, count: int, debts: int) -> Columns:
    """`count` seeded rows; each column is built by C-level bulk operations or one comprehension."""
    cols = Columns()
    raw = rng.randbytes(count * 11)
    cols.status = bytearray(raw[:count].translate(_STATUS_TABLE))
    cols.type = bytearray(raw[count : 2 * count].translate(_TYPE_TABLE))
    cols.scheduled = bytearray(raw[2 * count : 3 * count])
    cols.base = array("i", [x % _SPAN for x in array("I", raw[3 * count : 7 * count])])
    cols.debt = array("i", [x % debts for x in array("I", raw[7 * count : 11 * count])])
    executed = cols.status.translate(_EXECUTED_TABLE)
    cols.day = array(
        "i",
        [
            (_BASE_DAY + (t + _call_offset(t)) // 86_400)
            if e
            else (_BASE_DAY + t // 86_400 if s < _HAS_SCHEDULED_BELOW else NO_DAY)
            for t, e, s in zip(cols.base, executed, cols.scheduled, strict=True)
        ],
    )
    return cols


def generate_debt_statuses(rng: random.Random, count: int) -> bytearray:
    return bytearray(rng.randbytes(count).translate(_DEBT_STATUS_TABLE))


def _signature(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _media_url(seed: int, folder: str, name: str) -> str:
    return (
        f"https://s3.amazonaws.com/getbill-sandbox/{folder}/{name}"
        f"?X-Amz-Expires=3600&X-Amz-Signature={_signature(seed, name)}"
    )


_SUMMARIES = {
    "deal_found": ("Successfully contacted debtor", "Debtor agreed to pay", "Payment plan agreed"),
    "no_answer": ("No answer", "Line busy, no pickup", "Voicemail box full"),
    "deal_not_found": ("Debtor refused to pay", "Debtor disputes the amount"),
    "bad_behavior": ("Debtor was abusive", "Call ended by debtor after insults"),
    "failed": ("Delivery failed", "Number unreachable", "Message bounced"),
}
_GENERIC_SUMMARIES = ("Reminder sent", "Followup carried out", "Debtor informed of balance")
_NOTES = (
    "Customer agreed to payment plan starting next month",
    "Asked to be contacted again after payday",
    "Debtor claims the invoice was already paid; checking",
    "Prefers contact by email",
    "Wrong number on file; ask for an update",
)
_DISCONNECTIONS = (
    "completed_successfully",
    "customer_hangup",
    "agent_hangup",
    "voicemail_reached",
    "no_answer",
    "call_transfer",
)


_MASK64 = (1 << 64) - 1


def _splitmix(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class _Draws:
    """192 hashed bits of one row, spent a choice at a time: cheaper than seeding a Random."""

    __slots__ = ("_bits",)

    def __init__(self, seed: int, row: int) -> None:
        key = _splitmix(seed) ^ (row * 0xD1B54A32D192ED03)
        self._bits = (_splitmix(key) << 128) | (_splitmix(key + 1) << 64) | _splitmix(key + 2)

    def below(self, n: int) -> int:
        self._bits, pick = divmod(self._bits, n)
        return pick

    def percent(self, p: int) -> bool:
        """True with probability p %."""
        return self.below(100) < p


def _call(
    draw: _Draws, row: int, seed: int, kind: str, executed: bool
) -> tuple[str | None, str | None, int | None, str | None, str | None]:
    """A call's direction, call_id, duration, disconnection reason and recording URL."""
    call_id = duration = disconnection = audio_url = direction = None
    if kind in _CALL_TYPES:
        direction = "outbound" if draw.percent(80) else "inbound"
        if executed:
            call_id = f"call_{(row * 7919 + seed * 104_729) % 10**9:09d}"
            duration = 1_000 * (5 + draw.below(55 if kind == "voicemail" else 895))
            disconnection = _DISCONNECTIONS[draw.below(len(_DISCONNECTIONS))]
            if draw.percent(92):
                audio_url = _media_url(seed, "recordings", f"{call_id}.mp3")
    return direction, call_id, duration, disconnection, audio_url


def _email(draw: _Draws, kind: str, call_ts: int | None) -> tuple[bool, int, str | None, bool, int]:
    """An email's opened flag, open count, first opening, clicked flag and click count."""
    opened = clicked = False
    open_count = click_count = 0
    first_opened = None
    if kind == "email" and call_ts is not None and draw.percent(55):
        opened = True
        open_count = 1 + draw.below(6)
        first_opened = iso(call_ts + 60 + draw.below(3_540))
        if draw.percent(35):
            clicked, click_count = True, 1 + draw.below(3)
    return opened, open_count, first_opened, clicked, click_count


def followup_record(
    row: int, cols: Columns, seed: int, followup_id: str, debt_id: str
) -> dict[str, Any]:
    """The JSON object of a seeded row, in the docs' key order."""
    draw = _Draws(seed, row)
    status = STATUSES[cols.status[row]]
    kind = TYPES[cols.type[row]]
    base = _BASE + cols.base[row]
    executed = status in _EXECUTED
    call_ts = base + _call_offset(cols.base[row]) if executed else None
    is_call = kind in _CALL_TYPES

    direction, call_id, duration, disconnection, audio_url = _call(draw, row, seed, kind, executed)
    phone = None
    if is_call or kind in ("sms", "whatsapp"):
        phone = f"+33{100_000_000 + draw.below(900_000_000)}"
    processed_ts = None
    if call_ts is not None and draw.percent(95):
        processed_ts = call_ts + (duration or 0) // 1000 + draw.below(600)

    opened, open_count, first_opened, clicked, click_count = _email(draw, kind, call_ts)
    summary = None
    if executed and draw.percent(85):
        choices = _SUMMARIES.get(status, _GENERIC_SUMMARIES)
        summary = choices[draw.below(len(choices))]
    notes = _NOTES[draw.below(len(_NOTES))] if draw.percent(50 if executed else 10) else None
    record: dict[str, Any] = {
        "id": followup_id,
        "debt_id": debt_id,
        "status": status,
        "type": kind,
        "call_date": iso(call_ts) if call_ts is not None else None,
        "scheduled_at": iso(base) if cols.scheduled[row] < _HAS_SCHEDULED_BELOW else None,
        "summary": summary,
        "notes": notes,
        "call_id": call_id,
        "audio_url": audio_url,
        "pdf_url": _media_url(seed, "letters", f"{followup_id}.pdf")
        if kind == "postmail"
        else None,
        "duration_ms": duration,
        "disconnection_reason": disconnection,
        "direction": direction,
        "phone_number_used": phone,
        "is_retry": draw.percent(12),
        "processed_at": iso(processed_ts) if processed_ts is not None else None,
        "triggered_payment": executed and draw.percent(60 if status == "deal_found" else 2),
        "email_opened": opened,
        "email_open_count": open_count,
        "email_first_opened_at": first_opened,
        "email_clicked": clicked,
        "email_click_count": click_count,
    }
    if kind != "email":
        # The docs' example expires media an hour after processing; derived from the row's own
        # times (not the clock) so the same seed always serves the same JSON.
        signed = processed_ts or call_ts or base
        record["media_urls_expire_at"] = iso(signed + 3_600)
    return record


_FIRST_NAMES = ("Camille", "Louis", "Emma", "Hugo", "Chloe", "Lucas", "Jade", "Nathan", "Ines")
_LAST_NAMES = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand")


def debt_record(
    row: int, debts: int, seed: int, debt_id: str, status: str, followups_count: int
) -> dict[str, Any]:
    rng = random.Random(seed * 2_000_003 + row + 7)
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    # Debts are created over 2023 in row order, so "newest first" is descending row number.
    created = _BASE + row * (365 * 86_400) // debts + rng.randrange(0, 3_600)
    updated = created + rng.randrange(0, 300 * 86_400)
    due = datetime.fromtimestamp(created + rng.randrange(15, 90) * 86_400, timezone.utc)
    return {
        "id": debt_id,
        "firstname": first,
        "lastname": last,
        "phone": f"+33{rng.randrange(600_000_000, 799_999_999)}",
        "email": f"{first.lower()}.{last.lower()}{row}@example.com",
        "amount": rng.randrange(2_000, 2_500_000) / 100,
        "currency": "EUR",
        "status": status,
        "invoice_reference": f"INV-{2023 + row % 2}-{row:06d}",
        "due_date": due.date().isoformat(),
        "followups_count": followups_count,
        "payment_link": f"https://pay.getbill.io/p/{debt_id}",
        "created_at": iso(created),
        "updated_at": iso(updated),
    }
