"""A real outbox store with faults on cue, for the outbox tests: every call goes to the real
store (SQLite or Redis); ``fail[method]`` lists exceptions to raise instead of (``before``) or
after (``after``: the change is made, the reply is lost) the next calls of ``method``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from getbill_async.outbox._store import Store

__all__ = ["FaultyStore"]


class FaultyStore:
    """Wraps ``store``; see the module docstring. ``calls`` counts the calls that succeeded."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.before: dict[str, list[BaseException]] = {}
        self.after: dict[str, list[BaseException]] = {}
        self.calls: Counter[str] = Counter()
        self.path = getattr(store, "path", None)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)
        if not callable(real) or name.startswith("_"):
            return real

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.before.get(name):
                raise self.before[name].pop(0)
            result = await real(*args, **kwargs)
            if self.after.get(name):
                raise self.after[name].pop(0)
            self.calls[name] += 1
            return result

        return call
