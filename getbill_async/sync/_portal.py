"""The sync face's event loop: one per process, on a daemon thread, started on first use.

A blocking call hands its coroutine to that loop (a task made there) and waits in
the caller's thread; the result or the exception comes back there, so a traceback shows the
caller's frames above the SDK's. Every sync client of the process shares the loop, so one
client used by many threads has one connection pool and one budget, whose bookkeeping only
ever runs on this one thread: exact, with no lock of its own.

Invariants:
- never ``asyncio.run`` or ``run_until_complete`` on a caller's loop: a caller inside a
  running loop (a notebook cell) just waits, as any blocking call would;
- a blocking call made on the loop's own thread would wait for itself: ``EventLoopError``;
- after ``fork()``, the child starts its own loop on first use; the parent's loop, thread and
  sockets are left alone in the child (``support.orphan``), never closed or used there;
- at interpreter exit, what is still open is closed on the loop, within ``EXIT_GRACE``
  seconds, and the loop stops: a program that forgets ``close()`` neither hangs nor warns.
"""

from __future__ import annotations

import _thread
import asyncio
import atexit
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import EventLoopError
from ..support import orphan

__all__ = ["EXIT_GRACE", "Portal", "portal"]

T = TypeVar("T")

#: Seconds the exit waits for open clients and outboxes to close.
EXIT_GRACE = 5.0

_DEADLOCK = (
    "a blocking getbill_async.sync call was made on the sync face's own event loop thread "
    "(from a hook, an on_event callback, a progress callback or a create_many input): it "
    "would wait for itself forever. Call it from another thread, or use the async face there"
)


class Portal:
    """The process's private event loop, on a daemon thread.

    result = portal().run(client.followups.list(limit=1))   # blocks, in any thread
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # What to close at exit: closers by id, so that close() can take one back.
        self._closers: dict[int, Callable[[], Awaitable[None]]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use."""
        loop = self._loop
        if loop is None:
            with self._lock:
                loop = self._loop or self._start()
        return loop

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        thread = threading.Thread(
            target=_serve, args=(loop, started), name="getbill-sync-loop", daemon=True
        )
        thread.start()
        started.wait()
        self._thread, self._loop = thread, loop
        return loop

    def on_loop_thread(self) -> bool:
        """Whether the caller is the loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it in this thread.

        Raises:
            EventLoopError: called on the loop's own thread (it would deadlock), or after the
                loop stopped (the interpreter is exiting).
        """
        loop = self.loop
        if self.on_loop_thread():
            coro.close()
            raise EventLoopError(_DEADLOCK)
        # A bare lock and a task, not run_coroutine_threadsafe's two chained futures: the
        # hop costs two thread wake-ups and little else. The lock is let go inside the task,
        # not by a done callback, which would cost the loop one more turn.
        done = _thread.allocate_lock()
        done.acquire()
        box: list[asyncio.Task[None]] = []
        outcome: list[tuple[bool, Any]] = []  # (True, the result) or (False, the exception)

        async def call() -> None:
            try:
                outcome.append((True, await coro))
            except BaseException as exc:  # handed to the caller's thread, raised there
                outcome.append((False, exc))
            finally:
                done.release()

        def start() -> None:
            box.append(loop.create_task(call()))

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:
            coro.close()
            raise EventLoopError("the sync face's event loop has stopped: exiting") from None
        try:
            done.acquire()
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt): the call stops too.
            loop.call_soon_threadsafe(_cancel, box)
            raise
        ok, value = outcome[0]
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` on the loop without waiting (a finalizer's cleanup)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is stopping at exit
            coro.close()

    def keep(self, owner: object, closer: Callable[[], Awaitable[None]]) -> None:
        """Close ``owner`` with ``closer()`` at exit unless ``release(owner)`` comes first."""
        self._closers[id(owner)] = closer

    def release(self, owner: object) -> None:
        self._closers.pop(id(owner), None)

    def after_fork_in_child(self) -> None:
        """In a child: forget the parent's loop and thread (left alone); start anew on use."""
        orphan((self._loop, self._thread, self._closers))
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._closers = {}

    def shutdown(self, grace: float = EXIT_GRACE) -> None:
        """Close what is open, within ``grace`` seconds, then stop the loop (at exit)."""
        loop, closers = self._loop, list(self._closers.values())
        self._closers.clear()
        if loop is None or loop.is_closed() or self.on_loop_thread():
            return
        if closers:
            future = asyncio.run_coroutine_threadsafe(_close_all(closers), loop)
            try:
                future.result(grace)
            except BaseException:  # noqa: S110 - exiting anyway: never hang or fail here
                future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(grace)


def _cancel(box: list[asyncio.Task[Any]]) -> None:
    for task in box:
        task.cancel()


async def _close_all(closers: list[Callable[[], Awaitable[None]]]) -> None:
    await asyncio.gather(*(closer() for closer in closers), return_exceptions=True)


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        # Stopped at exit: what is left is cancelled and the loop closed, on its own thread.
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


_PORTAL = Portal()


def portal() -> Portal:
    """The process's portal (a child after ``fork()`` gets a fresh one)."""
    return _PORTAL


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PORTAL.after_fork_in_child)
atexit.register(_PORTAL.shutdown)
