"""The pipeline's event stream: one set of events feeds the plain hooks and OpenTelemetry.

The pipeline reports a call's life (started, budget wait, each try started and ended, retry,
ambiguous write, ended) to an ``EventStream``, which hands each event to its observers: the
``Hooks`` a user gave, and the OpenTelemetry observer when ``opentelemetry-api`` is installed.
When no observer listens, the pipeline skips the stream for the whole call: one check per call.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from yarl import URL

from .._constants import LOGGER_NAME
from ..errors import APIError, ConfigurationError

__all__ = [
    "AttemptInfo",
    "CallInfo",
    "EventStream",
    "HookObserver",
    "Hooks",
    "Observer",
    "error_type",
]

log = logging.getLogger(LOGGER_NAME)


class CallInfo:
    """One logical call (all its tries), as hooks see it: read it, do not change it.

    Attributes:
        method: the HTTP method.
        url_template: the path with placeholders (``/followups/{id}``).
        path: the path sent, without the query string.
        url: the whole URL, without the query string.
        kind: the budget class, ``"read"`` or ``"write"``.
        lane: the budget lane, ``"interactive"`` or ``"bulk"``.
        budget_wait: the seconds its tries waited for a budget slot, added up.
        attempts: the tries so far.
    """

    __slots__ = (
        "_observers",
        "attempts",
        "budget_wait",
        "last",
        "kind",
        "lane",
        "method",
        "path",
        "server_address",
        "server_port",
        "started",
        "state",
        "url",
        "url_template",
    )

    def __init__(
        self,
        method: str,
        url_template: str | None,
        path: str,
        kind: str,
        lane: str,
        origin: tuple[str, str, int],
    ) -> None:
        self.method = method
        self.url_template = url_template
        self.path = path
        self.kind = kind
        self.lane = lane
        base_url, self.server_address, self.server_port = origin
        self.url = base_url + path
        self.started = time.monotonic()
        self.budget_wait = 0.0
        self.attempts = 0
        self.last: AttemptInfo | None = None  # the try under way, or the last one
        self.state: Any = None  # the OpenTelemetry observer's span
        self._observers: tuple[Observer, ...] = ()

    @property
    def name(self) -> str:
        """``{method} {url_template}``, or the method alone without a template (never an id)."""
        template = self.url_template
        return f"{self.method} {template}" if template else self.method

    def __repr__(self) -> str:
        return f"CallInfo({self.name!r}, kind={self.kind!r}, lane={self.lane!r})"


class AttemptInfo:
    """One try of a call, as hooks see it: read it, do not change it.

    Attributes:
        call: the call it belongs to.
        resend_count: 0 for the first try, 1 for the first retry...
        status: the answer's status, after the try (None when no answer came).
        error_type: after the try, the status as a string for an error answer, else the
            exception's class name (None on success).
        duration: after the try, its seconds.
        rate_limit: the answer's ``X-RateLimit-*`` headers, during ``on_response``.
    """

    __slots__ = (
        "_headers",
        "call",
        "duration",
        "ended",
        "error_type",
        "resend_count",
        "started",
        "state",
        "status",
    )

    def __init__(self, call: CallInfo, resend_count: int) -> None:
        self.call = call
        self.resend_count = resend_count
        self.started = time.monotonic()
        self.duration = 0.0
        self.status: int | None = None
        self.error_type: str | None = None
        self.ended = False
        self.state: Any = None
        self._headers: Mapping[str, str] | None = None

    def answered(self, status: int, headers: Mapping[str, str]) -> None:
        """The pipeline's note that an answer came (its body may still fail to arrive).

        Args:
            status: the answer's status.
            headers: its headers (kept only until the try's end has been reported).
        """
        self.status = status
        self._headers = headers

    @property
    def rate_limit(self) -> dict[str, str]:
        """The answer's ``X-RateLimit-*`` headers, for ``Hooks.on_response`` (empty before an
        answer, and once the hooks of the try's end have run: headers are not kept past them)."""
        headers = self._headers or {}
        return {k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}

    def __repr__(self) -> str:
        return (
            f"AttemptInfo({self.call.name!r}, resend_count={self.resend_count}, "
            f"status={self.status}, error_type={self.error_type!r})"
        )


def error_type(status: int | None, error: BaseException | None) -> str | None:
    """What a failed try is called: the status for an error answer, else the exception's class."""
    if status is not None and status >= 400:
        return str(status)
    if error is None:
        return None
    if isinstance(error, APIError) and error.status is not None and error.status >= 400:
        return str(error.status)
    return type(error).__name__


class Observer:
    """Receives the pipeline's events; every method does nothing unless overridden."""

    def listening(self) -> bool:
        """Whether this observer wants the events of a call starting now."""
        return True

    def call_started(self, call: CallInfo) -> None: ...
    def budget_waited(self, call: CallInfo, seconds: float) -> None: ...
    def attempt_started(self, attempt: AttemptInfo) -> None: ...
    def attempt_ended(self, attempt: AttemptInfo, headers: Mapping[str, str] | None) -> None: ...
    def retrying(self, attempt: AttemptInfo, wait: float) -> None: ...
    def ambiguous_write(self, call: CallInfo, error: BaseException) -> None: ...
    def call_ended(self, call: CallInfo, error: BaseException | None) -> None: ...


@dataclass(frozen=True)
class Hooks:
    """Plain functions the client calls as its requests go, for those without OpenTelemetry.

        hooks = Hooks(on_response=lambda a: print(a.call.name, a.status, f"{a.duration:.3f}s"))
        client = GetBillClient(token, hooks=hooks)

    Attributes:
        on_request: ``(attempt)``: a try is about to be sent (after its budget slot).
        on_response: ``(attempt)``: a try ended: ``attempt.status``, ``error_type``,
            ``duration``, and ``attempt.rate_limit`` (the answer's ``X-RateLimit-*``).
        on_retry: ``(attempt, wait)``: ``attempt`` failed and is tried again in ``wait`` s.
        on_budget_wait: ``(call, seconds)``: a try waited that long for a budget slot.
        on_ambiguous_write: ``(call, error)``: a write may or may not have happened.

    They are called inline, on the event loop, in the request's task: keep them quick and
    non-blocking (hand slow work to a queue or a task). Coroutine functions are refused. A hook
    that raises is logged on ``getbill_async`` and never fails the request. No token, secret or
    request body is ever handed to a hook.
    """

    on_request: Callable[[AttemptInfo], object] | None = None
    on_response: Callable[[AttemptInfo], object] | None = None
    on_retry: Callable[[AttemptInfo, float], object] | None = None
    on_budget_wait: Callable[[CallInfo, float], object] | None = None
    on_ambiguous_write: Callable[[CallInfo, BaseException], object] | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            hook = getattr(self, spec.name)
            if hook is None:
                continue
            if not callable(hook):
                raise ConfigurationError(
                    f"Hooks.{spec.name} must be a function, got {type(hook).__name__}"
                )
            if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
                getattr(hook, "__call__", None)  # noqa: B004 - an async __call__ counts too
            ):
                raise ConfigurationError(
                    f"Hooks.{spec.name} must be a plain function (hooks run inline on the "
                    "request path); from an async one, schedule a task with "
                    "asyncio.get_running_loop().create_task(...)"
                )


class HookObserver(Observer):
    """Hands the events that ``Hooks`` names to the user's functions."""

    __slots__ = ("hooks",)

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks

    def _call(self, name: str, hook: Callable[..., object], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            log.exception("the %s hook raised; the request goes on", name)

    def budget_waited(self, call: CallInfo, seconds: float) -> None:
        if self.hooks.on_budget_wait is not None and seconds > 0:
            self._call("on_budget_wait", self.hooks.on_budget_wait, call, seconds)

    def attempt_started(self, attempt: AttemptInfo) -> None:
        if self.hooks.on_request is not None:
            self._call("on_request", self.hooks.on_request, attempt)

    def attempt_ended(self, attempt: AttemptInfo, headers: Mapping[str, str] | None) -> None:
        if self.hooks.on_response is not None:
            self._call("on_response", self.hooks.on_response, attempt)

    def retrying(self, attempt: AttemptInfo, wait: float) -> None:
        if self.hooks.on_retry is not None:
            self._call("on_retry", self.hooks.on_retry, attempt, wait)

    def ambiguous_write(self, call: CallInfo, error: BaseException) -> None:
        if self.hooks.on_ambiguous_write is not None:
            self._call("on_ambiguous_write", self.hooks.on_ambiguous_write, call, error)


class EventStream:
    """The observers of one client's pipeline, and the calls it makes to them.

    ``start_call`` returns None when nobody listens; the pipeline then skips every other
    event of that call.
    """

    __slots__ = ("observers", "origin")

    def __init__(self, observers: tuple[Observer, ...], base_url: str) -> None:
        self.observers = observers
        url = URL(base_url)
        self.origin = (base_url.rstrip("/"), url.host or "", url.port or 0)

    def start_call(
        self, method: str, url_template: str | None, path: str, kind: str, lane: str
    ) -> CallInfo | None:
        listening = tuple([o for o in self.observers if o.listening()])
        if not listening:
            return None
        call = CallInfo(method, url_template, path, kind, lane, self.origin)
        # The observers of a call are fixed when it starts: none sees half a call.
        call._observers = listening
        for observer in listening:
            _guard(observer.call_started, call)
        return call

    @staticmethod
    def budget_waited(call: CallInfo, seconds: float) -> None:
        call.budget_wait += seconds
        for observer in call._observers:
            _guard(observer.budget_waited, call, seconds)

    @staticmethod
    def start_attempt(call: CallInfo) -> AttemptInfo:
        attempt = call.last = AttemptInfo(call, call.attempts)
        call.attempts += 1
        for observer in call._observers:
            _guard(observer.attempt_started, attempt)
        return attempt

    @staticmethod
    def end_attempt(attempt: AttemptInfo, error: BaseException | None) -> None:
        """The try ended: with an answer recorded by ``answered`` or not, ``error`` or not."""
        attempt.duration = time.monotonic() - attempt.started
        attempt.ended = True
        attempt.error_type = error_type(attempt.status, error)
        headers = attempt._headers
        for observer in attempt.call._observers:
            _guard(observer.attempt_ended, attempt, headers)
        attempt._headers = None  # not kept past the observers

    @staticmethod
    def retrying(attempt: AttemptInfo, wait: float) -> None:
        for observer in attempt.call._observers:
            _guard(observer.retrying, attempt, wait)

    @staticmethod
    def ambiguous_write(call: CallInfo, error: BaseException) -> None:
        for observer in call._observers:
            _guard(observer.ambiguous_write, call, error)

    @staticmethod
    def end_call(call: CallInfo, error: BaseException | None) -> None:
        for observer in call._observers:
            _guard(observer.call_ended, call, error)


def _guard(method: Callable[..., None], *args: Any) -> None:
    """An observer's failure is logged, never raised into a request."""
    try:
        method(*args)
    except Exception:
        log.exception("a telemetry observer failed; the request goes on")
