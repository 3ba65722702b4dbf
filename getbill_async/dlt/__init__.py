"""A dlt source for GetBill: load followups and debts into any warehouse dlt can reach.

    import dlt
    from getbill_async.dlt import getbill_source

    pipeline = dlt.pipeline("getbill_load", destination="duckdb", dataset_name="getbill")
    pipeline.run(getbill_source())        # token from dlt's secrets, or GETBILL_TOKEN

Needs the ``dlt`` extra (``pip install 'getbill-async[dlt]'``); importing this module without
it raises ``MissingExtraError`` naming the extra.

Invariants:

- **One budget.** Every resource of one source, in one run, goes through one
  ``GetBillClient`` and so one budget: a ``RateLimit`` (a ledger in this process) or what a
  ``BudgetFactory`` makes for the run, such as a ``RedisBudget`` that several pipelines
  share. dlt runs async resources on one event loop per run, which the client lives on; a
  ``Budget`` instance, bound to the first run's loop, is refused at once.
- **Credentials** resolve through ``getbill_async.transport.resolve_credentials``, the rule
  ``GetBillClient`` and the ``getbill`` command follow: a client secret goes to the
  configured ``token_url`` (``GETBILL_TOKEN_URL``), or else to ``/token`` on the host of
  ``base_url``, never elsewhere.
- **followups** merges on ``id``. The first run loads everything; each later run fetches only
  the followups dated from ``lag_days`` before the last run's day (the rule of
  ``getbill sync``), so the merged table equals a full load for every followup dated in that
  window. Doubles within a walk are skipped by id (the walk remembers its last pages' ids), and
  doubles across runs are merged on ``id``. The walk's reads overlap
  (``transport.walk_overlapping``), which proves that no followup slid past it; only a proved
  walk moves the window on (calls logged at the list's head during the walk do not break
  the proof), else the next run fetches the same days again.
- **Sweeps.** With ``full_every=N``, a run N days after the last sweep reads every followup
  (its cost in reads logged first: ``plan_sweep``) and, if its walk was proved, loads each id
  the warehouse holds but the server no longer lists as a row with ``deleted_on_server``,
  dlt's ``hard_delete`` hint: the merge deletes it.
- **Lossless.** Items are loaded as the server sent them: a field the SDK does not know yet
  becomes a new column (dlt's schema evolution). Known timestamps are aware UTC datetimes;
  ``id``, ``debt_id``, ``call_id`` and ``status`` are text columns whatever their first values.
- **No secret in dlt's config traces or logs**: ``token`` and ``client_secret`` are dlt
  secrets, and the client's repr hides them.
"""

from __future__ import annotations

from getbill_async.support import require

require("dlt", extra="dlt", feature="getbill_async.dlt (the dlt source)")

from ._followups import plan_sweep  # noqa: E402
from ._shared import BudgetFactory  # noqa: E402
from ._source import getbill_source  # noqa: E402

__all__ = ["BudgetFactory", "getbill_source", "plan_sweep"]
