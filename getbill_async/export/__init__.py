"""Bulk export of followups to JSONL, CSV or Parquet: resumable, atomic, durable, lossless.

    report = await client.followups.export("followups.jsonl", status="delivered")

Formats:

- ``jsonl``: each followup exactly as the server sent it, one per line, fields the SDK does
  not know yet included (an item the server spread over several lines is made one line).
- ``csv``: a header, the documented fields as columns, and one ``extra`` column holding the
  fields the SDK does not know yet as a JSON object (empty when there are none). Text cells
  that begin with ``=``, ``+``, ``-``, ``@``, a tab or a CR get a leading ``'`` so that a
  spreadsheet shows them instead of running them as formulas (CSV injection: a debtor's
  notes are data an outsider can write). Numbers, booleans and datetimes are never touched.
  Pass ``formula_guard=False`` (``--no-formula-guard``) when the file is for a program.
- ``parquet`` (the ``parquet`` extra): see ``getbill_async.export._parquet``.

Durability: the output grows in ``<path>.partial`` (Parquet: part files in ``<path>.parts/``).
After each page (Parquet: each part) the data is fsynced, then the checkpoint
``<path>.checkpoint`` is written to a temporary file, fsynced and renamed, and the directory
fsynced. The checkpoint records the filters, and for each recent page its bytes' place and
SHA-256 and its ids. ``resume=True`` checks the partial file against it from the newest page
back: a page written after the checkpoint is cut off, a page whose bytes were lost (a disk
that dropped its tail in a power cut) is fetched again, and a file damaged past the pages
the checkpoint remembers is refused with a message naming it. A short file is never padded.
The ids of the last pages are kept, so an item that slid across pages is not written twice.
A resume with other filters or another format is refused. At the end the partial file is
renamed over ``path``, the directory fsynced, and the checkpoint removed.

Page-number pagination cannot see everything that changes under a long walk (items deleted
mid-walk slide onto pages already read); the report's ``total_changed`` says when to follow
up with an incremental pass (``date_from``, or ``getbill sync``).
"""

from ._checkpoint import ExportError
from ._export import CSV_COLUMNS, ExportReport, export_followups
from ._options import ExportOptions, Format, Start
from ._plan import ExportPlan, Probe, plan_export, plan_writes, simulate
from ._progress import NullProgress, Progress, make_progress
from ._sync import REJECTED, SyncReport, sync_day, sync_followups, window_start

__all__ = [
    "CSV_COLUMNS",
    "ExportError",
    "ExportOptions",
    "ExportPlan",
    "ExportReport",
    "Format",
    "NullProgress",
    "Probe",
    "Start",
    "Progress",
    "REJECTED",
    "SyncReport",
    "export_followups",
    "make_progress",
    "plan_export",
    "plan_writes",
    "simulate",
    "sync_day",
    "sync_followups",
    "window_start",
]
