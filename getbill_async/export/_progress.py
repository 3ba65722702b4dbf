"""Progress of a long job, on stderr: a live bar on a terminal, a plain line otherwise.

The ETA knows the budget: when the pages left outnumber the reads left in this window, the
job cannot go faster than the window lets it, and the ETA says so.

The budget figure a line shows is the ledger's at the moment the line is shown (the one the
client's ``budget_status()`` reads, so it agrees with any summary taken from there): the
export asks for it for every page the progress says it will show (``due``), and never shows
an older one. Slots of pages still in flight count as taken, so the figure runs ahead of the
pages written by at most the pages fetched ahead.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Protocol

from ..budget import ClassStatus

__all__ = ["LineProgress", "NullProgress", "Progress", "make_progress", "eta_seconds"]


class Progress(Protocol):
    """Where an export or a sync shows how far it got (``make_progress`` makes one)."""

    def start(self, total_pages: int, total_items: int, done_pages: int, done_items: int) -> None:
        """The run starts (or resumes).

        Args:
            total_pages: pages the server says there are.
            total_items: items the server says there are.
            done_pages: pages done before (a resume).
            done_items: items done before.
        """
        ...

    def update(self, pages: int, items: int, budget: ClassStatus | None) -> None:
        """A page was written.

        An implementation may also define ``due(pages) -> bool``, telling whether the update
        of page ``pages`` will be shown: the export then asks the budget for the pages shown
        only (and passes None for the others). Without it, the budget is asked for each page.

        Args:
            pages: the last page done.
            items: items done so far.
            budget: the read budget's status as of this page (None before it is known, or
                for a page that ``due`` said is not shown).
        """
        ...

    def finish(self) -> None:
        """The run ended."""
        ...


def eta_seconds(
    pages_left: int, pages_per_second: float, budget: ClassStatus | None
) -> tuple[float | None, bool]:
    """``(seconds, budget_bound)``: the time the network rate needs, or the budget needs,
    whichever is longer."""
    if pages_left <= 0:
        return 0.0, False
    by_rate = pages_left / pages_per_second if pages_per_second > 0 else None
    by_budget = 0.0
    if budget is not None and pages_left > budget.remaining:
        windows = math.ceil((pages_left - budget.remaining) / max(1, budget.limit))
        by_budget = budget.next_slot_in + (windows - 1) * budget.window
    if by_rate is None:
        return (by_budget or None), by_budget > 0
    if by_budget > by_rate:
        return by_budget, True
    return by_rate, False


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m:02d}:{s:02d}"


class _Base:
    def __init__(self, label: str) -> None:
        self.label = label
        self.total_pages = 0
        self.total_items = 0
        self.first_pages = 0
        self.pages = 0
        self.items = 0
        self.started = time.monotonic()
        self._due = (-1, False)  # (page, shown): the last answer of `due`

    def start(self, total_pages: int, total_items: int, done_pages: int, done_items: int) -> None:
        self.total_pages, self.total_items = total_pages, total_items
        self.first_pages = self.pages = done_pages
        self.items = done_items
        self.started = time.monotonic()

    def due(self, pages: int) -> bool:
        """Whether the update of page ``pages`` will be shown (the export asks the budget
        for those only); the answer holds for that page's ``update``."""
        self._due = (pages, self._shows(pages))
        return self._due[1]

    def _showing(self, pages: int) -> bool:
        asked, shown = self._due
        return shown if asked == pages else self._shows(pages)

    def _shows(self, pages: int) -> bool:
        return True

    def describe(self, budget: ClassStatus | None) -> str:
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = (self.pages - self.first_pages) / elapsed
        eta, bound = eta_seconds(self.total_pages - self.pages, rate, budget)
        items_rate = rate * (self.items / self.pages if self.pages else 0)
        text = (
            f"{self.label}: {self.items:,}/{self.total_items:,} items, "
            f"page {self.pages}/{self.total_pages}, {items_rate:,.0f} items/s"
        )
        if budget is not None:
            text += f", budget {budget.remaining}/{budget.limit} reads left"
        return text + f", ETA {_clock(eta)}" + (" (budget-bound)" if bound else "")


class LineProgress(_Base):
    """A plain line every ``every`` pages (for logs and pipes)."""

    def __init__(self, label: str, stream: IO[str], every: int = 50) -> None:
        super().__init__(label)
        self.stream = stream
        self.every = every

    def _shows(self, pages: int) -> bool:
        return pages % self.every == 0 or pages == self.total_pages

    def update(self, pages: int, items: int, budget: ClassStatus | None) -> None:
        self.pages, self.items = pages, items
        if self._showing(pages):
            print(self.describe(budget), file=self.stream, flush=True)

    def finish(self) -> None:
        pass


class BarProgress(_Base):
    """A live bar redrawn in place (terminals only)."""

    def __init__(self, label: str, stream: IO[str]) -> None:
        super().__init__(label)
        self.stream = stream
        self._last = 0.0

    def _shows(self, pages: int) -> bool:
        return pages == self.total_pages or time.monotonic() - self._last >= 0.1

    def update(self, pages: int, items: int, budget: ClassStatus | None) -> None:
        self.pages, self.items = pages, items
        if not self._showing(pages):
            return
        self._last = time.monotonic()
        width = 24
        done = int(width * pages / self.total_pages) if self.total_pages else width
        bar = "█" * done + "░" * (width - done)
        self.stream.write(f"\r\x1b[2K{bar} {self.describe(budget)}")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class NullProgress(_Base):
    """A progress that shows nothing (it still counts, for whoever asks)."""

    def _shows(self, pages: int) -> bool:
        return False

    def update(self, pages: int, items: int, budget: ClassStatus | None) -> None:
        """Count a page (see ``Progress.update``).

        Args:
            pages: the last page done.
            items: items done so far.
            budget: unused.
        """
        self.pages, self.items = pages, items

    def finish(self) -> None:
        pass


class RichProgress(_Base):
    """rich's live bar (when rich is installed: the ``progress`` extra)."""

    def __init__(self, label: str, stream: IO[str]) -> None:
        super().__init__(label)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._bar = Progress(
            BarColumn(bar_width=24),
            TextColumn("{task.fields[info]}"),
            console=Console(file=stream),
            transient=False,
        )
        self._task = self._bar.add_task(label, total=None, info=label)
        self._bar.start()

    def start(self, total_pages: int, total_items: int, done_pages: int, done_items: int) -> None:
        super().start(total_pages, total_items, done_pages, done_items)
        self._bar.update(self._task, total=max(1, total_pages), completed=done_pages)

    def update(self, pages: int, items: int, budget: ClassStatus | None) -> None:
        self.pages, self.items = pages, items
        self._bar.update(self._task, completed=pages, info=self.describe(budget))

    def finish(self) -> None:
        self._bar.stop()


def make_progress(label: str, *, enabled: bool = True, stream: IO[str] | None = None) -> Progress:
    """A live bar on a terminal (rich's if installed), a line per 50 pages otherwise.

    Args:
        label: what the bar is for (``export``, ``sync``).
        enabled: False gives a progress that shows nothing.
        stream: where to draw (stderr by default).

    Returns:
        The progress to pass to an export or a sync.
    """
    out = stream or sys.stderr
    if not enabled:
        return NullProgress(label)
    if out.isatty():
        try:
            return RichProgress(label, out)
        except ImportError:
            return BarProgress(label, out)
    return LineProgress(label, out)
