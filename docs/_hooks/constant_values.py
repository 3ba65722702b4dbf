"""MkDocs hook: the API reference shows a default as its value (``timeout=30.0``), not as the
name of the constant the code keeps it in (``timeout=DEFAULT_TIMEOUT``).

The constants stay in one place in the code (``getbill_async._constants`` and a few modules'
own); this hook looks each name up there when a reference page is rendered, so the page can
never show a value the code does not have.
"""

from __future__ import annotations

import html
import importlib
import re
from typing import Any

#: Where the constants that appear in public signatures live.
MODULES = (
    "getbill_async._constants",
    "getbill_async.export._sinks",
    "getbill_async.budget.fleet._budget",
    "getbill_async.webhooks._core",
    "getbill_async.sandbox._sandbox",
)
NAME = re.compile(r"\b(DEFAULT_[A-Z_]+|COMMIT_SECONDS)\b")


def _values() -> dict[str, str]:
    values: dict[str, str] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for key, value in vars(module).items():
            if NAME.fullmatch(key) and key not in values:
                values[key] = repr(value)
    return values


def on_page_content(content: str, page: Any, **_: Any) -> str:
    if not page.file.src_uri.startswith("reference/"):
        return content
    values = _values()
    return NAME.sub(lambda m: _escape(values.get(m.group(1), m.group(1))), content)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
