"""Where an object's loop-bound parts live: this process and the running event loop.

An aiohttp session, a Redis connection or an ``asyncio.Lock`` that has waited belongs to the
event loop it was made on, and its sockets to the process. ``home()`` names both: the number
of ``fork()``s this process descends from, and the running loop. An object that remembers
its home notices when it is used from another one (a child after ``fork()``, a second
``asyncio.run``) and makes its parts again instead of failing on a dead loop.

What a child inherits from its parent (a session, an event loop and its ``epoll`` set) is
never closed or used there: ``orphan()`` keeps it referenced for the child's whole life, so no
finalizer runs on it (closing the parent's loop in the child would unregister the parent's
sockets from their shared ``epoll`` set). ``at_loop_end()`` runs a coroutine when the loop it
was started on shuts down its async generators, which ``asyncio.run`` does before closing the
loop: a session opened there is closed there, while its loop still runs.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

__all__ = ["Home", "at_loop_end", "forks", "home", "in_child", "orphan"]

#: (fork generation, running loop or None)
Home = tuple[int, "asyncio.AbstractEventLoop | None"]

_forks = 0
_orphans: list[Any] = []
_in_child: dict[int, weakref.WeakMethod[Callable[[], None]]] = {}


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1
    calls = [method for ref in _in_child.values() if (method := ref()) is not None]
    _in_child.clear()
    for call in calls:
        call()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forks() -> int:
    """How many ``fork()``s separate this process from the one that imported the SDK."""
    return _forks


def home() -> Home:
    """This process's fork generation and the running event loop (None outside one)."""
    return _forks, asyncio._get_running_loop()


def in_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in a child right after the next ``fork()`` (held weakly: a
    collected object is not called; one method per object)."""
    _in_child[id(method.__self__)] = weakref.WeakMethod(method)  # type: ignore[attr-defined]


def orphan(thing: object) -> None:
    """Keep ``thing`` (inherited from the parent process) alive and untouched for good."""
    _orphans.append(thing)


def at_loop_end(close: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """Run ``close()`` when the running loop shuts down its async generators (``asyncio.run``
    does before it closes the loop), or when the returned generator is ``aclose()``d.

    Keep the returned generator referenced: the loop holds it only weakly.
    """

    async def sentinel() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await close()

    gen = sentinel()
    step = gen.__anext__()
    try:
        # Runs to the ``yield`` without awaiting anything: the loop's first-iteration hook
        # registers the generator with the running loop.
        step.send(None)
    except StopIteration:
        pass
    return gen
