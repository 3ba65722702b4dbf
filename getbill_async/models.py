"""Typed models of the API's JSON, as msgspec Structs.

Reads are forward compatible: enum-valued fields are plain ``str`` on decoded objects, so a
status the SDK does not know yet decodes instead of failing a page; the enums are ``str``
subclasses, so ``f.status == "deal_found"`` and ``f.status == FollowupStatus.DEAL_FOUND`` both
hold. Unknown keys are ignored. Writes are strict: see ``_validate.py``.

    >>> page = await client.followups.list(status=FollowupStatus.DELIVERED)
    >>> [f.id for f in page.data]
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import msgspec

from ._redact import redact_url

__all__ = [
    "CallDirection",
    "Debt",
    "Followup",
    "FollowupCreate",
    "FollowupStatus",
    "FollowupType",
    "FollowupUpdate",
    "Page",
    "Pagination",
]

T = TypeVar("T")


class _StrEnum(str, enum.Enum):
    # ``enum.StrEnum`` is 3.11+; this keeps 3.10 and prints the bare value.
    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)


class FollowupStatus(_StrEnum):
    """A followup's documented statuses.

    A read keeps a status not listed here as a plain string; a write refuses it with a
    ``ValidationError``. A member compares equal to its value (``== "deal_found"``).
    """

    ON_HOLD = "on_hold"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    SENT = "sent"
    DELIVERED = "delivered"
    DEAL_FOUND = "deal_found"
    NO_ANSWER = "no_answer"
    DEAL_NOT_FOUND = "deal_not_found"
    BAD_BEHAVIOR = "bad_behavior"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FollowupType(_StrEnum):
    """A followup's documented types: the channel it went through.

    A read keeps a type not listed here as a plain string; a write refuses it.
    """

    CALL = "call"
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICEMAIL = "voicemail"
    MANUAL_CALL = "manual_call"
    PHYSICAL = "physical"
    POSTMAIL = "postmail"


class CallDirection(_StrEnum):
    """Whether a call was made to the debtor (``outbound``) or by them (``inbound``)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Followup(msgspec.Struct, kw_only=True, gc=False):
    """One followup: a call, email, SMS... logged against a debt.

    Every documented field is here; those the docs show as null or omit (an email has no
    ``media_urls_expire_at``) default to ``None``. Datetimes are aware. ``audio_url`` and
    ``pdf_url`` are presigned and expire at ``media_urls_expire_at``; the repr hides their
    signatures.
    """

    id: str
    debt_id: str
    status: str
    type: str
    call_date: datetime | None = None
    scheduled_at: datetime | None = None
    summary: str | None = None
    notes: str | None = None
    call_id: str | None = None
    audio_url: str | None = None
    pdf_url: str | None = None
    duration_ms: int | None = None
    disconnection_reason: str | None = None
    direction: str | None = None
    phone_number_used: str | None = None
    is_retry: bool | None = None
    processed_at: datetime | None = None
    triggered_payment: bool | None = None
    email_opened: bool | None = None
    email_open_count: int | None = None
    email_first_opened_at: datetime | None = None
    email_clicked: bool | None = None
    email_click_count: int | None = None
    media_urls_expire_at: datetime | None = None

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, str) and name.endswith("_url"):
                value = redact_url(value)
            parts.append(f"{name}={value!r}")
        return f"Followup({', '.join(parts)})"

    def media_expired(self, now: datetime | None = None) -> bool:
        """Whether the presigned media URLs have expired (``False`` when no expiry is known)."""
        if self.media_urls_expire_at is None:
            return False
        current = now if now is not None else datetime.now(self.media_urls_expire_at.tzinfo)
        return current >= self.media_urls_expire_at


class Pagination(msgspec.Struct, frozen=True, gc=False):
    """Where a page sits: ``total`` items in ``pages`` pages of ``limit``."""

    total: int
    page: int
    limit: int
    pages: int


class Page(msgspec.Struct, Generic[T]):
    """One page of a list endpoint: ``data`` and its ``pagination``."""

    data: list[T]
    pagination: Pagination


class FollowupCreate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /followups``. ``debt_id`` and ``type`` are required.

    Checked before sending (see ``client.followups.create``): enums, aware datetimes, types.
    """

    debt_id: str
    type: str
    status: str | None = None
    call_date: datetime | None = None
    scheduled_at: datetime | None = None
    summary: str | None = None
    notes: str | None = None
    call_id: str | None = None
    audio_url: str | None = None
    duration_ms: int | None = None
    phone_number_used: str | None = None
    direction: str | None = None
    disconnection_reason: str | None = None
    is_retry: bool | None = None

    def __repr__(self) -> str:
        shown = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        if "audio_url" in shown:
            shown["audio_url"] = redact_url(shown["audio_url"])
        return f"FollowupCreate({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


class FollowupUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``PUT /followups/{id}``: only the fields given are sent.

    A field left ``UNSET`` is not sent; ``None`` sends ``null`` (clears it). ``debt_id``
    cannot change and is not a field.
    """

    status: str | msgspec.UnsetType = msgspec.UNSET
    type: str | msgspec.UnsetType = msgspec.UNSET
    call_date: datetime | None | msgspec.UnsetType = msgspec.UNSET
    scheduled_at: datetime | None | msgspec.UnsetType = msgspec.UNSET
    summary: str | None | msgspec.UnsetType = msgspec.UNSET
    notes: str | None | msgspec.UnsetType = msgspec.UNSET
    call_id: str | None | msgspec.UnsetType = msgspec.UNSET
    audio_url: str | None | msgspec.UnsetType = msgspec.UNSET
    duration_ms: int | None | msgspec.UnsetType = msgspec.UNSET
    phone_number_used: str | None | msgspec.UnsetType = msgspec.UNSET
    direction: str | None | msgspec.UnsetType = msgspec.UNSET
    disconnection_reason: str | None | msgspec.UnsetType = msgspec.UNSET
    is_retry: bool | None | msgspec.UnsetType = msgspec.UNSET

    def given(self) -> dict[str, Any]:
        """The fields that will be sent."""
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not msgspec.UNSET}

    def __repr__(self) -> str:
        shown = self.given()
        if isinstance(shown.get("audio_url"), str):
            shown["audio_url"] = redact_url(shown["audio_url"])
        return f"FollowupUpdate({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


class Debt(msgspec.Struct, kw_only=True, gc=False):
    """One debt, as ``GET /debts`` and ``GET /debts/{id}`` answer it (read side).

    ``status`` is a plain string: companies add their own statuses, so it is an open set.
    Every field but ``id`` may be missing or null; keys the docs do not list are ignored.
    """

    id: str
    firstname: str | None = None
    lastname: str | None = None
    phone: str | None = None
    email: str | None = None
    amount: float | None = None
    currency: str | None = None
    status: str | None = None
    invoice_reference: str | None = None
    due_date: date | None = None
    followups_count: int | None = None
    payment_link: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
