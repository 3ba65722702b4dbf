"""``Sender``: what the code below the client needs of it, so that nothing there imports it.

Resources, walks, exports and bulk creates are written against this Protocol; the client
(``getbill_async._client.GetBillClient``) satisfies it, and so does any view of it made by
``with_options``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import aiohttp

from ..budget import BudgetStatus, Lane
from ._answers import Decodes
from ._request import CallStats, Request
from ._retry import RetryPolicy

__all__ = ["Sender"]

T = TypeVar("T")


class Sender(Protocol):
    """A client as the layers below it see it: one way to send, and what shapes a call."""

    timeout: float
    retry: RetryPolicy

    @property
    def lane(self) -> Lane | None:
        """The lane every call of this client (or view) goes in; None: each call's own."""
        ...

    def in_lane(self, lane: Lane) -> Sender:
        """A view whose calls go in ``lane`` (it shares everything else)."""
        ...

    def until(self, deadline: float | None) -> Sender:
        """A view whose calls end by ``deadline`` (``time.monotonic()``; None: no change)."""
        ...

    async def send(
        self, request: Request, decoder: Decodes[T], stats: CallStats | None = None
    ) -> T:
        """Send ``request`` through the pipeline and decode its answer with ``decoder``."""
        ...

    async def budget_status(self) -> BudgetStatus:
        """Reads and writes: used in the current window, remaining, when the next slot opens."""
        ...

    def http_session(self) -> aiohttp.ClientSession:
        """The aiohttp session requests go through (made on first use)."""
        ...
