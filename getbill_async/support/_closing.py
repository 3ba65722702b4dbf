"""``async with x`` (and, on the sync face, ``with x``) for the SDK's objects that hold
something open: ``x`` itself, closed by its ``aclose()`` (``close()``) on the way out, however
the block ends."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncClosing", "Closing"]

_Closing = TypeVar("_Closing", bound="AsyncClosing")
_SyncClosing = TypeVar("_SyncClosing", bound="Closing")


class AsyncClosing:
    """Mixin: ``__aenter__`` gives the object, ``__aexit__`` awaits its ``aclose()``."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _Closing) -> _Closing:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Closing:
    """Mixin: ``__enter__`` gives the object, ``__exit__`` calls its ``close()``."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _SyncClosing) -> _SyncClosing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
