"""What the handlers share: data, clients and tokens, windows, faults, counters."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._data import ALL_SCOPES
from ._faults import FaultDraw
from ._ratelimit import Clock, RateLimiter
from ._store import Store

__all__ = ["OAuthClient", "SandboxStats", "State", "TokenGrant", "check_scopes"]


@dataclass(slots=True)
class SandboxStats:
    """Counters of what the sandbox saw; `by_status` counts API answers actually sent."""

    requests: int = 0  # API requests that reached a handler (not /token)
    by_class: dict[str, int] = field(default_factory=dict)  # the same, per "read"/"write"
    token_requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0  # 429s from a spent budget (not from a "storm429" fault)
    faults_injected: dict[str, int] = field(default_factory=dict)
    webhooks_delivered: int = 0  # webhook POSTs answered 2xx
    webhooks_failed: int = 0  # webhook POSTs answered otherwise, or not at all


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A client that may obtain tokens from POST /token (client_credentials)."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ALL_SCOPES


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a bearer token stands for; `expires_at` is on the sandbox clock (None: never)."""

    client: str
    scopes: frozenset[str]
    expires_at: float | None = None


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    result = tuple(scopes)
    unknown = [s for s in result if s not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; known: {', '.join(ALL_SCOPES)}")
    return result


# A hook for webhook delivery (see _webhooks.py): called with the event type, the object and
# the changed fields after every committed followup change.
EventHook = Callable[[str, dict[str, Any], dict[str, Any] | None], None]


class State:
    """Mutable state of one running sandbox; handlers run on one event loop, so no locks."""

    def __init__(
        self,
        *,
        store: Store,
        limiter: RateLimiter,
        faults: FaultDraw | None,
        latency: float,
        token_lifetime: int,
        max_page_limit: int,
        clock: Clock,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.faults = faults
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.max_page_limit = max_page_limit
        self.clock = clock
        self.stats = SandboxStats()
        self.tokens: dict[str, TokenGrant] = {}
        self.clients: dict[str, OAuthClient] = {}
        self.on_event: EventHook | None = None
        # The most recent API requests, as (method, path with query), oldest first.
        self.seen: deque[tuple[str, str]] = deque(maxlen=100_000)
        self.stopping = False

    def emit(self, event: str, data: dict[str, Any], changes: dict[str, Any] | None) -> None:
        if self.on_event is not None:
            self.on_event(event, data, changes)

    def grant(self, token: str) -> TokenGrant | None:
        """The live grant behind a bearer token; None when unknown or expired."""
        found = self.tokens.get(token)
        if found is None:
            return None
        if found.expires_at is not None and self.clock() >= found.expires_at:
            return None
        return found
