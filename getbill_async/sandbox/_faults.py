"""Deterministic fault injection: which API request (numbered from 1) fails, and how.

    plan = FaultPlan(rate=0.05, seed=3)                 # 5 % of requests, kinds uniformly
    plan = FaultPlan(at={7: "500", 12: "reset_before"}) # exactly these requests
    plan = FaultPlan.parse("500:0.02,reset_after:0.01,slow@3", seed=3)

Kinds:
- "500", "502", "503", "504": an error envelope with that code; the request is not acted on.
- "reset_before": the connection is closed without an answer; not acted on.
- "reset_after": acted on (a create or update is committed), then the connection is closed.
- "truncated": acted on, then a 2xx whose JSON body is cut in the middle (its Content-Length
  matches the cut body, so the client's HTTP layer is fine and its JSON decoding is not).
- "non_json": acted on, then the right status with an HTML proxy page (text/html).
- "slow": acted on, then the answer waits `slow_seconds`, past a client's timeout.
- "storm429": this and the next `storm_length - 1` requests of the same class (read/write) get
  a 429 with a tiny retry_after; none of them takes a rate-limit slot.
- "commit_500": a create or update is committed, then answered 500; a read behaves like "500".
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["ALL_KINDS", "FaultPlan", "FaultDraw"]

ALL_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "reset_before",
    "reset_after",
    "truncated",
    "non_json",
    "slow",
    "storm429",
    "commit_500",
)


@dataclass(frozen=True)
class FaultPlan:
    """Which requests fail and how; the same plan and seed always fail the same requests.

    `kinds` is a sequence (drawn uniformly) or a mapping kind -> relative weight. `at` pins a
    kind to a request number and wins over the random draw.
    """

    rate: float = 0.0
    kinds: Sequence[str] | Mapping[str, float] = ALL_KINDS
    seed: int = 0
    at: Mapping[int, str] = field(default_factory=dict)
    slow_seconds: float = 5.0
    storm_length: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")
        unknown = [k for k in (*self.kinds, *self.at.values()) if k not in ALL_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(ALL_KINDS)}")
        if self.rate > 0 and not self.kinds:
            raise ValueError("a fault rate needs at least one kind")
        if self.storm_length < 1 or self.slow_seconds < 0:
            raise ValueError("storm_length must be >= 1 and slow_seconds >= 0")

    @classmethod
    def parse(
        cls, spec: str, *, seed: int = 0, slow_seconds: float = 5.0, storm_length: int = 5
    ) -> FaultPlan:
        """Build a plan from `kind:rate` and `kind@request_number` items, comma-separated.

        Rates add up to the plan's overall rate; each kind is then drawn in proportion to its
        own rate: "500:0.02,reset_after:0.01" fails 3 % of requests, two thirds of them 500s.
        """
        weights: dict[str, float] = {}
        at: dict[int, str] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if "@" in item:
                kind, _, number = item.partition("@")
                if not number.strip().isdigit() or int(number) < 1:
                    raise ValueError(f"bad fault item {item!r}: want kind@request_number")
                at[int(number)] = kind.strip()
            elif ":" in item:
                kind, _, rate = item.partition(":")
                try:
                    weights[kind.strip()] = weights.get(kind.strip(), 0.0) + float(rate)
                except ValueError:
                    raise ValueError(f"bad fault item {item!r}: want kind:rate") from None
            else:
                raise ValueError(f"bad fault item {item!r}: want kind:rate or kind@number")
        return cls(
            rate=sum(weights.values()),
            kinds=weights if weights else ALL_KINDS,
            seed=seed,
            at=at,
            slow_seconds=slow_seconds,
            storm_length=storm_length,
        )


class FaultDraw:
    """Turns a plan into a decision per request number, in order, from one seeded generator."""

    __slots__ = ("plan", "_rng", "_kinds", "_cumulative", "_storms")

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        if isinstance(plan.kinds, Mapping):
            self._kinds = tuple(plan.kinds)
            weights = [float(plan.kinds[k]) for k in self._kinds]
        else:
            self._kinds = tuple(plan.kinds)
            weights = [1.0] * len(self._kinds)
        total, running = sum(weights) or 1.0, 0.0
        self._cumulative: list[float] = []
        for weight in weights:
            running += weight / total
            self._cumulative.append(running)
        self._storms: dict[str, int] = {}

    def draw(self, number: int) -> str | None:
        """The fault for request `number`, or None.

        Two numbers are drawn for every request, faulted or not, so request n's fate depends
        only on the plan and n, never on what earlier requests did.
        """
        hit, pick = self._rng.random(), self._rng.random()
        pinned = self.plan.at.get(number)
        if pinned is not None:
            return pinned
        if hit >= self.plan.rate:
            return None
        for kind, edge in zip(self._kinds, self._cumulative, strict=True):
            if pick < edge:
                return kind
        return self._kinds[-1]

    def storm(self, cls: str, kind: str | None) -> bool:
        """Whether this request of class `cls` is part of a 429 storm (starting one if asked)."""
        left = self._storms.get(cls, 0)
        if left > 0:
            self._storms[cls] = left - 1
            return True
        if kind == "storm429":
            self._storms[cls] = self.plan.storm_length - 1
            return True
        return False
