"""Outbox gauges and counters through OpenTelemetry (the ``otel`` extra).

Importing this module fails without ``opentelemetry-api``; an outbox then goes without. The
instruments are made once per meter provider (the global one by default) and read every live
outbox when the provider collects; each drainer refreshes its outbox's counts about once a
second (one read of the store), so a collection never waits on the store.

- ``getbill.outbox.entries`` (gauge, ``{entry}``): entries by ``state`` (pending, in_flight,
  done, dead, held);
- ``getbill.outbox.oldest_age`` (gauge, s): the age of the oldest pending entry;
- ``getbill.outbox.merged`` (counter, ``{write}``): writes saved by merging;
- ``getbill.outbox.writes`` (counter, ``{write}``): writes this process sent, by ``op``.

Every point carries ``getbill.outbox``, the outbox's name. No field of an entry is recorded.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ._types import StoreCounts

__all__ = ["OutboxMetrics", "instruments_for"]

STATES = ("pending", "in_flight", "done", "dead", "held")
_by_provider: dict[int, _Instruments] = {}


class OutboxMetrics:
    """One outbox's share of the instruments: the counts its drainer sampled last."""

    def __init__(self, name: str, instruments: _Instruments) -> None:
        self.name = name
        self.counts: StoreCounts | None = None
        self.sampled_at = 0.0
        self._instruments = instruments
        instruments.live.add(self)

    def sample(self, counts: StoreCounts) -> None:
        """Keep ``counts`` for the next collection."""
        self.counts = counts
        self.sampled_at = time.monotonic()

    def wrote(self, op: str) -> None:
        """One write (``create`` or ``update``) sent by this process."""
        self._instruments.writes.add(1, {"getbill.outbox": self.name, "op": op})


class _Instruments:
    def __init__(self, provider: Any) -> None:
        meter = provider.get_meter("getbill_async.outbox")
        self.live: weakref.WeakSet[OutboxMetrics] = weakref.WeakSet()
        meter.create_observable_gauge(
            "getbill.outbox.entries",
            callbacks=[self._entries],
            unit="{entry}",
            description="Outbox entries by state",
        )
        meter.create_observable_gauge(
            "getbill.outbox.oldest_age",
            callbacks=[self._oldest],
            unit="s",
            description="Age of the oldest pending outbox entry",
        )
        meter.create_observable_counter(
            "getbill.outbox.merged",
            callbacks=[self._merged],
            unit="{write}",
            description="Writes saved by merging outbox entries",
        )
        self.writes = meter.create_counter(
            "getbill.outbox.writes", unit="{write}", description="Writes sent from the outbox"
        )

    def _sampled(self) -> list[tuple[str, StoreCounts]]:
        return [(m.name, m.counts) for m in list(self.live) if m.counts is not None]

    def _entries(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, counts in self._sampled():
            for state in STATES:
                attributes = {"getbill.outbox": name, "state": state}
                yield Observation(getattr(counts, state), attributes)

    def _oldest(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, counts in self._sampled():
            if counts.oldest_enqueued is not None:
                age = max(0.0, time.time() - counts.oldest_enqueued)
                yield Observation(age, {"getbill.outbox": name})

    def _merged(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, counts in self._sampled():
            yield Observation(counts.merged, {"getbill.outbox": name})


def instruments_for(name: str, provider: Any = None) -> OutboxMetrics:
    """An outbox's metrics on ``provider`` (the global meter provider by default).

    Args:
        name: the outbox's name, recorded as ``getbill.outbox``.
        provider: an OpenTelemetry ``MeterProvider``; None: the global one.

    Returns:
        The outbox's ``OutboxMetrics``.
    """
    provider = provider if provider is not None else metrics.get_meter_provider()
    instruments = _by_provider.get(id(provider))
    if instruments is None:
        instruments = _by_provider[id(provider)] = _Instruments(provider)
    return OutboxMetrics(name, instruments)
