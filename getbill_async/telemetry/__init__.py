"""What happens on the request path, told once: the event vocabulary (``_events``), the plain
hooks a caller passes, and OpenTelemetry spans and metrics (``_otel``, with the ``otel`` extra).

The pipeline speaks to one ``EventStream``; ``event_stream`` below picks who listens. The
vocabulary knows nothing of its observers, and the OpenTelemetry observer is imported only
when ``opentelemetry-api`` is installed.
"""

from __future__ import annotations

from ..errors import ConfigurationError
from ..support import available
from ._events import AttemptInfo, CallInfo, EventStream, HookObserver, Hooks, Observer

__all__ = ["AttemptInfo", "CallInfo", "EventStream", "Hooks", "Observer", "event_stream"]


def event_stream(hooks: Hooks | None, budget: object, base_url: str) -> EventStream | None:
    """The stream for a client: its hooks, plus OpenTelemetry when the API is installed.

    Args:
        hooks: the caller's plain hooks, or None.
        budget: the client's budget (the OpenTelemetry observer reports its gauges).
        base_url: the API's base URL (spans name the server by it).

    Returns:
        The stream, or None when nobody listens (the pipeline then skips every event).

    Raises:
        ConfigurationError: ``hooks`` is not a ``Hooks``.
    """
    observers: list[Observer] = []
    if hooks is not None:
        if not isinstance(hooks, Hooks):
            raise ConfigurationError(f"hooks must be a Hooks, got {type(hooks).__name__}")
        observers.append(HookObserver(hooks))
    # Without the `otel` extra, no spans and no metrics; a broken install still raises.
    if available("opentelemetry.trace") and available("opentelemetry.metrics"):
        from ._otel import OpenTelemetryObserver

        observers.append(OpenTelemetryObserver(budget))
    return EventStream(tuple(observers), base_url) if observers else None
