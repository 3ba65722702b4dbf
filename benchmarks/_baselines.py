"""The baselines' own models of a page of followups, from the API docs (not the SDK's).

One list of the 24 documented fields and their types, built into a plain msgspec Struct (the
limit on this stack) and a pydantic v2 model (what many hand-written clients use).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

FIELDS: list[tuple[str, Any]] = [
    ("id", str),
    ("debt_id", str),
    ("status", str),
    ("type", str),
    *(
        (name, kind | None)
        for name, kind in [
            ("call_date", datetime),
            ("scheduled_at", datetime),
            ("summary", str),
            ("notes", str),
            ("call_id", str),
            ("audio_url", str),
            ("pdf_url", str),
            ("duration_ms", int),
            ("disconnection_reason", str),
            ("direction", str),
            ("phone_number_used", str),
            ("is_retry", bool),
            ("processed_at", datetime),
            ("triggered_payment", bool),
            ("email_opened", bool),
            ("email_open_count", int),
            ("email_first_opened_at", datetime),
            ("email_clicked", bool),
            ("email_click_count", int),
            ("media_urls_expire_at", datetime),
        ]
    ),
]
PAGINATION: list[tuple[str, Any]] = [("total", int), ("page", int), ("limit", int), ("pages", int)]


def bare_page_type() -> type[msgspec.Struct]:
    """A plain ``msgspec.Struct`` page: no options, the same fields and types."""
    followup = msgspec.defstruct(
        "BareFollowup", [(n, t) if i < 4 else (n, t, None) for i, (n, t) in enumerate(FIELDS)]
    )
    pagination = msgspec.defstruct("BarePagination", PAGINATION)
    return msgspec.defstruct("BarePage", [("data", list[followup]), ("pagination", pagination)])


def pydantic_page_model() -> Any:
    """A pydantic v2 page model with the same fields and types (None without pydantic)."""
    try:
        from pydantic import create_model
    except ImportError:
        return None
    followup = create_model(  # type: ignore[call-overload]
        "PydFollowup", **{n: (t, ...) if i < 4 else (t, None) for i, (n, t) in enumerate(FIELDS)}
    )
    pagination = create_model("PydPagination", **{n: (t, ...) for n, t in PAGINATION})  # type: ignore[call-overload]
    return create_model("PydPage", data=(list[followup], ...), pagination=(pagination, ...))  # type: ignore[call-overload]
