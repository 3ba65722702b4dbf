"""From the server's bytes to an export's: raw pages, JSONL lines, CSV rows.

Items are decoded as ``msgspec.Raw`` (their exact bytes) next to a tiny id-only struct, so JSONL
is the server's own text, fields the SDK does not know yet included, and costs no decode and
re-encode per field. CSV and Parquet decode each item into ``Followup`` for their typed columns
and keep every other field in one ``extra`` JSON column (the raw values, byte for byte).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from .._pagination import PageWalk
from .._validate import list_params
from ..errors import DecodeError
from ..models import Followup, Page
from ..resources import walk_pages

if TYPE_CHECKING:
    from .._client import GetBillClient

__all__ = [
    "CSV_COLUMNS",
    "FIELDS",
    "csv_header",
    "csv_rows",
    "jsonl_lines",
    "RawItem",
    "raw_id",
    "raw_pages",
    "split_item",
]

FIELDS: tuple[str, ...] = tuple(Followup.__struct_fields__)
CSV_COLUMNS: tuple[str, ...] = (*FIELDS, "extra")
_KNOWN = frozenset(FIELDS)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _IdOnly(msgspec.Struct, gc=False):
    id: str


class RawItem:
    """One followup as the server sent it (``raw``), with its ``id`` for duplicate skipping."""

    __slots__ = ("raw", "id")

    def __init__(self, raw: msgspec.Raw, item_id: str) -> None:
        self.raw = raw
        self.id = item_id


_raw_page_decoder = msgspec.json.Decoder(Page[msgspec.Raw])
_ids_page_decoder = msgspec.json.Decoder(Page[_IdOnly])
_followup_decoder = msgspec.json.Decoder(Followup)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


class _RawPageDecoder:
    """Decodes a page twice in C, as raw items and as ids, then pairs them: far cheaper than
    a Python call per item to find its id."""

    def decode(self, buf: bytes, /) -> Page[RawItem]:
        page = _raw_page_decoder.decode(buf)
        try:
            ids = _ids_page_decoder.decode(buf).data
        except msgspec.ValidationError as exc:  # the walk skips duplicates by id: it needs one
            raise DecodeError(f"GET /followups: an item has no string id: {exc}") from None
        return Page(
            data=[RawItem(raw, one.id) for raw, one in zip(page.data, ids, strict=True)],
            pagination=page.pagination,
        )


_raw_pages_decoder = _RawPageDecoder()


def raw_id(item: RawItem) -> str:
    return item.id


def raw_pages(
    client: GetBillClient,
    *,
    limit: int,
    concurrency: int,
    start_page: int,
    known_ids: Iterable[str],
    filters: dict[str, Any],
) -> PageWalk[RawItem]:
    """The ``GET /followups`` walk of ``client.followups.pages``, items kept as raw bytes."""
    params = list_params(page=start_page, limit=limit, **filters)
    return walk_pages(
        client,
        "/followups",
        params,
        _raw_pages_decoder,
        raw_id,
        template="/followups",
        start_page=start_page,
        concurrency=concurrency,
        known_ids=known_ids,
    )


def jsonl_lines(items: list[msgspec.Raw]) -> bytes:
    """One line per item, as the server sent it; an item spread over lines is made one line."""
    if not items:
        return b""
    data = b"\n".join(items) + b"\n"
    if data.count(b"\n") == len(items) and b"\r" not in data:
        return data
    lines = []
    for item in items:
        text = bytes(item)
        if b"\n" in text or b"\r" in text:  # only whitespace: JSON strings escape both
            text = msgspec.json.format(text, indent=-1)
        lines.append(text)
    return b"\n".join(lines) + b"\n"


def split_item(item: msgspec.Raw) -> tuple[Followup, bytes | None]:
    """The typed followup, and the fields it does not know as a JSON object (None if none)."""
    try:
        followup = _followup_decoder.decode(item)
    except msgspec.DecodeError as exc:  # the page was JSON, but this item is no followup
        raise DecodeError(f"GET /followups: an item is not a followup: {exc}") from None
    fields = _fields_decoder.decode(item)
    if fields.keys() <= _KNOWN:
        return followup, None
    return followup, _encoder.encode({k: v for k, v in fields.items() if k not in _KNOWN})


def _cell(value: Any, guard: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if guard and value.startswith(_FORMULA_STARTS) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _csv(rows: Iterable[Iterable[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def csv_header() -> bytes:
    return _csv([CSV_COLUMNS])


def csv_rows(items: list[msgspec.Raw], guard: bool) -> bytes:
    """CSV rows of ``items``; ``guard`` prefixes text cells a spreadsheet would run with ``'``."""
    rows = []
    for item in items:
        followup, extra = split_item(item)
        row = [_cell(getattr(followup, name), guard) for name in FIELDS]
        row.append("" if extra is None else extra.decode())
        rows.append(row)
    return _csv(rows)
