"""The blocking ``Outbox``: the async outbox, its drainer running on the sync face's loop.

After ``fork()``, a child makes its own outbox from the same arguments on first use (a new
SQLite connection, or a new Redis client), opened if the parent's was: the parent's store
connections are left alone in the child, never closed or used there. A SQLite outbox is best
opened after the fork: an open one's writer thread may hold SQLite's locks as the fork
happens, which the child would then wait on.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Literal

from .. import Outbox as AsyncOutbox
from ..outbox import EntryEvent
from ..support import Closing, forks, orphan
from ._client import GetBillClient
from ._proxy import Face, blocking

__all__ = ["Outbox"]


class Outbox(Closing, Face[AsyncOutbox]):
    """Durable, merging, budget-aware followup writes, blocking: each ``create()`` or
    ``update()`` returns once the entry is stored; a drainer sends them in the background
    on the sync face's loop while the outbox is open.

        with GetBillClient() as client, Outbox(client, "outbox.db") as outbox:
            outbox.create(debt_id=debt, type="call", status="in_progress", call_id="c-81")
            outbox.update("c-81", status="deal_found")
            outbox.join()

    The same arguments as ``getbill_async.Outbox`` (``client`` is a sync ``GetBillClient``)
    and the same methods, each waiting for what the async one returns. What is left open is
    closed at interpreter exit (``close()`` with its grace).
    """

    def __init__(
        self,
        client: GetBillClient,
        store: str | os.PathLike[str],
        *,
        drain: bool = True,
        concurrency: int = 4,
        max_pending: int = 100_000,
        when_full: Literal["wait", "raise"] = "wait",
        lease: float | None = None,
        lease_margin: float = 5.0,
        grace: float = 10.0,
        retention: float = 7 * 86_400.0,
        name: str | None = None,
        poll: float = 0.5,
        on_event: Callable[[EntryEvent], None] | None = None,
        give_up_after: int | None = None,
        account: str | None = None,
    ) -> None:
        self._make = functools.partial(
            AsyncOutbox,
            client.async_client,
            store,
            drain=drain,
            concurrency=concurrency,
            max_pending=max_pending,
            when_full=when_full,
            lease=lease,
            lease_margin=lease_margin,
            grace=grace,
            retention=retention,
            name=name,
            poll=poll,
            on_event=on_event,
            give_up_after=give_up_after,
            account=account,
        )
        self._outbox = self._make()
        self._born = forks()
        self._opened = False
        self._portal = client._portal

    @property
    def _target(self) -> AsyncOutbox:
        if self._born != forks():
            self._in_child()
        return self._outbox

    @_target.setter
    def _target(self, outbox: AsyncOutbox) -> None:
        self._outbox = outbox

    def _in_child(self) -> None:
        orphan(self._outbox)
        self._outbox, self._born = self._make(), forks()
        if self._opened:
            self._opened = False
            self.open()

    @property
    def owner(self) -> str:
        """This process's name in the store's leases (host, pid, a random part)."""
        return self._target.owner

    def open(self) -> None:
        """Open the store and start draining (``with`` does it)."""
        self._portal.run(self._target.open())
        self._opened = True
        self._portal.keep(self, self._outbox.close, background=True)

    def close(self, grace: float | None = None) -> None:
        """Stop claiming, wait up to ``grace`` seconds (None: the outbox's own) for the
        writes in flight, cancel the rest, close."""
        self._portal.release(self)
        self._opened = False
        self._portal.run(self._target.close(grace))

    create = blocking(AsyncOutbox.create)
    update = blocking(AsyncOutbox.update)
    create_tagged = blocking(AsyncOutbox.create_tagged)
    tagged = blocking(AsyncOutbox.tagged)
    reclaim = blocking(AsyncOutbox.reclaim)
    status = blocking(AsyncOutbox.status)
    join = blocking(AsyncOutbox.join)
    dead = blocking(AsyncOutbox.dead)
    requeue = blocking(AsyncOutbox.requeue)
    verify = blocking(AsyncOutbox.verify)
    plan_verify = blocking(AsyncOutbox.plan_verify)
    last_verify = blocking(AsyncOutbox.last_verify)

    def __enter__(self) -> Outbox:
        self.open()
        return self

    def __repr__(self) -> str:
        return f"sync.{self._outbox!r}"
