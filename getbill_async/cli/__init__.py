"""The ``getbill`` command (the console script ``getbill_async.cli:main``)."""

from ._common import budget_key
from ._main import build_parser, main

__all__ = ["budget_key", "build_parser", "main"]
