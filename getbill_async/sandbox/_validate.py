"""Validation of query strings and JSON bodies, answering the docs' per-field details.

Every function returns either the parsed value or a `Details` mapping (field -> messages), which
the handlers turn into a 400 "Validation failed". Rules the docs leave open are chosen strictly,
so a client sending something the docs do not describe hears about it:
- unknown body fields are rejected (400), rather than silently ignored;
- `null` is accepted only for fields the docs show as nullable; `status`, `type` and `is_retry`
  must hold a real value when present;
- an ISO 8601 datetime needs a date and a time; one without an offset is taken as UTC; values are
  stored normalized to UTC (`2024-01-22T10:30:00+00:00`);
- a well-formed datetime whose UTC instant falls outside years 1..9999 (`0001-01-01T00:00:00+01:00`
  is 23:00 on the last day of year 0) cannot be stored normalized: it is a 422 naming the field
  (the request is understood, the value is not storable), never a 500;
- `date_from` after `date_to` is a 400 on `date_to`;
- unknown query parameters are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

from ._data import DIRECTIONS, STATUSES, TYPES

__all__ = [
    "CREATE_FIELDS",
    "UPDATE_FIELDS",
    "Details",
    "parse_body_fields",
    "parse_day",
    "parse_page",
    "validation_status",
]

Details = dict[str, list[str]]

_REQUIRED = "This field is required"
_STATUS_MSG = "Must be one of: " + ", ".join(STATUSES)
_TYPE_MSG = "Must be one of: " + ", ".join(TYPES)
_DIRECTION_MSG = "Must be one of: " + ", ".join(DIRECTIONS)
_ISO_MSG = "Must be in ISO 8601 format (e.g. 2024-01-22T10:30:00+00:00)"
_RANGE_MSG = (
    "Must fall between 0001-01-01T00:00:00+00:00 and 9999-12-31T23:59:59.999999+00:00 "
    "once converted to UTC"
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTEGER = re.compile(r"[+-]?\d{1,18}")

# Fields an update may change (api-docs README); a create also takes debt_id.
UPDATE_FIELDS = (
    "status",
    "type",
    "call_date",
    "scheduled_at",
    "summary",
    "notes",
    "call_id",
    "audio_url",
    "duration_ms",
    "phone_number_used",
    "direction",
    "disconnection_reason",
    "is_retry",
)
CREATE_FIELDS = ("debt_id", *UPDATE_FIELDS)
_NULLABLE_TEXT = frozenset(
    {"summary", "notes", "call_id", "audio_url", "phone_number_used", "disconnection_reason"}
)


def parse_page(query: Mapping[str, str], max_limit: int) -> tuple[int, int] | Details:
    details: Details = {}
    values: dict[str, int] = {}
    for name, default, low, high in (("page", 1, 1, None), ("limit", 20, 1, max_limit)):
        text = query.get(name)
        if text is None:
            values[name] = default
            continue
        if not _INTEGER.fullmatch(text.strip()):
            details[name] = ["Must be an integer"]
            continue
        value = int(text)
        if high is None and value < low:
            details[name] = [f"Must be at least {low}"]
        elif high is not None and not low <= value <= high:
            details[name] = [f"Must be between {low} and {high}"]
        values[name] = value
    return details if details else (values["page"], values["limit"])


def parse_day(text: str) -> int | None:
    """Days since 1970 of a strict YYYY-MM-DD, or None when malformed."""
    if not _DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text).toordinal() - 719_163
    except ValueError:
        return None


def _iso(value: Any) -> str | None:
    """The value normalized to UTC; None when malformed; raises OverflowError when the UTC
    instant falls outside the years datetime holds (1..9999)."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"  # Python 3.10's parser does not know the Z suffix
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _field(name: str, value: Any) -> tuple[Any, str | None]:
    """The normalized value of one body field, or an error message."""
    if name == "status":
        return (value, None) if value in STATUSES else (None, _STATUS_MSG)
    if name == "type":
        return (value, None) if value in TYPES else (None, _TYPE_MSG)
    if value is None and name != "is_retry" and name != "debt_id":
        return None, None
    if name in ("call_date", "scheduled_at"):
        try:
            normalized = _iso(value)
        except OverflowError:
            return None, _RANGE_MSG
        return (normalized, None) if normalized is not None else (None, _ISO_MSG)
    if name == "direction":
        return (value, None) if value in DIRECTIONS else (None, _DIRECTION_MSG)
    if name == "duration_ms":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return (value, None) if ok else (None, "Must be a non-negative integer or null")
    if name == "is_retry":
        return (value, None) if isinstance(value, bool) else (None, "Must be a boolean")
    if name == "debt_id":
        ok = isinstance(value, str) and value != ""
        return (value, None) if ok else (None, "Must be a non-empty string")
    if name in _NULLABLE_TEXT:
        return (value, None) if isinstance(value, str) else (None, "Must be a string or null")
    return None, "Unknown field"


def parse_body_fields(body: Any, *, create: bool) -> tuple[dict[str, Any], Details]:
    """Validate a create or update body: the normalized fields that were given, and errors."""
    if not isinstance(body, dict):
        return {}, {"body": ["Must be a JSON object"]}
    details: Details = {}
    fields: dict[str, Any] = {}
    if create:
        for name in ("debt_id", "type"):
            if name not in body:
                details[name] = [_REQUIRED]
    elif "debt_id" in body:
        details["debt_id"] = ["debt_id cannot be changed"]
    allowed = CREATE_FIELDS if create else UPDATE_FIELDS
    for name, value in body.items():
        if name == "debt_id" and not create:
            continue
        if name not in allowed:
            details[name] = ["Unknown field"]
            continue
        normalized, error = _field(name, value)
        if error is not None:
            details[name] = [error]
        else:
            fields[name] = normalized
    return fields, details


def validation_status(details: Details) -> int:
    """The status a failed validation answers: 422 when every message is about a value that is
    well formed but cannot be stored (a datetime out of range), else 400."""
    messages = [message for found in details.values() for message in found]
    return 422 if messages and all(m == _RANGE_MSG for m in messages) else 400
