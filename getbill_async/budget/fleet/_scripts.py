"""One budget's keys and scripts in Redis, run through one bounded caller: ``Scripts``.

Keys, per class: ``{<key>}:<class>:slots``, ``:inflight``, ``:pause``, ``:pace``, ``:server``,
``:waiting``, ``:sends``, ``:readings`` and the channel ``:freed`` (see ``_lua``); the hash tag
keeps one budget in one slot of a Redis Cluster. Each key expires on its own once the fleet
has been idle for a window and two leases.

Every script takes the generation the worker saw last and answers with the one it sealed (see
``_lua``); ``Scripts`` keeps that mirror per class, so a ledger that went back in time is
cold for the next script that runs. Before the first script it reads the eviction policy once
(see ``_checks``).
"""

from __future__ import annotations

import uuid
from typing import Any

from .._types import Kind
from ._calls import Caller
from ._checks import eviction_policies, refuse_eviction
from ._conn import RedisClient, tagged, where
from ._lua import ACQUIRE, ADOPT, RELEASE, STATUS
from ._replies import text

__all__ = ["Scripts"]

#: Which script ``Scripts.run`` runs.
ACQUIRING, RELEASING, READING, ADOPTING = 0, 1, 2, 3


class Scripts:
    """The Redis side of one ``RedisBudget``: key names, the scripts, the generation mirror."""

    __slots__ = ("client", "key", "prefix", "caller", "accept_eviction", "_scripts", "_gens")

    def __init__(
        self, client: RedisClient, key: str, timeout: float, *, accept_eviction: bool
    ) -> None:
        self.client = client
        self.key = key
        self.prefix = tagged(key)
        self.caller = Caller(timeout, self.where)
        self.accept_eviction = accept_eviction
        self._scripts = tuple(client.register_script(s) for s in (ACQUIRE, RELEASE, STATUS, ADOPT))
        self._gens: dict[Kind, int] | None = None  # None: the eviction policy is unchecked

    def keys(self, kind: Kind) -> list[str]:
        """The keys of ``kind``'s ledger, in the order the scripts take them."""
        base = f"{self.prefix}:{kind}"
        names = ("slots", "inflight", "pause", "pace", "server", "waiting", "sends", "readings")
        return [f"{base}:{name}" for name in names]

    def channel(self, kind: Kind) -> str:
        """Where releases of ``kind`` are published."""
        return f"{self.prefix}:{kind}:freed"

    def where(self) -> str:
        """Where the budget lives, for messages (no password, no URL)."""
        return where(self.client, self.key)

    async def run(self, script: int, kind: Kind, args: list[str | float], doing: str) -> Any:
        """Run one script on ``kind``'s keys; mirror the generation it answers with.

        Args:
            script: ``ACQUIRING``, ``RELEASING``, ``READING`` or ``ADOPTING``.
            kind: ``"read"`` or ``"write"``.
            args: The script's ARGV but the generation (appended here).
            doing: What it does, for messages.

        Returns:
            The script's answer.

        Raises:
            BudgetUnavailableError: Redis failed (see ``Caller.call``).
            ConfigurationError: Redis evicts keys and ``accept_eviction`` is off.
        """
        gens = self._gens
        if gens is None:
            policies = await self.caller.call(
                doing, lambda: eviction_policies(self.client, self.where())
            )
            refuse_eviction(policies, self.where(), self.accept_eviction)
            gens = self._gens = {"read": 0, "write": 0}
        keys, full = self.keys(kind), [*args, gens[kind]]
        answer = await self.caller.call(doing, lambda: self._scripts[script](keys, full))
        gens[kind] = max(gens[kind], int(text(answer[-1])))
        return answer

    async def adopt(
        self, kind: Kind, rules: tuple[float, float], seconds: list[float], held: tuple[int, float]
    ) -> None:
        """Count slots spent outside the ledger, and hold the others' local shares back.

        Args:
            kind: ``"read"`` or ``"write"``.
            rules: The window and the lease.
            seconds: Until each slot spent outside frees.
            held: Slots to hold back from admission, and for how many seconds.

        Raises:
            BudgetUnavailableError: Redis failed.
        """
        window, lease = rules
        args: list[str | float] = [window, lease, "u" + uuid.uuid4().hex, *held, *seconds]
        await self.run(ADOPTING, kind, args, f"bringing local {kind} slots back")
