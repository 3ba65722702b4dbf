"""getbill-async: an asyncio SDK for GetBill's external API.

from getbill_async import GetBillClient

async with GetBillClient(token="...") as client:
    async for followup in client.followups.iterate(status="delivered"):
        print(followup.id, followup.summary)
"""

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AmbiguousWriteError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    BudgetUnavailableError,
    ConfigurationError,
    DecodeError,
    EventLoopError,
    FileInUseError,
    GetBillError,
    MissingExtraError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
    WriteNotSentError,
)
from .models import (
    CallDirection,
    Debt,
    Followup,
    FollowupCreate,
    FollowupStatus,
    FollowupType,
    FollowupUpdate,
    Page,
    Pagination,
)

if TYPE_CHECKING:
    from ._client import GetBillClient
    from .budget import (
        Budget,
        BudgetStatus,
        ClassStatus,
        Clock,
        Lane,
        LocalBudget,
        MonotonicClock,
        Outcome,
        RateLimit,
        Slot,
    )
    from .budget.fleet import RedisBudget
    from .bulk import CreateBatch, CreateResult
    from .export import ExportError, ExportPlan, ExportReport
    from .outbox import (
        DeadEntry,
        DeliveryFinding,
        DeliveryReport,
        Outbox,
        OutboxFullError,
        OutboxStatus,
        OutboxStoreError,
        VerifyPlan,
    )
    from .telemetry import AttemptInfo, CallInfo, Hooks
    from .transport import CallStats, ClientCredentials, ItemWalk, PageWalk, RetryPolicy, WalkStats

__version__ = "0.1.0"

# The errors and the models are imported at once (light, and what every part speaks); the rest
# on first use, so that importing the package (or only its pytest plugin) stays cheap: no
# aiohttp, SQLite or sandbox until a name that needs them is asked for.
_LAZY: dict[str, str] = {
    "AttemptInfo": ".telemetry",
    "Budget": ".budget",
    "BudgetStatus": ".budget",
    "CallInfo": ".telemetry",
    "CallStats": ".transport",
    "ClassStatus": ".budget",
    "ClientCredentials": ".transport",
    "Clock": ".budget",
    "CreateBatch": ".bulk",
    "CreateResult": ".bulk",
    "DeadEntry": ".outbox",
    "DeliveryFinding": ".outbox",
    "DeliveryReport": ".outbox",
    "ExportError": ".export",
    "ExportPlan": ".export",
    "ExportReport": ".export",
    "GetBillClient": "._client",
    "Hooks": ".telemetry",
    "ItemWalk": ".transport",
    "Lane": ".budget",
    "LocalBudget": ".budget",
    "MonotonicClock": ".budget",
    "Outbox": ".outbox",
    "OutboxFullError": ".outbox",
    "OutboxStatus": ".outbox",
    "OutboxStoreError": ".outbox",
    "Outcome": ".budget",
    "PageWalk": ".transport",
    "RateLimit": ".budget",
    "RetryPolicy": ".transport",
    "Slot": ".budget",
    "VerifyPlan": ".outbox",
    "WalkStats": ".transport",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AmbiguousWriteError",
    "AttemptInfo",
    "AuthenticationError",
    "Budget",
    "BudgetExhaustedError",
    "BudgetStatus",
    "BudgetUnavailableError",
    "CallDirection",
    "CallInfo",
    "CallStats",
    "ClassStatus",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "CreateBatch",
    "CreateResult",
    "DeadEntry",
    "Debt",
    "DeliveryFinding",
    "DeliveryReport",
    "DecodeError",
    "EventLoopError",
    "ExportError",
    "ExportPlan",
    "ExportReport",
    "FileInUseError",
    "Followup",
    "FollowupCreate",
    "FollowupStatus",
    "FollowupType",
    "FollowupUpdate",
    "GetBillClient",
    "GetBillError",
    "Hooks",
    "ItemWalk",
    "Lane",
    "LocalBudget",
    "MissingExtraError",
    "MonotonicClock",
    "NotFoundError",
    "PaginationError",
    "Outbox",
    "OutboxFullError",
    "OutboxStatus",
    "OutboxStoreError",
    "Outcome",
    "Page",
    "PageWalk",
    "Pagination",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RedisBudget",
    "RetryPolicy",
    "ServerError",
    "Slot",
    "ValidationError",
    "VerifyPlan",
    "WalkStats",
    "WriteNotSentError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # RedisBudget needs the optional redis extra: import it on first use, so that
    # `import getbill_async` works without redis-py installed. Without it, the name is a
    # stand-in that says which extra to install when used, so `import *` still works.
    if name == "RedisBudget":
        from .support import available, missing_extra_class

        if not available("redis"):
            return missing_extra_class("RedisBudget", module="redis", extra="redis")
        from .budget.fleet import RedisBudget

        return RedisBudget
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
