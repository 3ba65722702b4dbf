"""From the API's items to dlt's rows: column hints from the models, dates parsed to UTC.

Every field an item carries is kept (a field the SDK does not know yet becomes a column);
only the documented dates and datetimes are parsed, and a value that does not parse (or whose
UTC instant falls outside years 1..9999) is kept as it came.
"""

from __future__ import annotations

import typing
from datetime import date, datetime, timezone
from typing import Any

import msgspec

__all__ = ["columns_of", "to_rows"]

_DATA_TYPES = {str: "text", int: "bigint", float: "double", bool: "bool", date: "date"}


def columns_of(model: type[msgspec.Struct]) -> dict[str, Any]:
    """dlt column hints for the documented fields of ``model``: their types, fixed up front
    so that a first run of all-null values still makes typed, nullable columns."""
    columns: dict[str, Any] = {}
    for field in msgspec.structs.fields(model):
        kinds = [t for t in typing.get_args(field.type) or (field.type,) if t is not type(None)]
        kind = kinds[0]
        if kind is datetime:
            hint = {"data_type": "timestamp", "timezone": True}
        else:
            hint = {"data_type": _DATA_TYPES.get(kind, "text")}
        columns[field.name] = {**hint, "nullable": field.name != "id"}
    return columns


def _stamp(value: Any, kind: type) -> Any:
    """A documented date or datetime as a Python value (datetimes in UTC); a value that does
    not parse is kept as it came (dlt then keeps it in a variant column, never drops it)."""
    if not isinstance(value, str):
        return value
    try:
        parsed: Any = msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return value
    if isinstance(parsed, datetime):
        if parsed.tzinfo is None:  # the docs always give an offset; a bare time is UTC
            return parsed.replace(tzinfo=timezone.utc)
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:  # a UTC instant in year 0 or 10000: no datetime holds it
            return value
    return parsed


def to_rows(items: list[dict[str, Any]], columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Items as dlt rows: every field kept, the documented dates and datetimes parsed."""
    stamps = {
        name: datetime if hint["data_type"] == "timestamp" else date
        for name, hint in columns.items()
        if hint["data_type"] in ("timestamp", "date")
    }
    for item in items:
        for name, kind in stamps.items():
            if name in item:
                item[name] = _stamp(item[name], kind)
    return items
