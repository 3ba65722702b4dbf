"""Where a duplicate filter keeps its marks, as the receiver's core sees it: a claim per
event being handled, a mark per event handled. In memory (``_support``) or in Redis
(``_redis``); kept apart so that neither imports the other."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Marks", "MarksUnavailable"]


class MarksUnavailable(Exception):
    """The filter's Redis did not answer (or refused) in time: nothing is known of the event."""


class Marks(Protocol):
    """``claim`` answers ``"claimed"`` (handle it now), ``"done"`` (handled) or ``"running"``
    (being handled elsewhere: ``outcome`` waits for it); the claimant then calls ``finish``
    (handled) or ``release`` (not handled: a copy may run it)."""

    async def claim(self, digest: bytes, lease: float) -> str: ...
    async def outcome(self, digest: bytes, timeout: float) -> bool: ...
    async def finish(self, digest: bytes) -> None: ...
    async def release(self, digest: bytes) -> None: ...
    async def seen(self, digest: bytes) -> bool: ...
    async def aclose(self) -> None: ...
