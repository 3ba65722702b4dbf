"""getbill-async: an asyncio SDK for GetBill's external API.

from getbill_async import GetBillClient

async with GetBillClient(token="...") as client:
    async for followup in client.followups.iterate(status="delivered"):
        print(followup.id, followup.summary)
"""

from ._auth import ClientCredentials
from ._budget import (
    Budget,
    BudgetStatus,
    ClassStatus,
    Clock,
    LocalBudget,
    MonotonicClock,
    Outcome,
    RateLimit,
    Slot,
)
from ._client import GetBillClient
from ._pagination import ItemWalk, PageWalk, WalkStats
from ._pipeline import CallStats, RetryPolicy
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
    GetBillError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .models import (
    CallDirection,
    Followup,
    FollowupCreate,
    FollowupStatus,
    FollowupType,
    FollowupUpdate,
    Page,
    Pagination,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AmbiguousWriteError",
    "AuthenticationError",
    "Budget",
    "BudgetExhaustedError",
    "BudgetStatus",
    "BudgetUnavailableError",
    "CallDirection",
    "CallStats",
    "ClassStatus",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "DecodeError",
    "Followup",
    "FollowupCreate",
    "FollowupStatus",
    "FollowupType",
    "FollowupUpdate",
    "GetBillClient",
    "GetBillError",
    "ItemWalk",
    "LocalBudget",
    "MonotonicClock",
    "NotFoundError",
    "Outcome",
    "Page",
    "PageWalk",
    "Pagination",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "Slot",
    "ValidationError",
    "WalkStats",
    "__version__",
]
