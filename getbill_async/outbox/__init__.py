"""The outbox: durable, merging, budget-aware followup writes for a service.

A service enqueues creates and updates; each call returns once the entry is on disk (SQLite
WAL with ``synchronous=FULL``, group-committed) or in Redis; a drainer sends them in the bulk
lane under the write budget, merging what can be merged, reconciling after a crash, and
keeping what the API refuses as dead letters. See the guide "Logging from a service".

    async with GetBillClient() as client, Outbox(client, "outbox.db") as outbox:
        await outbox.create(debt_id=debt, type="call", status="in_progress", call_id="c-81")
        await outbox.update("c-81", status="deal_found")
        await outbox.join()
"""

from ._cli import add_account_argument, add_parser, run
from ._outbox import Outbox
from ._types import DeadEntry, EntryEvent, OutboxFullError, OutboxStatus, OutboxStoreError
from ._verify_cli import print_report
from ._verify_plan import VerifyPlan
from ._verify_types import DeliveryFinding, DeliveryReport

__all__ = [
    "DeadEntry",
    "DeliveryFinding",
    "DeliveryReport",
    "EntryEvent",
    "Outbox",
    "OutboxFullError",
    "OutboxStatus",
    "OutboxStoreError",
    "VerifyPlan",
    "add_account_argument",
    "add_parser",
    "print_report",
    "run",
]
