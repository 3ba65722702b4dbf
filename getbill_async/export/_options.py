"""``ExportOptions``: every setting of one export, checked once, before anything touches the
disk or the network. The client's ``followups.export``, the ``getbill export`` command and
``sync`` all build one, and ``export_followups`` takes it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._constants import DEFAULT_CONCURRENCY, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT
from ..support import check_int, fail, list_params
from ._sinks import COMMIT_SECONDS

__all__ = ["FORMATS", "STARTS", "ExportOptions", "Format", "Start"]

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")
#: How an export meets an unfinished one of the same file: ``new`` refuses it (nothing is
#: thrown away silently), ``resume`` goes on from its checkpoint, ``restart`` discards it.
Start = Literal["new", "resume", "restart"]
STARTS: tuple[str, ...] = ("new", "resume", "restart")
_FILTERS = ("status", "type", "date_from", "date_to", "debt_id")


@dataclass(frozen=True)
class ExportOptions:
    """How to export: the format, where to start, the pace, and the filters.

        options = ExportOptions(format="csv", start="resume", filters={"status": "delivered"})

    Attributes:
        format: ``jsonl``, ``csv`` or ``parquet`` (the ``parquet`` extra).
        start: ``new``, ``resume`` or ``restart`` (see ``Start``).
        concurrency: pages in flight at once (>= 1).
        limit: items per page (1 to 100).
        formula_guard: CSV: prefix cells a spreadsheet would run as formulas with ``'``.
        row_group_pages: Parquet: pages per row group and per commit (>= 1).
        commit_seconds: JSONL, CSV: how often written pages are fsynced and checkpointed, in
            [0, 3600) (0: after every page; every stop commits too).
        filters: ``status``, ``type``, ``date_from``, ``date_to``, ``debt_id``.

    Raises:
        ValidationError: a setting is out of range; the message names it and what is allowed.
    """

    format: Format = "jsonl"
    start: Start = "new"
    concurrency: int = DEFAULT_CONCURRENCY
    limit: int = DEFAULT_PAGE_LIMIT
    formula_guard: bool = True
    row_group_pages: int = 10
    commit_seconds: float = COMMIT_SECONDS
    filters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise fail("format", f"invalid value {self.format!r}", FORMATS)
        if self.start not in STARTS:
            raise fail("start", f"invalid value {self.start!r}", STARTS)
        check_int("concurrency", self.concurrency)
        check_int("limit", self.limit, 1, MAX_PAGE_LIMIT)
        check_int("row_group_pages", self.row_group_pages)
        seconds = self.commit_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise fail("commit_seconds", f"must be a number of seconds, got {seconds!r}")
        if not 0 <= seconds < 3600:  # NaN fails this too
            raise fail("commit_seconds", f"must be in [0, 3600) seconds, got {seconds!r}")
        unknown = sorted(set(self.filters) - set(_FILTERS))
        if unknown:
            raise fail(unknown[0], "is not a filter of GET /followups", _FILTERS)
        object.__setattr__(
            self, "filters", {k: v for k, v in self.filters.items() if v is not None}
        )
        list_params(page=1, limit=self.limit, **self.filters)

    @classmethod
    def of(cls, *, resume: bool = False, restart: bool = False, **settings: Any) -> ExportOptions:
        """The options from keyword settings, ``resume``/``restart`` flags for ``start``.

        Args:
            resume: go on from the checkpoint (``start="resume"``).
            restart: discard an unfinished export (``start="restart"``).
            **settings: the other fields, and the filters by name (``status=...``).

        Returns:
            The checked options.

        Raises:
            ValidationError: both flags, or any setting out of range.
        """
        if resume and restart:
            raise fail("restart", "cannot be combined with resume: choose one")
        filters = {k: settings.pop(k) for k in _FILTERS if k in settings}
        start: Start = "resume" if resume else "restart" if restart else "new"
        return cls(start=start, filters=filters, **settings)

    def query(self) -> dict[str, str]:
        """The filters as query parameters (checked), as a checkpoint records them."""
        params = list_params(page=1, limit=self.limit, **self.filters)
        return {k: v for k, v in params.items() if k not in ("page", "limit")}
