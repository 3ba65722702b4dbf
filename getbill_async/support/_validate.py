"""Strict checks of what the caller sends, made before any request or budget is spent.

Each failure is a ``ValidationError`` (``status=None``) that names the field and, where there
is a closed set, the allowed values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import msgspec

from .._constants import MAX_PAGE_LIMIT
from ..errors import ValidationError
from ..models import CallDirection, FollowupCreate, FollowupStatus, FollowupType, FollowupUpdate

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ENUMS: dict[str, tuple[str, ...]] = {
    "status": FollowupStatus.values(),
    "type": FollowupType.values(),
    "direction": CallDirection.values(),
}
_DATETIMES = ("call_date", "scheduled_at")
_STRINGS = (
    "summary",
    "notes",
    "call_id",
    "audio_url",
    "phone_number_used",
    "disconnection_reason",
)
CREATE_FIELDS = tuple(FollowupCreate.__struct_fields__)
UPDATE_FIELDS = tuple(FollowupUpdate.__struct_fields__)


def fail(field: str, reason: str, allowed: tuple[str, ...] | None = None) -> ValidationError:
    text = f"{field}: {reason}"
    if allowed:
        text += f"; allowed: {', '.join(allowed)}"
    return ValidationError(text, field=field, allowed=allowed, details={field: [reason]})


def check_int(field: str, value: object, low: int = 1, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``high`` None: no upper bound); booleans are refused.

    Args:
        field: the name the error gives.
        value: what the caller passed.
        low: the least value allowed.
        high: the greatest value allowed, or None.

    Returns:
        ``value``, checked.

    Raises:
        ValidationError: ``value`` is not such an integer; the message names ``field``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        raise fail(field, f"must be {wanted}, got {value!r}")
    return value


def check_id(field: str, value: object) -> str:
    """A path id: a non-empty string without surrounding spaces."""
    stripped = value.strip() if isinstance(value, str) else ""
    if not stripped:
        raise fail(field, f"must be a non-empty string, got {value!r}")
    if value != stripped:
        raise fail(field, f"must not start or end with spaces, got {value!r}")
    return value


def check_enum(field: str, value: object) -> str:
    allowed = _ENUMS[field]
    if not isinstance(value, str) or value not in allowed:
        raise fail(field, f"invalid value {value!r}", allowed)
    return str(value)  # an enum member becomes its bare value


def check_datetime(field: str, value: object) -> datetime:
    """An aware datetime, or an ISO 8601 string with an offset (RFC 3339)."""
    if isinstance(value, str):
        try:
            value = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            raise fail(
                field, f"must be an ISO 8601 datetime like 2024-01-22T10:30:00+00:00, got {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise fail(field, f"must be a datetime or ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise fail(field, "must be timezone-aware (a naive datetime is ambiguous)")
    return value


def check_day(field: str, value: object) -> str:
    """A day for the list filters: a ``date`` or a ``YYYY-MM-DD`` string."""
    if isinstance(value, datetime):
        raise fail(field, "must be a date or 'YYYY-MM-DD', not a datetime")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise fail(field, f"must be a date in YYYY-MM-DD form, got {value!r}")


def _check_duration(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(field, f"must be a non-negative integer, got {value!r}")
    return value


def _check_flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise fail(field, f"must be true or false, got {value!r}")
    return value


def _check_string(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise fail(field, f"must be a string, got {type(value).__name__}")
    return value


# Each field's check, looked up once per field (a create is checked on every enqueue).
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    **dict.fromkeys(_ENUMS, check_enum),
    **dict.fromkeys(_DATETIMES, check_datetime),
    **dict.fromkeys(_STRINGS, _check_string),
    "duration_ms": _check_duration,
    "is_retry": _check_flag,
}
_CREATE_NAMES = frozenset(CREATE_FIELDS)


def _check_field(field: str, value: Any) -> Any:
    return None if value is None else _CHECKS[field](field, value)


def build_create(item: FollowupCreate | None, fields: Mapping[str, Any]) -> FollowupCreate:
    """A checked ``FollowupCreate`` from a struct or keyword fields (not both)."""
    if item is not None:
        if fields:
            raise fail(next(iter(fields)), "pass a FollowupCreate or fields, not both")
        if not isinstance(item, FollowupCreate):
            raise fail("item", f"must be a FollowupCreate, got {type(item).__name__}")
        fields = msgspec.structs.asdict(item)
    if not _CREATE_NAMES.issuperset(fields):
        raise fail(
            next(k for k in fields if k not in _CREATE_NAMES), "unknown field", CREATE_FIELDS
        )
    for required in ("debt_id", "type"):
        if fields.get(required) is None:
            raise fail(required, "is required")
    checked: dict[str, Any] = {"debt_id": check_id("debt_id", fields["debt_id"])}
    for name, value in fields.items():
        if name != "debt_id":
            checked[name] = None if value is None else _CHECKS[name](name, value)
    return FollowupCreate(**checked)


def build_update(item: FollowupUpdate | None, fields: Mapping[str, Any]) -> FollowupUpdate:
    """A checked ``FollowupUpdate``; ``debt_id`` and an empty update are refused."""
    if item is not None:
        if fields:
            raise fail(next(iter(fields)), "pass a FollowupUpdate or fields, not both")
        if not isinstance(item, FollowupUpdate):
            raise fail("item", f"must be a FollowupUpdate, got {type(item).__name__}")
        fields = item.given()
    if "debt_id" in fields:
        raise fail("debt_id", "cannot be changed by an update")
    unknown = [k for k in fields if k not in UPDATE_FIELDS]
    if unknown:
        raise fail(unknown[0], "unknown field", UPDATE_FIELDS)
    if not fields:
        raise fail("fields", "an update needs at least one field", UPDATE_FIELDS)
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None and name in ("status", "type"):
            raise fail(name, "cannot be null", _ENUMS[name])
        checked[name] = _check_field(name, value)
    return FollowupUpdate(**checked)


def list_params(
    *,
    page: object = 1,
    limit: object = 20,
    status: object = None,
    type: object = None,
    date_from: object = None,
    date_to: object = None,
    debt_id: object = None,
) -> dict[str, str]:
    """Query parameters of ``GET /followups``, checked."""
    params = page_params(page, limit)
    if status is not None:
        params["status"] = check_enum("status", status)
    if type is not None:
        params["type"] = check_enum("type", type)
    if date_from is not None:
        params["date_from"] = check_day("date_from", date_from)
    if date_to is not None:
        params["date_to"] = check_day("date_to", date_to)
    if "date_from" in params and "date_to" in params and params["date_from"] > params["date_to"]:
        raise fail("date_to", f"must not be before date_from ({params['date_from']})")
    if debt_id is not None:
        params["debt_id"] = check_id("debt_id", debt_id)
    return params


def page_params(page: object, limit: object) -> dict[str, str]:
    """``page`` and ``limit`` of a list request, checked."""
    number = check_int("page", page)
    size = check_int("limit", limit, 1, MAX_PAGE_LIMIT)
    return {"page": str(number), "limit": str(size)}
