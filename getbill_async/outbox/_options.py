"""The outbox's options: checks that name the option, and the store an option names."""

from __future__ import annotations

import os

from ..errors import ValidationError
from ._sqlite_store import SQLiteStore
from ._store import Store

__all__ = ["bad", "positive", "store_for"]


def bad(field: str, reason: str, allowed: tuple[str, ...] | None = None) -> ValidationError:
    """The error for an option out of range: it names the option and the allowed values."""
    text = f"{field}: {reason}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    return ValidationError(text, field=field, allowed=allowed, details={field: [reason]})


def positive(field: str, value: object, *, integer: bool = False) -> None:
    """Raise ``bad`` unless ``value`` is a number (``integer``: an int) above 0."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "an integer" if integer else "a number"
        raise bad(field, f"must be {kind} > 0, got {value!r}")


def store_for(store: str | os.PathLike[str] | Store, name: str | None) -> Store:
    """The store behind ``store``: a SQLite file, a Redis outbox, or a store given as is."""
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        if text.startswith(("redis://", "rediss://", "unix://")):
            from ._redis_store import RedisStore  # needs the redis extra

            return RedisStore(text, name=name or "default")
        return SQLiteStore(text)
    return store
