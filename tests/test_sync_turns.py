"""``turns``: the sync face runs a plain asyncio loop with ``run_forever``'s own steps, less
its per-call checks; whatever a loop's code can see is as ``run_forever`` leaves it, on every
way out. Any other loop is run by its own ``run_forever``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from getbill_async.sync._driving import turns


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _runners(loop: asyncio.AbstractEventLoop) -> list[Callable[[], None]]:
    lean = turns(loop)
    assert lean != loop.run_forever  # a plain loop is run the lean way: it is what is tested
    return [lean, loop.run_forever]


def _firstiter(agen: Any) -> None:  # the program's own hooks, to be restored
    pass


def _finalizer(agen: Any) -> None:
    pass


@pytest.mark.parametrize("kind", ["lean", "run_forever"])
def test_inside_and_after_a_run_the_loop_looks_as_run_forever_leaves_it(
    loop: asyncio.AbstractEventLoop, kind: str
) -> None:
    run = _runners(loop)[0 if kind == "lean" else 1]
    seen: dict[str, Any] = {}
    finalized: list[str] = []

    async def numbers() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            finalized.append("numbers")

    left: list[AsyncIterator[int]] = []

    async def look() -> None:
        seen["running"] = asyncio.get_running_loop()
        seen["is_running"] = loop.is_running()
        seen["firstiter"] = sys.get_asyncgen_hooks().firstiter
        walk = numbers()
        await walk.__anext__()  # left unfinished: the loop must know of it
        left.append(walk)
        loop.stop()

    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=_firstiter, finalizer=_finalizer)
    try:
        loop.create_task(look())
        run()
        assert seen["running"] is loop and seen["is_running"] is True
        assert seen["firstiter"] not in (None, _firstiter)  # the loop's own hook
        assert sys.get_asyncgen_hooks() == (_firstiter, _finalizer)  # restored
    finally:
        sys.set_asyncgen_hooks(*old)
    assert asyncio._get_running_loop() is None and not loop.is_running()
    assert finalized == []
    loop.run_until_complete(loop.shutdown_asyncgens())  # the loop closes what it started
    assert finalized == ["numbers"]
    # Stopped, it runs again, to the next stop.
    ran: list[int] = []
    loop.call_soon(ran.append, 1)
    loop.call_soon(loop.stop)
    run()
    assert ran == [1]


@pytest.mark.parametrize("kind", ["lean", "run_forever"])
def test_an_exception_out_of_a_callback_leaves_the_loop_reusable(
    loop: asyncio.AbstractEventLoop, kind: str
) -> None:
    run = _runners(loop)[0 if kind == "lean" else 1]

    def interrupt() -> None:
        raise KeyboardInterrupt

    ran: list[str] = []
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, "after")  # still queued when the exception leaves
    old = sys.get_asyncgen_hooks()
    with pytest.raises(KeyboardInterrupt):
        run()
    assert asyncio._get_running_loop() is None and not loop.is_running()
    assert sys.get_asyncgen_hooks() == old
    loop.call_soon(loop.stop)
    run()
    assert ran == ["after"]  # nothing queued was lost


def test_a_loop_in_debug_mode_is_run_by_its_own_run_forever(
    loop: asyncio.AbstractEventLoop,
) -> None:
    loop.set_debug(True)
    assert turns(loop) == loop.run_forever


class _OwnRun(asyncio.SelectorEventLoop):
    calls: list[str] = []

    def run_forever(self) -> None:
        self.calls.append("run_forever")
        super().run_forever()


class _OwnSetup(asyncio.SelectorEventLoop):  # how 3.13's loops change what run_forever does
    def _run_forever_setup(self) -> None:
        getattr(super(), "_run_forever_setup", lambda: None)()


def test_a_loop_with_a_run_forever_of_its_own_is_run_by_it() -> None:
    loop = _OwnRun()
    try:
        run = turns(loop)
        assert run == loop.run_forever
        loop.call_soon(loop.stop)
        run()
        assert loop.calls == ["run_forever"]
    finally:
        loop.close()


def test_a_loop_with_its_own_run_forever_setup_is_run_by_its_run_forever() -> None:
    loop = _OwnSetup()
    try:
        assert turns(loop) == loop.run_forever
    finally:
        loop.close()


def test_a_uvloop_loop_is_run_by_its_own_run_forever() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert turns(loop) == loop.run_forever
    finally:
        loop.close()
