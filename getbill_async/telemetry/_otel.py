"""OpenTelemetry spans and metrics from the pipeline's events (the ``otel`` extra).

Importing this module fails without ``opentelemetry-api``; the client then goes without. It
emits through the global providers, so an application that configures the OpenTelemetry SDK
gets the SDK's spans and metrics (within a second of configuring it, for clients made
before), and one that does not pays one clock reading per call.

Spans, after the HTTP client semantic conventions:

- ``getbill {method} {url.template}`` (INTERNAL): one logical call, its tries as children;
  ``getbill.budget.wait`` (seconds), ``getbill.lane``, ``getbill.attempts``, an event per wait.
- ``{method} {url.template}`` (CLIENT), one per try: ``http.request.method``,
  ``server.address``, ``server.port``, ``url.template``, ``url.full`` (without the query
  string), ``http.response.status_code``, ``error.type``, ``http.request.resend_count`` on
  retries.

Metrics: ``http.client.request.duration`` (s) and ``getbill.budget.wait`` (s), histograms;
``getbill.retries``, ``getbill.rate_limited`` (429 answers), ``getbill.ambiguous_writes``,
counters; ``getbill.budget.used`` and ``getbill.budget.remaining``, gauges per class. No
token, secret, body or presigned URL goes into any of them: media downloads do not pass here.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from .._constants import USER_AGENT
from ..budget import parse_headers
from ._events import AttemptInfo, CallInfo, Observer

__all__ = ["OpenTelemetryObserver"]

_SCOPE = "getbill_async"
_VERSION = USER_AGENT.partition("/")[2]
# The semantic conventions' advice for http.client.request.duration.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_SAMPLE_EVERY = 1.0  # seconds between two readings of a budget for the gauges
# Seconds between two looks at the global providers while none is configured: reading them
# costs about 2 us, a hundredth of the pipeline's own work, so it is not done per call.
_RECHECK_EVERY = 1.0
_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def _noop(provider: object) -> bool:
    """Whether a global provider drops everything (none configured, or a no-op one)."""
    return isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)) or type(
        provider
    ).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider")


def _histogram(
    meter: metrics.Meter, name: str, description: str, buckets: tuple[float, ...]
) -> metrics.Histogram:
    """A histogram in seconds, with the bucket advice where the API takes it.

    opentelemetry-api before 1.30 has no ``explicit_bucket_boundaries_advisory`` on the proxy
    meter that ``get_meter`` returns before a provider is set (1.27-1.29 raise ``TypeError``):
    there the histogram is made without the advice, and a ``View`` can still set the buckets.
    """
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
    except TypeError:
        return meter.create_histogram(name, unit="s", description=description)


class _Instruments:
    """One set of instruments per process: every client's observer records into it."""

    def __init__(self) -> None:
        meter = metrics.get_meter(_SCOPE, _VERSION)
        self.duration = _histogram(
            meter,
            "http.client.request.duration",
            "Duration of HTTP client requests.",
            _DURATION_BUCKETS,
        )
        self.budget_wait = _histogram(
            meter,
            "getbill.budget.wait",
            "Time a request waited for a budget slot, by class and lane.",
            _WAIT_BUCKETS,
        )
        self.retries = meter.create_counter(
            "getbill.retries", unit="{retry}", description="Tries sent again after a failure."
        )
        self.rate_limited = meter.create_counter(
            "getbill.rate_limited", unit="{response}", description="Answers 429 from the API."
        )
        self.ambiguous = meter.create_counter(
            "getbill.ambiguous_writes",
            unit="{write}",
            description="Writes that may or may not have happened (AmbiguousWriteError).",
        )
        self.observers: weakref.WeakSet[OpenTelemetryObserver] = weakref.WeakSet()
        meter.create_observable_gauge(
            "getbill.budget.used",
            callbacks=[self._observe_used],
            unit="{request}",
            description="Slots taken in the current window, per class.",
        )
        meter.create_observable_gauge(
            "getbill.budget.remaining",
            callbacks=[self._observe_remaining],
            unit="{request}",
            description="Slots left in the current window, per class.",
        )

    def _views(self, index: int) -> list[Observation]:
        """One observation per budget and class (clients sharing a budget report it once)."""
        seen: dict[tuple[int, str], Observation] = {}
        for observer in list(self.observers):
            for kind, view in list(observer.budget_view.items()):
                attributes = {"getbill.budget.class": kind, **observer.server}
                seen[(id(observer.budget), kind)] = Observation(view[index], attributes)
        return list(seen.values())

    def _observe_used(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._views(0)

    def _observe_remaining(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._views(1)


_instruments: _Instruments | None = None


class OpenTelemetryObserver(Observer):
    """Spans and metrics for one client's calls, through the global providers."""

    def __init__(self, budget: object) -> None:
        global _instruments
        if _instruments is None:
            _instruments = _Instruments()
        self.instruments = _instruments
        self.instruments.observers.add(self)
        self.tracer = trace.get_tracer(_SCOPE, _VERSION)
        self.budget = budget
        self.budget_view: dict[str, tuple[int, int]] = {}
        self.server: dict[str, Any] = {}
        self._sampled = 0.0
        self._live = False
        self._recheck_at = 0.0

    def listening(self) -> bool:
        """Whether an OpenTelemetry SDK is configured (a global provider, once set, stays)."""
        if self._live:
            return True
        now = time.monotonic()
        if now < self._recheck_at:
            return False
        self._recheck_at = now + _RECHECK_EVERY
        tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
        self._live = not (_noop(tracer_provider) and _noop(meter_provider))
        return self._live

    def call_started(self, call: CallInfo) -> None:
        call.state = self.tracer.start_span(
            f"getbill {call.name}",
            kind=trace.SpanKind.INTERNAL,
            attributes=_template(
                {
                    "http.request.method": _method(call.method),
                    "getbill.budget.class": call.kind,
                    "getbill.lane": call.lane,
                },
                call,
            ),
        )

    def budget_waited(self, call: CallInfo, seconds: float) -> None:
        self.instruments.budget_wait.record(
            seconds, _server({"getbill.budget.class": call.kind, "getbill.lane": call.lane}, call)
        )
        span = call.state
        if span is not None and seconds > 0:
            span.add_event(
                "getbill.budget_wait", {"getbill.budget.wait": seconds, "getbill.lane": call.lane}
            )

    def attempt_started(self, attempt: AttemptInfo) -> None:
        call = attempt.call
        attributes = _template(
            {
                "http.request.method": _method(call.method),
                "server.address": call.server_address,
                "server.port": call.server_port,
                "url.full": call.url,
            },
            call,
        )
        if attempt.resend_count:
            attributes["http.request.resend_count"] = attempt.resend_count
        parent = trace.set_span_in_context(call.state) if call.state is not None else None
        attempt.state = self.tracer.start_span(
            call.name, context=parent, kind=trace.SpanKind.CLIENT, attributes=attributes
        )

    def attempt_ended(self, attempt: AttemptInfo, headers: Mapping[str, str] | None) -> None:
        call = attempt.call
        attributes = _template(
            {
                "http.request.method": _method(call.method),
                "server.address": call.server_address,
                "server.port": call.server_port,
            },
            call,
        )
        if attempt.status is not None:
            attributes["http.response.status_code"] = attempt.status
        if attempt.error_type is not None:
            attributes["error.type"] = attempt.error_type
        span = attempt.state
        if span is not None:
            span.set_attributes(attributes)
            if attempt.error_type is not None:
                span.set_status(trace.StatusCode.ERROR)
            span.end()
        self.instruments.duration.record(attempt.duration, attributes)
        if attempt.status == 429:
            self.instruments.rate_limited.add(1, _server({"getbill.budget.class": call.kind}, call))
        self._sample_budget(call, headers)

    def retrying(self, attempt: AttemptInfo, wait: float) -> None:
        call = attempt.call
        attributes = _server(_template({"http.request.method": _method(call.method)}, call), call)
        if attempt.error_type is not None:
            attributes["error.type"] = attempt.error_type
        self.instruments.retries.add(1, attributes)

    def ambiguous_write(self, call: CallInfo, error: BaseException) -> None:
        attributes = _server(_template({"http.request.method": _method(call.method)}, call), call)
        self.instruments.ambiguous.add(1, attributes)
        if call.state is not None:
            call.state.add_event("getbill.ambiguous_write", {"error.type": type(error).__name__})

    def call_ended(self, call: CallInfo, error: BaseException | None) -> None:
        span = call.state
        if span is None:
            return
        span.set_attributes(
            {"getbill.budget.wait": call.budget_wait, "getbill.attempts": call.attempts}
        )
        if error is not None:
            span.set_attribute("error.type", _error_name(error))
            span.set_status(trace.StatusCode.ERROR)
        span.end()

    def _sample_budget(self, call: CallInfo, headers: Mapping[str, str] | None) -> None:
        """Refresh the gauges' view of the budget, at most once a second."""
        now = time.monotonic()
        if now - self._sampled < _SAMPLE_EVERY:
            return
        self._sampled = now
        self.server = {"server.address": call.server_address, "server.port": call.server_port}
        snapshot = getattr(self.budget, "snapshot", None)
        if callable(snapshot):
            status = snapshot()
            for name, of_class in (("read", status.reads), ("write", status.writes)):
                self.budget_view[name] = (of_class.used, of_class.remaining)
            return
        # A budget that cannot be read without I/O (Redis): the server's own count.
        limit, remaining, _ = parse_headers(headers)
        if limit is not None and remaining is not None:
            self.budget_view[call.kind] = (max(limit - remaining, 0), remaining)


def _method(method: str) -> str:
    return method if method in _KNOWN_METHODS else "_OTHER"


def _template(attributes: dict[str, Any], call: CallInfo) -> dict[str, Any]:
    if call.url_template:
        attributes["url.template"] = call.url_template
    return attributes


def _server(attributes: dict[str, Any], call: CallInfo) -> dict[str, Any]:
    attributes["server.address"] = call.server_address
    attributes["server.port"] = call.server_port
    return attributes


def _error_name(error: BaseException) -> str:
    status = getattr(error, "status", None)
    return str(status) if isinstance(status, int) and status >= 400 else type(error).__name__
