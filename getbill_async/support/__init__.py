"""Small helpers that every layer above the models uses: input checks that name the field
(``_validate``), optional extras imported on demand (``_extras``), one async-with mixin
(``_closing``), an exclusive lock on an output file (``_lock``), a bounded wait for an event
that never swallows a cancellation (``_waiting``), a failure that repeats logged as news
rather than noise (``_repeats``), and where loop-bound parts live (``_home``:
the process after ``fork()``, the running event loop)."""

from ._closing import AsyncClosing, Closing
from ._extras import available, missing_extra_class, require
from ._home import Home, at_loop_end, forks, home, in_child, orphan
from ._lock import FileLock, names_file
from ._repeats import RepeatedFailure
from ._urls import check_url
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
    "Closing",
    "FileLock",
    "Home",
    "RepeatedFailure",
    "at_loop_end",
    "available",
    "build_create",
    "build_update",
    "check_id",
    "check_int",
    "check_url",
    "fail",
    "forks",
    "home",
    "in_child",
    "list_params",
    "missing_extra_class",
    "names_file",
    "orphan",
    "page_params",
    "require",
    "wait_event",
]
