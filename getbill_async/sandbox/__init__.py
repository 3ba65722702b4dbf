"""A stand-in for GetBill's external API, served by aiohttp.web on loopback.

Written from the public API docs alone, it shares no code with the client or its models, so a
mistake in either cannot hide behind the other. It serves seeded, deterministic data (a million
followups fit in well under a gigabyte), OAuth client_credentials and static tokens, scopes,
the documented validation errors, per-client sliding-window rate limits with their headers and
429 body, added latency, deterministic fault injection (see `FaultPlan`), signed webhooks for
the followups it creates and updates, and optionally the media its followups link to.
"""

from ._cli import add_arguments, run
from ._faults import ALL_KINDS, FaultPlan
from ._sandbox import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_WEBHOOK_SECRET,
    STATIC_CLIENT,
    Sandbox,
)
from ._state import OAuthClient, SandboxStats

__all__ = [
    "add_arguments",
    "run",
    "ALL_KINDS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_WEBHOOK_SECRET",
    "STATIC_CLIENT",
    "FaultPlan",
    "OAuthClient",
    "Sandbox",
    "SandboxStats",
]
