"""Optional dependencies: import one when a feature asks for it, or say which extra to install.

Every optional feature goes through here, so each fails the same way, at the moment it is
asked for, with one line that names the extra::

    pa = require("pyarrow", extra="parquet", feature="Parquet export")

raises, when pyarrow is not installed, ``MissingExtraError("Parquet export needs pyarrow,
which is not installed: pip install 'getbill-async[parquet]'")``. Nothing optional is imported
at ``import getbill_async`` time.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, NoReturn

from ..errors import MissingExtraError

__all__ = ["available", "missing_extra_class", "require"]


def _message(module: str, extra: str, feature: str) -> str:
    install = f"pip install 'getbill-async[{extra}]'"
    return f"{feature} needs {module}, which is not installed: {install}"


def _is_missing(exc: ImportError, module: str) -> bool:
    """Whether ``exc`` says that ``module`` (or a package above it) is absent, rather than
    something inside an installed module failing to import, which must not be hidden."""
    name = exc.name or ""
    return bool(name) and (module == name or module.startswith(name + "."))


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # find_spec imports parent packages, which may be absent (or blocked).
        return False


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ``MissingExtraError`` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if not _is_missing(exc, module):
            raise
        raise MissingExtraError(_message(module, extra, feature)) from exc


def missing_extra_class(name: str, *, module: str, extra: str) -> type:
    """A stand-in for class ``name`` whose module needs an absent extra.

    Importing the name works (so ``from getbill_async import *`` does); creating an instance
    raises ``MissingExtraError`` with the one-line message.
    """

    def refuse(self: object, *args: Any, **kwargs: Any) -> NoReturn:
        raise MissingExtraError(_message(module, extra, name))

    doc = f"Not available: {_message(module, extra, name)}"
    return type(name, (), {"__init__": refuse, "__doc__": doc, "__module__": "getbill_async"})
