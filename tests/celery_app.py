"""The Celery app of ``tests/test_sync_stacks.py``: a task that logs a call through the sync
outbox, as a dialer's hang-up hook would.

The client and the outbox are made once, when the worker's main process imports this module,
before it forks its pool: each pool process then uses them on its own event loop and its
own connections (and a process that replaces a killed one does too).
"""

from __future__ import annotations

import os

from celery import Celery

from getbill_async.sync import GetBillClient, Outbox

app = Celery("calls", broker=os.environ["CELERY_BROKER"])
app.conf.update(
    task_default_queue=os.environ["CELERY_QUEUE"],
    task_acks_late=True,  # a task whose process dies is delivered again...
    task_reject_on_worker_lost=True,  # ...to another process
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

client = GetBillClient(timeout=0.8)
# A short lease: entries a killed process had in flight are taken over within seconds. It
# must exceed one try's deadline + lease_margin + grace.
outbox = Outbox(client, os.environ["OUTBOX_PATH"], lease=2.0, lease_margin=0.4, grace=0.5, poll=0.1)
_opened: list[int] = []


def log_call(debt_id: str, call_id: str) -> None:
    """Store one call in the outbox; the process's drainer sends it."""
    if os.getpid() not in _opened:  # once per process: its drainer runs from then on
        outbox.open()
        _opened.append(os.getpid())
    outbox.create(debt_id=debt_id, type="call", status="in_progress", call_id=call_id)


app.task(name="log_call")(log_call)
