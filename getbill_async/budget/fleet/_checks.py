"""What ``RedisBudget`` checks before it runs: its options, and its Redis's eviction policy.

A Redis that evicts keys under memory pressure drops the budget's ledger first (with a
``volatile-*`` policy its keys are the only ones with a TTL), and every request it forgot lets
one more through: hundreds of 429s were measured with Redis shared as a cache. So the budget
reads ``maxmemory-policy`` once, before its first script, and refuses any policy but
``noeviction`` unless told ``accept_eviction=True``. A Redis where ``CONFIG`` is disabled or
renamed (managed services often do that) cannot be asked: a WARNING, and the budget goes on.
Either way, a ledger that lost keys is detected by the scripts and treated as cold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from redis.exceptions import ResponseError

from ..._constants import LOGGER_NAME
from ...errors import ConfigurationError
from ._conn import RedisClient

__all__ = ["SAFE_POLICY", "check_options", "eviction_policies", "refuse_eviction"]

log = logging.getLogger(LOGGER_NAME)
SAFE_POLICY = "noeviction"


def check_options(key: str, expected_workers: int, timing: Mapping[str, float]) -> None:
    """Refuse bad ``RedisBudget`` options, naming the option and what it allows.

    Raises:
        ConfigurationError: An empty key, ``expected_workers`` not an int >= 1, or a time
            (``timing``: name to seconds) that is not > 0.
    """
    if not key or not isinstance(key, str):
        raise ConfigurationError("RedisBudget key must be a non-empty string")
    if isinstance(expected_workers, bool) or not isinstance(expected_workers, int):
        raise ConfigurationError(
            f"RedisBudget expected_workers must be an int >= 1, got {expected_workers!r}"
        )
    if expected_workers < 1:
        raise ConfigurationError(f"expected_workers must be >= 1, got {expected_workers!r}")
    for name, value in timing.items():
        if not value > 0:
            raise ConfigurationError(f"RedisBudget {name} must be > 0 seconds, got {value!r}")


def _policies(answer: Mapping[Any, Any]) -> set[str]:
    found: set[str] = set()
    for name, value in answer.items():
        if isinstance(value, Mapping):  # a cluster's answer: one mapping per node
            found |= _policies(value)
        elif (name.decode() if isinstance(name, bytes) else str(name)) == "maxmemory-policy":
            found.add(value.decode() if isinstance(value, bytes) else str(value))
    return found


async def eviction_policies(client: RedisClient, where: str) -> set[str]:
    """The ``maxmemory-policy`` of the node(s) behind ``client``; empty when CONFIG is off.

    Args:
        client: The budget's Redis client (one node or a cluster).
        where: Where the budget lives, for the WARNING.

    Returns:
        The policies the nodes reported (one per distinct value).
    """
    try:
        answer = await client.config_get("maxmemory-policy")
    except ResponseError as exc:  # unknown command, NOPERM: CONFIG is renamed or forbidden
        log.warning(
            "%s: cannot read maxmemory-policy (%s); the budget needs %s, and goes on "
            "without knowing",
            where,
            exc,
            SAFE_POLICY,
        )
        return set()
    return _policies(answer)


def refuse_eviction(policies: set[str], where: str, accepted: bool) -> None:
    """Raise unless every policy is ``noeviction`` (or the risk was accepted: a WARNING).

    Args:
        policies: What ``eviction_policies`` found.
        where: Where the budget lives, for the message.
        accepted: The budget's ``accept_eviction``.

    Raises:
        ConfigurationError: A policy evicts keys, and the risk was not accepted.
    """
    evicting = sorted(p for p in policies if p != SAFE_POLICY)
    if not evicting:
        return
    named = ", ".join(evicting)
    if accepted:
        log.warning(
            "%s evicts keys (maxmemory-policy %s): a lost ledger is detected and goes cold, "
            "at the cost of a request sent blind each time",
            where,
            named,
        )
        return
    raise ConfigurationError(
        f"{where} has maxmemory-policy {named}, which evicts the budget's keys under memory "
        f"pressure and lets requests through over the limit; set maxmemory-policy "
        f"{SAFE_POLICY} (CONFIG SET maxmemory-policy {SAFE_POLICY}), or give the budget a "
        f"Redis of its own, or pass accept_eviction=True to take the risk"
    )
