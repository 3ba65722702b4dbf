"""Small helpers that every layer above the models uses: input checks that name the field
(``_validate``), optional extras imported on demand (``_extras``), one async-with mixin
(``_closing``), an exclusive lock on an output file (``_lock``), and a bounded wait for an
event that never swallows a cancellation (``_waiting``)."""

from ._closing import AsyncClosing
from ._extras import available, missing_extra_class, require
from ._lock import FileLock
from ._validate import (
    build_create,
    build_update,
    check_id,
    check_int,
    fail,
    list_params,
    page_params,
)
from ._waiting import wait_event

__all__ = [
    "AsyncClosing",
    "FileLock",
    "available",
    "build_create",
    "build_update",
    "check_id",
    "check_int",
    "fail",
    "list_params",
    "missing_extra_class",
    "page_params",
    "require",
    "wait_event",
]
