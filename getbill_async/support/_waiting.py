"""Waiting for an event with a bound, safely: ``wait_event``."""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever comes first.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that lands as the
    event is set, and a caller looping on it (``Outbox.join``, a budget waiting for a slot)
    would then never end.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
