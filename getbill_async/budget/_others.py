"""What the server's counts say about other programs' requests: a bound, never a guess.

An answer's ``X-RateLimit-Remaining`` is the server's count at the request's *arrival*, some
moment between its send and its answer. Part of that count is ours, the rest another
program's (or a request of ours whose answer was lost). Which of our requests the server had
counted is not known: one in flight may not have arrived yet, and one answered long ago may
have left the window already. A rule that counts such a request as seen lets another
program's request, which may be brand new, pass for it (``tests/test_budget_window_model.py``
holds the counterexamples).

The bound kept here assumes only what must hold. Take the answered reading whose arrival was
the latest (which one that is is not known, so every candidate is tried). Every request of ours
answered so far arrived before it, so each one sent less than a window before that reading's
answer (and not at its very instant) is surely in its count; the rest of its count may be other
programs', and they free a window after that answer at the latest. Any other program's request
still in the server's window was counted by that latest reading, so the largest such remainder
over the candidates bounds them all. A reading stops being a candidate once a request sent
after its answer has been answered (that one arrived later), or once its window has passed.

So a request of ours still in flight when a reading came stands for another program's only
until it is answered itself, not for a whole window.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque

__all__ = ["Readings"]


class Readings:
    """Counts the server reported, and the send times of our answered requests."""

    __slots__ = ("_sends", "_readings")

    def __init__(self) -> None:
        # Send times of our requests that got an answer, ascending.
        self._sends: list[float] = []
        # (answered at, ours from: sent after this, frees at, the server's count), in the
        # order answered.
        self._readings: deque[tuple[float, float, float, int]] = deque()

    def __bool__(self) -> bool:
        return bool(self._readings)

    def answered(self, sent: float) -> None:
        """One of our requests, sent at ``sent``, got an answer: the server counted it."""
        sends = self._sends
        if not sends or sent >= sends[-1]:
            sends.append(sent)
        else:
            insort(sends, sent)

    def read(self, now: float, sent: float, counted: int, window: float) -> None:
        """A request sent at ``sent`` and answered ``now`` found ``counted`` in the window."""
        readings = self._readings
        while readings and readings[0][0] < sent:
            readings.popleft()  # answered before this one was sent: it arrived later
        if not now - window < sent < now:
            counted -= 1  # itself, counted for sure, though its send time cannot tell so
        readings.append((now, now - window, now + window, counted))

    def shorten(self, latest: float) -> None:
        """The window shrank: every request counted so far frees by ``latest``."""
        self._readings = deque(
            (answered, since, min(frees, latest), counted)
            for answered, since, frees, counted in self._readings
        )

    def forget(self, before: float) -> None:
        """Drop send times at or before ``before``: no reading left or to come looks so far
        back (forgetting one too soon only makes the bound larger, never smaller)."""
        sends = self._sends
        if sends and sends[0] <= before:
            del sends[: bisect_right(sends, before)]

    def steps(self, now: float) -> list[tuple[float, int]]:
        """Per candidate reading still in its window: when it frees, and how many of its
        count may be other programs' requests (only those above zero)."""
        readings, sends = self._readings, self._sends
        while readings and readings[0][2] <= now:
            readings.popleft()
        found = []
        for answered, since, frees, counted in readings:
            if frees > now:
                # Ours sent inside its window and before its answer (one sent at that very
                # instant may have arrived just after it).
                others = counted - (bisect_left(sends, answered) - bisect_right(sends, since))
                if others > 0:
                    found.append((frees, others))
        return found

    def bound(self, now: float) -> int:
        """Other programs' requests that may be in the server's window now."""
        if not self._readings:
            return 0
        return max((others for _, others in self.steps(now)), default=0)
