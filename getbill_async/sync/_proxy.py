"""The generic layer: an async object's methods, blocking, with their own types.

A sync class names the async methods it offers, one line each, and nothing else::

    class Debts(Face[AsyncDebts]):
        get = blocking(AsyncDebts.get)  # (debt_id: str) -> Debt, waiting
        iterate = walking(AsyncDebts.iterate)  # (...) -> Walk[Debt], a plain iterator

``blocking``, ``walking`` and ``batching`` take the async method itself, so its parameters
(a ``ParamSpec``) and its result type reach the type checker unchanged: a sync signature
cannot drift from the async one, and no method body is written twice. At run time a method
is looked up on the async object (``_target``) and its coroutine handed to the portal.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from ..bulk import CreateBatch, CreateResult
from ..support import Closing
from ..transport import ItemWalk, WalkStats
from ._portal import Portal

__all__ = ["Batch", "Face", "Method", "Walk", "batching", "blocking", "walking"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
_It = TypeVar("_It", bound="_Iterating[Any]")
A = TypeVar("A")
_END: Any = object()


class Face(Generic[A]):
    """A sync object in front of an async one (``_target``), whose work runs on ``_portal``."""

    _target: A

    def __init__(self, target: A, portal: Portal) -> None:
        self._target = target
        self._portal = portal


class Method(Generic[P, R]):
    """A descriptor: on a ``Face``, the async method of the same name, adapted by ``adapt``
    (blocking on its coroutine, or wrapping its walk). The callable made on first access is
    kept in the instance, so later calls cost one attribute lookup."""

    def __init__(self, name: str, adapt: Callable[[Face[Any], Any], R]) -> None:
        self._name = name
        self._adapt = adapt

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self._name:
            raise TypeError(f"{owner.__name__}.{name} must wrap the async {name}, not {self._name}")

    @overload
    def __get__(self, face: None, owner: type | None = None) -> Method[P, R]: ...
    @overload
    def __get__(self, face: Face[Any], owner: type | None = None) -> Callable[P, R]: ...
    def __get__(
        self, face: Face[Any] | None, owner: type | None = None
    ) -> Method[P, R] | Callable[P, R]:
        if face is None:
            return self
        name = self._name
        # A blocking method hands its coroutine to the portal's ``run`` itself: one step
        # less per call, where every step counts (see ``Portal.run``).
        finish: Callable[[Any], R] = (
            face._portal.run if self._adapt is _run else functools.partial(self._adapt, face)
        )

        # The async method is looked up at each call: a face may change its target (an
        # outbox in a child after fork()).
        @functools.wraps(getattr(face._target, name))
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return finish(getattr(face._target, name)(*args, **kwargs))

        face.__dict__[name] = call
        return call


def _run(face: Face[Any], coro: Coroutine[Any, Any, Any]) -> Any:
    return face._portal.run(coro)


def blocking(method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> Method[P, R]:
    """The async ``method``, blocking: same parameters, and what the coroutine returns."""
    return Method(method.__name__, _run)


class AsyncWalk(Protocol[T_co]):
    """What ``walking`` wraps: ``PageWalk`` and ``ItemWalk``."""

    def __aiter__(self) -> AsyncIterator[T_co]: ...

    async def aclose(self) -> None: ...

    @property
    def stats(self) -> WalkStats: ...


class _Iterating(Closing, Generic[T]):
    """A plain iterator over an async one whose steps run on the portal's loop. Leaving
    ``with`` (or ``close()``) closes what is in flight; a dropped one is closed in the
    background."""

    def __init__(self, target: Any, portal: Portal) -> None:
        self._target = target
        self._portal = portal
        self._steps: AsyncIterator[Any] | None = None
        self._buffer: Iterator[T] = iter(())
        self._closed = False

    def __iter__(self: _It) -> _It:
        return self

    def __next__(self) -> T:
        item = next(self._buffer, _END)
        if item is not _END:
            return cast(T, item)
        if self._closed:
            raise StopIteration
        if self._steps is None:
            self._steps = self._start()
        item = self._portal.run(_step(self._steps))
        if item is _END:
            self._closed = True
            raise StopIteration
        return self._unpack(item)

    def _start(self) -> AsyncIterator[Any]:
        return cast(AsyncIterator[Any], self._target.__aiter__())

    def _unpack(self, item: Any) -> T:
        return cast(T, item)

    def close(self) -> None:
        """Stop: cancel what is in flight (safe to call twice)."""
        self._closed = True
        self._portal.run(self._target.aclose())

    def __del__(self) -> None:
        if getattr(self, "_steps", None) is not None and not self._closed:
            self._portal.spawn(self._target.aclose())


async def _step(steps: AsyncIterator[Any]) -> Any:
    return await anext(steps, _END)


class Walk(_Iterating[T]):
    """``for item in walk``: a walk's pages or items, in order, each once (see the async
    ``PageWalk`` and ``ItemWalk``); ``stats`` tells what happened."""

    def _start(self) -> AsyncIterator[Any]:
        if isinstance(self._target, ItemWalk):
            # A page per trip to the loop, its items handed out here.
            return cast(AsyncIterator[Any], self._target.pages.__aiter__())
        return super()._start()

    def _unpack(self, item: Any) -> T:
        if isinstance(self._target, ItemWalk):
            self._buffer = iter(item.data)
            return next(self)
        return cast(T, item)

    @property
    def stats(self) -> WalkStats:
        """Pages, duplicates skipped, requests, retries, waits (see ``WalkStats``)."""
        stats: WalkStats = self._target.stats
        return stats


class Batch(_Iterating[CreateResult]):
    """``for result in batch``: ``create_many``'s results as each create completes (see the
    async ``CreateBatch``). Use ``with``: leaving early cancels the creates in flight and
    fills ``unreported``."""

    _target: CreateBatch

    @property
    def unreported(self) -> list[CreateResult]:
        """What became of each create whose result was not yielded."""
        return self._target.unreported

    @property
    def in_flight(self) -> int:
        """Creates started and not yet finished."""
        return self._target.in_flight

    @property
    def taken(self) -> int:
        """Inputs taken so far."""
        return self._target.taken

    def stop(self) -> None:
        """Take no more input; the batch ends once the creates in flight have finished."""
        self._portal.loop.call_soon_threadsafe(self._target.stop)


def _walk(face: Face[Any], target: Any) -> Any:
    return Walk(target, face._portal)


def walking(method: Callable[Concatenate[Any, P], AsyncWalk[T]]) -> Method[P, Walk[T]]:
    """The async ``method`` that returns a walk, returning a plain iterator over it."""
    return Method(method.__name__, _walk)


def _batch(face: Face[Any], target: Any) -> Any:
    return Batch(target, face._portal)


def batching(method: Callable[Concatenate[Any, P], CreateBatch]) -> Method[P, Batch]:
    """The async ``create_many``, returning a plain iterator over its results."""
    return Method(method.__name__, _batch)
