"""The sync face's event loop: one per process, driven by whichever thread needs it.

A blocking call made while no thread drives the loop drives it itself, in the caller's
thread, for as long as its call lasts (``_driving.until_done``, with ``run_forever``'s steps:
``_driving.turns``): no thread hop, and an overhead over the awaited call of a few tens of
µs. A call made while the loop is driven (by another caller, or by the daemon thread) hands
its coroutine over (a task made there) and waits; so does a call from a thread that runs an
event loop of its own (a notebook cell), which never runs ours. Either way the result or the
exception comes back in the caller's thread, so a traceback shows the caller's frames above
the SDK's. Every sync client of the process shares the loop: one client used by many
threads has one connection pool and one budget, whose bookkeeping runs on one thread at a
time: exact, with no lock of its own.

The daemon thread drives the loop while anything needs it between calls: calls handed over
that have not ended, a cleanup started by a finalizer, a task left running (a walk's
fetches ahead), or an owner kept with ``background=True`` (an open outbox, whose drainer
runs on). Once none is left it lets go, and the next call drives again.

Invariants:
- never ``asyncio.run`` or ``run_until_complete`` on a caller's loop: a caller inside a
  running loop just waits, as any blocking call would;
- one thread drives the loop at a time (``_driver``);
- a blocking call made by the thread driving the loop would wait for itself:
  ``EventLoopError``;
- Ctrl-C during a call the main thread drives cancels that call (as ``asyncio.run`` does),
  then raises ``KeyboardInterrupt``;
- after ``fork()``, the child starts its own loop on first use; the parent's loop, thread and
  sockets are left alone in the child (``support.orphan``), never closed or used there;
- at interpreter exit, what is still open is closed on the loop, within ``EXIT_GRACE``
  seconds, and the loop is closed: a program that forgets ``close()`` neither hangs nor warns.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import EventLoopError
from ..support import orphan
from ._driving import EXITED, close_all, finish, hop, then_stop, turns, until_done

__all__ = ["EXIT_GRACE", "Portal", "portal"]

T = TypeVar("T")

_get_ident, _monotonic = threading.get_ident, time.monotonic

#: Seconds the exit waits for open clients and outboxes to close.
EXIT_GRACE = 5.0
POLL = 0.1  # seconds between the daemon's looks for whether the loop is still needed
# A call that finds the loop undriven for longer first lets it hear its sockets: see
# ``_driving.then_stop``.
SETTLE_AFTER = 0.05

_DEADLOCK = (
    "a blocking getbill_async.sync call was made on the thread that drives the sync face's "
    "event loop (from a hook, an on_event callback, a progress callback or a create_many "
    "input): it would wait for itself forever. Call it from another thread, or use the "
    "async face there"
)
_DAEMON, _STOPPING = "daemon", "stopping"  # who drives, besides a caller's thread ident


def _running() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (without raising: cheaper)."""
    return asyncio._get_running_loop()


class Portal:
    """The process's private event loop.

    result = portal().run(client.followups.list(limit=1))   # blocks, in any thread
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Reentrant: a finalizer (``spawn``) may run while this thread holds it.
        self._lock = threading.RLock()
        self._wanted = threading.Condition(self._lock)  # the daemon waits here to drive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turns: Callable[[], None] = _never  # runs the loop in the caller's thread
        self._daemon: threading.Thread | None = None
        self._driver: object = None  # None, _DAEMON, _STOPPING, or a caller's thread ident
        self._pending = 0  # calls handed over and cleanups spawned that have not ended
        self._poll: asyncio.Handle | None = None
        self._driven = 0.0  # when a call last drove the loop (time.monotonic())
        self._exited = False
        # What to close at exit: closers by id, so that close() can take one back; and
        # the ids of those that need the loop driven between calls.
        self._closers: dict[int, Callable[[], Awaitable[None]]] = {}
        self._background: set[int] = set()
        self._live: set[asyncio.Task[Any]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, made on first use."""
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._exited:
                    raise EventLoopError(EXITED)
                loop = self._loop or self._new_loop()
        return loop

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        loop.set_task_factory(self._track)
        self._turns = turns(loop)
        self._loop = loop
        return loop

    def _track(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        """The loop's task factory: every task is kept in ``_live`` until it is done (a
        plain set: cheaper to look through than ``asyncio.all_tasks``)."""
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        return task

    def _busy(self) -> bool:
        """Whether a task is left running on the loop (a walk's fetches ahead, a release)."""
        for task in self._live:
            if not task.done():
                return True
        return False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it in this thread.

        Raises:
            EventLoopError: called by the thread driving the loop (it would deadlock), or
                after the loop stopped (the interpreter is exiting).
        """
        # The common case first, in as few steps as it takes: every step here is paid per
        # call, and paid several times over after the thread waited on the network (its
        # caches gone cold; see docs/performance.md).
        loop, running, lock = self._loop, _running(), self._lock
        if loop is not None and running is None:
            lock.acquire()
            if self._driver is None and not self._exited:
                self._driver = _get_ident()
                lock.release()
                return self._drive(loop, coro)
            lock.release()
        return self._run_otherwise(coro, running)

    def _run_otherwise(
        self, coro: Coroutine[Any, Any, T], running: asyncio.AbstractEventLoop | None
    ) -> T:
        """``run`` when this thread cannot drive the loop at once: the first call, a call
        while another thread drives, a call from inside a running loop, or too late."""
        try:
            loop = self.loop
        except EventLoopError:
            coro.close()
            raise
        if running is loop:
            coro.close()
            raise EventLoopError(_DEADLOCK)
        with self._lock:
            if self._exited:
                coro.close()
                raise EventLoopError(EXITED)
            drive = running is None and self._driver is None
            if drive:
                self._driver = _get_ident()
            else:
                self._hand_over()
        if drive:
            return self._drive(loop, coro)
        return hop(loop, coro, self._ended)

    def _hand_over(self) -> None:
        """(Lock held.) One more call or cleanup for the loop: see that someone drives."""
        self._pending += 1
        if self._driver is None:
            self._to_daemon()

    def _drive(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
        idle = _monotonic() - self._driven > SETTLE_AFTER
        # Made here rather than by the task factory: the call's own task is never one left
        # running (``_live``), and it saves the factory's step and its done callback.
        task = asyncio.Task(then_stop(loop, coro, settle=idle), loop=loop)
        try:
            return until_done(task, self._turns)
        finally:
            self._driven = _monotonic()
            with self._lock:
                if not task.done():  # interrupted inside the loop: ends in the background
                    task.cancel()
                    self._pending += 1
                    task.add_done_callback(lambda _: self._ended())
                if self._pending or self._background or (self._live and self._busy()):
                    self._to_daemon()
                else:
                    self._driver = None

    def _to_daemon(self) -> None:
        """(Lock held.) The daemon drives from now on (started on first need)."""
        self._driver = _DAEMON
        if self._daemon is None:
            self._daemon = threading.Thread(
                target=self._serve, name="getbill-sync-loop", daemon=True
            )
            self._daemon.start()
        self._wanted.notify_all()

    def _ended(self) -> None:
        """A call or cleanup handed over has ended (on the loop)."""
        with self._lock:
            self._pending -= 1
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if _running() is loop:
                loop.call_soon(self._let_go_if_idle)
            else:
                loop.call_soon_threadsafe(self._let_go_if_idle)

    def _let_go_if_idle(self) -> None:
        """On the loop: the daemon stops driving once nothing needs it."""
        loop = self._loop
        with self._lock:
            if self._driver is not _DAEMON or loop is None:
                return
            if self._pending or self._background or self._exited or self._busy():
                return
            self._driver = _STOPPING
            loop.stop()

    def _look(self) -> None:
        self._let_go_if_idle()
        if self._loop is not None and self._driver is _DAEMON:
            self._poll = self._loop.call_later(POLL, self._look)

    def _serve(self) -> None:
        """The daemon thread: drive the loop whenever it is handed over."""
        loop = self.loop
        while True:
            with self._lock:
                while self._driver is not _DAEMON and not self._exited:
                    self._wanted.wait()
                if self._exited and self._driver is not _DAEMON:
                    return
            self._poll = loop.call_soon(self._look)
            try:
                loop.run_forever()
            finally:
                if self._poll is not None:
                    self._poll.cancel()
            with self._lock:
                if self._exited:
                    self._driver = threading.get_ident()
                    break
                if self._driver is _STOPPING:  # work may have come while it stopped
                    self._driver = _DAEMON if self._pending or self._background else None
        finish(loop, EXIT_GRACE)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` on the loop without waiting (a finalizer's cleanup)."""
        loop = self._loop
        with self._lock:
            if loop is None or loop.is_closed() or self._exited:
                coro.close()
                return
            self._hand_over()

        async def cleanup() -> None:
            try:
                await coro
            finally:
                self._ended()

        loop.call_soon_threadsafe(loop.create_task, cleanup())

    def keep(
        self, owner: object, closer: Callable[[], Awaitable[None]], *, background: bool = False
    ) -> None:
        """Close ``owner`` with ``closer()`` at exit unless ``release(owner)`` comes first.
        ``background``: it needs the loop driven between calls until then (a drainer)."""
        with self._lock:
            self._closers[id(owner)] = closer
            if background:
                self._background.add(id(owner))
                if self._driver is None:
                    self._to_daemon()

    def release(self, owner: object) -> None:
        with self._lock:
            self._closers.pop(id(owner), None)
            if id(owner) in self._background:
                self._background.discard(id(owner))
                if self._driver is _DAEMON and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._let_go_if_idle)

    def after_fork_in_child(self) -> None:
        """In a child: forget the parent's loop and thread (left alone); start anew on use."""
        orphan((self._loop, self._daemon, self._closers))
        self._reset()

    def shutdown(self, grace: float = EXIT_GRACE) -> None:
        """Close what is open, within ``grace`` seconds, then close the loop (at exit)."""
        with self._lock:
            loop, closers = self._loop, list(self._closers.values())
            self._closers.clear()
            self._background.clear()
        if loop is None or loop.is_closed() or _running() is loop:
            return
        if closers:
            try:
                self.run(asyncio.wait_for(close_all(closers), grace))
            except BaseException:  # noqa: S110 - exiting anyway: never hang or fail here
                pass
        with self._lock:
            self._exited, driver = True, self._driver
            if driver is None:
                self._driver = threading.get_ident()
            self._wanted.notify_all()
        if driver is None:
            finish(loop, grace)
        elif driver in (_DAEMON, _STOPPING) and self._daemon is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._daemon.join(grace)


def _never() -> None:  # pragma: no cover - the loop is made before it is driven
    raise EventLoopError(EXITED)


_PORTAL = Portal()


def portal() -> Portal:
    """The process's portal (a child after ``fork()`` gets a fresh one)."""
    return _PORTAL


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PORTAL.after_fork_in_child)
atexit.register(_PORTAL.shutdown)
