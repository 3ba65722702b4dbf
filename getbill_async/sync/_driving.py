"""How a call reaches the sync face's loop (see ``_portal``): driven in the caller's thread
(``then_stop``, ``until_done``), or handed over to the thread that drives it (``hop``); and
how the loop ends at exit (``finish``)."""

from __future__ import annotations

import _thread
import asyncio
import importlib
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import EventLoopError

# signal's C half: the same functions, without the enum conversions (~10 µs a call).
signal: Any
try:
    signal = importlib.import_module("_signal")
except ImportError:  # pragma: no cover - an interpreter without it
    signal = importlib.import_module("signal")

__all__ = ["EXITED", "close_all", "finish", "hop", "then_stop", "turns", "until_done"]

T = TypeVar("T")

EXITED = "the sync face's event loop has stopped: exiting"


async def then_stop(loop: asyncio.AbstractEventLoop, coro: Awaitable[T], *, settle: bool) -> T:
    """``coro``, then the loop stops in the same turn (``run_until_complete`` would take one
    more). ``settle``: one turn first, so that what the sockets said while no one drove the
    loop (a keep-alive connection the server closed) is heard before the call picks a
    connection."""
    try:
        if settle:
            await asyncio.sleep(0)
        return await coro
    finally:
        loop.stop()


def hop(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T],
    ended: Callable[[], None],
) -> T:
    """Hand ``coro`` to the loop another thread drives, and wait for it here."""
    # A bare lock and a task, not run_coroutine_threadsafe's two chained futures: the
    # hop costs two thread wake-ups and little else.
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
            ended()

    def start() -> None:
        box.append(loop.create_task(call()))

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:
        coro.close()
        ended()
        raise EventLoopError(EXITED) from None
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


_BASE: Any = asyncio.BaseEventLoop
_OWN = ("run_forever", "_run_forever_setup", "_run_forever_cleanup")  # a subclass's own: not lean
_USED = ("_run_once", "_stopping", "_thread_id", "_asyncgen_firstiter_hook")


def turns(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """What runs ``loop`` until it is stopped, in the calling thread: ``loop.run_forever``,
    or, for a plain asyncio loop outside debug mode, the same steps without the checks
    that ``run_forever`` repeats each time (the loop is open, and runs in no other thread:
    the portal sees to both). A call pays these steps once on the way in and once on the
    way out, after its thread waited on the network with its caches gone cold; the checks
    are a tenth of a driven call's overhead there (``benchmarks/sync.py``). The steps are
    those of ``BaseEventLoop.run_forever`` from Python 3.10 on (3.13 moved them into
    ``_run_forever_setup`` and ``_run_forever_cleanup``); any other loop (uvloop, a subclass
    with its own of any of the three, debug mode) is run by its own ``run_forever``."""
    inner: Any = loop
    if (
        loop.get_debug()
        or any(getattr(type(loop), name, None) is not getattr(_BASE, name, None) for name in _OWN)
        or not all(hasattr(inner, name) for name in _USED)
    ):
        return loop.run_forever
    run_once, firstiter = inner._run_once, inner._asyncgen_firstiter_hook
    finalizer, set_running = inner._asyncgen_finalizer_hook, asyncio.events._set_running_loop

    def run() -> None:
        hooks = sys.get_asyncgen_hooks()
        inner._thread_id = _thread.get_ident()
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
        set_running(loop)
        try:
            while True:
                run_once()
                if inner._stopping:
                    break
        finally:
            inner._stopping = False
            inner._thread_id = None
            set_running(None)
            sys.set_asyncgen_hooks(*hooks)

    return run


def until_done(task: asyncio.Task[T], run: Callable[[], None]) -> T:
    """Drive the loop (``run``: see ``turns``) until ``task`` is done; its result. On the
    main thread, with Python's own Ctrl-C handler in place (another of the program's own
    is left alone): Ctrl-C cancels the call (its request stops cleanly, on the loop), then
    ``KeyboardInterrupt`` is raised; a second Ctrl-C raises at once."""
    if (
        _thread.get_ident() != threading.main_thread().ident
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        while not task.done():
            run()
        return task.result()
    loop = task.get_loop()
    hit: list[bool] = []

    def on_sigint(signum: int, frame: object) -> None:
        if hit or task.done():
            raise KeyboardInterrupt
        hit.append(True)
        task.cancel()
        loop.call_soon_threadsafe(_nothing)  # wake the loop if it waits

    signal.signal(signal.SIGINT, on_sigint)
    try:
        while not task.done():
            run()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hit:
        raise KeyboardInterrupt
    return task.result()


def _nothing() -> None:
    pass


def _cancel(box: list[asyncio.Task[Any]]) -> None:
    for task in box:
        task.cancel()


async def close_all(closers: list[Callable[[], Awaitable[None]]]) -> None:
    await asyncio.gather(*(closer() for closer in closers), return_exceptions=True)


def finish(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel what is left on the loop, within ``grace`` seconds, and close it."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    try:
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=grace))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
