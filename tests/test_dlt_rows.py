"""The dlt rows' dates at the ends of the calendar: a lying server's extreme datetime is kept
as it came, never a crash of the load."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

pytest.importorskip("dlt")

from getbill_async.dlt._rows import columns_of, to_rows  # noqa: E402
from getbill_async.models import Followup  # noqa: E402


def test_a_datetime_whose_utc_instant_leaves_the_calendar_is_kept_as_it_came() -> None:
    items = [
        {"id": "f1", "call_date": "0001-01-01T00:00:00.0+01:00"},
        {"id": "f2", "scheduled_at": "9999-12-31T23:30:00-01:00"},
        {"id": "f3", "call_date": "0001-01-01T00:30:00-01:00"},
    ]
    rows = to_rows(items, columns_of(Followup))
    assert rows[0]["call_date"] == "0001-01-01T00:00:00.0+01:00"
    assert rows[1]["scheduled_at"] == "9999-12-31T23:30:00-01:00"
    assert rows[2]["call_date"] == datetime(1, 1, 1, 1, 30, tzinfo=timezone.utc)
