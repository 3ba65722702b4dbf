"""What every ``getbill`` command that talks to the API shares: the connection and budget
flags (declared once, here), the Redis key of this OAuth client's budget, and the client.

Credentials come from the environment (``GETBILL_TOKEN``, or ``GETBILL_CLIENT_ID`` +
``GETBILL_CLIENT_SECRET``), never from the command line, where other users of the machine
could read them.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os

from .._client import GetBillClient
from .._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_READS,
    DEFAULT_WINDOW,
    DEFAULT_WRITES,
)
from ..budget import Budget, RateLimit
from ..errors import ConfigurationError
from ..support import require

__all__ = [
    "add_budget_options",
    "add_client_options",
    "budget_key",
    "check_flags",
    "make_budget",
    "make_client",
]

#: The integer flags that count something and must be at least 1.
_COUNTS = ("reads", "writes", "concurrency", "expected_workers")


def add_budget_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The budget's flags: its size, and Redis to share it through."""
    group = parser.add_argument_group("budget")
    group.add_argument(
        "--base-url",
        default=os.environ.get("GETBILL_BASE_URL", DEFAULT_BASE_URL),
        help="API base URL (env GETBILL_BASE_URL; default %(default)s)",
    )
    group.add_argument(
        "--reads", type=int, default=DEFAULT_READS, help=f"reads per window ({DEFAULT_READS})"
    )
    group.add_argument(
        "--writes", type=int, default=DEFAULT_WRITES, help=f"writes per window ({DEFAULT_WRITES})"
    )
    group.add_argument(
        "--window",
        type=float,
        default=DEFAULT_WINDOW,
        help=f"window seconds ({DEFAULT_WINDOW:g})",
    )
    group.add_argument("--redis", metavar="URL", help="share the budget through Redis")
    # --cluster: the spelling `getbill budget` had before the flags were declared once.
    group.add_argument(
        "--redis-cluster", "--cluster", action="store_true", help="--redis is a cluster node"
    )
    return group


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that sends requests: the budget's, and how the work runs."""
    group = add_budget_options(parser)
    group.add_argument(
        "--redis-fallback",
        action="store_true",
        help="if Redis is unreachable, go on with a local share of the budget",
    )
    group.add_argument(
        "--expected-workers",
        type=int,
        default=4,
        metavar="N",
        help="with --redis-fallback, the fleet's size: each worker falls back to 1/N (4)",
    )
    group.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight"
    )
    group.add_argument("--no-progress", action="store_true", help="no progress output")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def budget_key() -> str:
    """The Redis key of this OAuth client's budget: every worker of one client shares it.

    Returns:
        ``getbill:<GETBILL_CLIENT_ID>``, or ``getbill:token-<digest>`` from a digest of
        ``GETBILL_TOKEN`` (never the token itself).
    """
    client_id = os.environ.get("GETBILL_CLIENT_ID")
    if client_id:
        return f"getbill:{client_id}"
    token = os.environ.get("GETBILL_TOKEN", "")
    return "getbill:token-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def check_flags(args: argparse.Namespace) -> None:
    """Check the budget and work flags of any command, before anything is read or sent.

    Args:
        args: the parsed flags; those a command does not have are skipped.

    Raises:
        ConfigurationError: a flag is out of range; the message names it and what it allows.
    """
    for name in _COUNTS:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigurationError(
                f"--{name.replace('_', '-')} must be an integer >= 1, got {value}"
            )
    window = getattr(args, "window", None)
    if window is not None and not (math.isfinite(window) and window > 0):
        raise ConfigurationError(f"--window must be a finite number of seconds > 0, got {window}")
    reserve = getattr(args, "reserve", None)
    if reserve is not None and not 0 <= reserve < 1:
        raise ConfigurationError(
            f"--reserve must be a number >= 0 and < 1 (the share kept for interactive calls), "
            f"got {reserve}"
        )


def rate_limit(args: argparse.Namespace) -> RateLimit:
    """The ``RateLimit`` the flags describe (``--reserve`` where the command has it)."""
    reserve = getattr(args, "reserve", 0.0)
    return RateLimit(reads=args.reads, writes=args.writes, window=args.window, reserve=reserve)


def make_budget(args: argparse.Namespace) -> RateLimit | Budget:
    """A local ``RateLimit``, or the budget shared through ``--redis``."""
    rate = rate_limit(args)
    if not args.redis:
        return rate
    require("redis", extra="redis", feature="--redis (a budget shared through Redis)")
    from ..budget.fleet import budget_from_url

    return budget_from_url(
        args.redis,
        rate,
        fallback=getattr(args, "redis_fallback", False),
        expected_workers=getattr(args, "expected_workers", 4),
        key=budget_key(),
        cluster=args.redis_cluster,
    )


def make_client(args: argparse.Namespace, token: str | None = None) -> GetBillClient:
    """The client the flags describe (its token from the environment unless given)."""
    return GetBillClient(token, base_url=args.base_url, rate_limit=make_budget(args))
