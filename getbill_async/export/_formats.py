"""From the server's bytes to an export's: raw pages, JSONL lines, CSV rows.

Items are decoded as ``msgspec.Raw`` (their exact bytes) next to a tiny id-only struct, so JSONL
is the server's own text, fields the SDK does not know yet included, and costs no decode and
re-encode per field. CSV and Parquet decode each item into ``Followup`` for their typed columns
and keep every other field in one ``extra`` JSON column (the raw values, byte for byte).
"""

from __future__ import annotations

import csv
import io
import operator
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec

from ..errors import DecodeError
from ..models import Followup, Page
from ..support import list_params
from ..transport import KeyedPage, PageWalk, walk_pages

if TYPE_CHECKING:
    from ..transport import Sender

__all__ = [
    "CSV_COLUMNS",
    "FIELDS",
    "csv_header",
    "csv_rows",
    "jsonl_lines",
    "RawPage",
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


RawPage = KeyedPage[msgspec.Raw]
"""A page of items as the server sent them (``data``), with their ids (``ids``)."""

_raw_page_decoder = msgspec.json.Decoder(Page[msgspec.Raw])
_ids_page_decoder = msgspec.json.Decoder(Page[_IdOnly])
_followup_decoder = msgspec.json.Decoder(Followup)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


# An item whose first member is its id, a string without escapes (as the API writes them):
# the id is then the captured bytes, read straight off the item's own bytes. Anything else
# (spaces, another first member, an escape) is read by the full decoder instead.
_LEADING_ID = re.compile(rb'\{"id":"([^"\\]*)"')
_ID_BYTES: Callable[[re.Match[bytes]], bytes] = operator.itemgetter(1)


def _leading_ids(items: list[msgspec.Raw]) -> list[str] | None:
    found: list[re.Match[bytes] | None]
    found = list(map(_LEADING_ID.match, items))  # a Raw is a buffer: matched in place
    if None in found:
        return None
    matched = cast("list[re.Match[bytes]]", found)
    try:  # one decode for the page: the captured ids hold no '"' to split on
        return b'"'.join(map(_ID_BYTES, matched)).decode().split('"')
    except UnicodeDecodeError:
        return None


class _RawPageDecoder:
    """Decodes a page once in C, as raw items (their exact bytes, no object per field), and
    reads each item's id off its leading bytes; a page written otherwise is decoded a second
    time for its ids. Far cheaper than a Python call per item to decode its id."""

    def decode(self, buf: bytes, /) -> RawPage:
        page = _raw_page_decoder.decode(buf)
        ids = _leading_ids(page.data) if page.data else []
        if ids is None:
            try:
                ids = [one.id for one in _ids_page_decoder.decode(buf).data]
            except msgspec.ValidationError as exc:  # the walk skips duplicates by id
                raise DecodeError(f"GET /followups: an item has no string id: {exc}") from None
        return RawPage(data=page.data, pagination=page.pagination, ids=ids)


_raw_pages_decoder = _RawPageDecoder()


def _no_key(item: msgspec.Raw) -> str:  # a raw page always carries its ids
    raise AssertionError("raw pages are keyed pages")


def raw_pages(
    client: Sender,
    *,
    limit: int,
    concurrency: int,
    start_page: int,
    known_ids: Iterable[str],
    filters: dict[str, Any],
    total_before: int | None = None,
) -> PageWalk[msgspec.Raw]:
    """The ``GET /followups`` walk of ``client.followups.pages``, items kept as raw bytes;
    every page it yields is a ``RawPage``. ``total_before``: a resumed export's first total."""
    params = list_params(page=start_page, limit=limit, **filters)
    return walk_pages(
        client,
        "/followups",
        params,
        _raw_pages_decoder,
        _no_key,
        template="/followups",
        start_page=start_page,
        concurrency=concurrency,
        known_ids=known_ids,
        total_before=total_before,
    )


def jsonl_lines(items: list[msgspec.Raw]) -> bytes:
    """One line per item, as the server sent it; an item spread over lines is made one line."""
    if not items:
        return b""
    flat = b"".join(items)  # two joins and two memchr scans cost less than counting newlines
    if b"\n" not in flat and b"\r" not in flat:
        return b"\n".join(items) + b"\n"
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
    # Every item is decoded before any row is built: when one is no followup, no cell of the
    # others (a presigned URL) is among the locals a traceback can show.
    split = [split_item(item) for item in items]
    rows = [
        [*(_cell(getattr(followup, name), guard) for name in FIELDS), _extra(extra)]
        for followup, extra in split
    ]
    return _csv(rows)


def _extra(extra: bytes | None) -> str:
    return "" if extra is None else extra.decode()
