"""A dlt source for GetBill: load followups and debts into any warehouse dlt can reach.

    import dlt
    from getbill_async.dlt import getbill_source

    pipeline = dlt.pipeline("getbill_load", destination="duckdb", dataset_name="getbill")
    pipeline.run(getbill_source())        # token from dlt's secrets, or GETBILL_TOKEN

Needs the ``dlt`` extra (``pip install 'getbill-async[dlt]'``); importing this module without
it raises ``MissingExtraError`` naming the extra.

Invariants:

- **One budget.** Every resource of one source, in one run, goes through one
  ``GetBillClient`` and so one budget: a ``RateLimit`` (a ledger in this process) or any
  ``Budget``, such as a ``RedisBudget`` that several pipelines share. dlt runs async resources
  on one event loop per run, which the client lives on.
- **followups** merges on ``id``. The first run loads everything; each later run fetches only
  the followups dated from ``lag_days`` before the last run's day (the rule of
  ``getbill sync``), so the merged table equals a full load for every followup dated in that
  window. Doubles within a walk are skipped by id (the walk remembers its last pages' ids), and
  doubles across runs are merged on ``id``. A walk during which the server's ``total`` moved
  may have missed an item that slid onto a page already read: such a run does not move the
  window on, so the next run fetches the same days again.
- **Lossless.** Items are loaded as the server sent them: a field the SDK does not know yet
  becomes a new column (dlt's schema evolution). Known timestamps are aware UTC datetimes;
  ``id``, ``debt_id``, ``call_id`` and ``status`` are text columns whatever their first values.
- **No secret in dlt's config traces or logs**: ``token`` and ``client_secret`` are dlt
  secrets, and the client's repr hides them.
"""

from __future__ import annotations

from getbill_async.support import require

require("dlt", extra="dlt", feature="getbill_async.dlt (the dlt source)")

from ._shared import BudgetFactory  # noqa: E402
from ._source import getbill_source  # noqa: E402

__all__ = ["BudgetFactory", "getbill_source"]
