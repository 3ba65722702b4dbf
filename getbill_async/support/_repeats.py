"""A failure that repeats, logged as news rather than as noise: the first time, then at most
once every ``every`` seconds with how many times it happened meanwhile, and its end once.

A loop that polls a store which is down (Redis restarting, a file locked by another
process) would otherwise log one warning per poll."""

from __future__ import annotations

import logging
import time

__all__ = ["RepeatedFailure"]


class RepeatedFailure:
    """``failed(exc)`` on each failure of one recurring thing, ``ok()`` on each success.

    Args:
        log: where to log.
        what: the thing, for the messages ("outbox drainer", "outbox lease renewal").
        every: seconds between two warnings while it keeps failing.
    """

    __slots__ = ("_log", "_what", "_every", "_count", "_since", "_logged")

    def __init__(self, log: logging.Logger, what: str, every: float = 60.0) -> None:
        self._log, self._what, self._every = log, what, every
        self._count = 0
        self._since = self._logged = 0.0

    @property
    def failing(self) -> bool:
        return self._count > 0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._count += 1
        if self._count == 1:
            self._since = self._logged = now
            self._log.warning("%s: %s: %s; going on", self._what, type(exc).__name__, exc)
        elif now - self._logged >= self._every:
            self._logged = now
            self._log.warning(
                "%s: still failing (%d times in %.0f s), last: %s: %s",
                self._what,
                self._count,
                now - self._since,
                type(exc).__name__,
                exc,
            )
        self._log.debug("%s failure", self._what, exc_info=exc)

    def ok(self) -> None:
        if self._count:
            self._log.warning(
                "%s: working again after %d failures in %.0f s",
                self._what,
                self._count,
                time.monotonic() - self._since,
            )
            self._count = 0
