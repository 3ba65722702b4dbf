"""The outbox, proved against a model: a Hypothesis state machine drives one outbox through
random sequences of creates (with and without ``call_id``), updates, closes with any grace,
reopens, simulated kills, a second drainer on the same store, store faults (an error before
the store acted, or a reply lost after it did) and time passing, against a server (the
sandbox behind ``tests/outbox_model.FaultyProxy``) that answers, commits then fails, hangs
past the client's timeout, or refuses with any status (409, 410, 413 ... included). After
every step:

- each keyed call exists on the server at most once; a create without ``call_id`` is never
  sent twice;
- per key, no write overtakes an earlier one (each update carries a rising ``duration_ms``,
  and the server's commits of a key never go back);

and when the server answers again and the outbox is left to settle (a rule, and the end of
every example): ``join()`` returns, nothing is pending or in flight (no entry stays in flight
without a live owner past its lease), and every keyed call and every create without
``call_id`` that is neither dead nor held exists on the server exactly once.

Runs on SQLite and on Redis. Deterministic (``derandomize``) and bounded for ``make test``;
``GETBILL_MODEL_EXAMPLES=N`` runs more examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from getbill_async import GetBillClient, Outbox, OutboxStoreError, RateLimit, RetryPolicy
from getbill_async.outbox._options import store_for
from getbill_async.sandbox import Sandbox
from tests.outbox_faults import FaultyStore
from tests.outbox_model import MODES, FaultyProxy
from tests.redis_fixtures import RedisServer

EXAMPLES = int(os.environ.get("GETBILL_MODEL_EXAMPLES", "12"))
STEPS = 20
KEYS = ("k0", "k1", "k2", "k3")
FAULTY = ("claim", "finish", "renew", "enqueue_create", "enqueue_update", "prune")
OPTIONS: dict[str, Any] = {"lease": 1.2, "lease_margin": 0.1, "grace": 0.3, "poll": 0.02}
OPTIONS |= {"concurrency": 3}


class OutboxModel(RuleBasedStateMachine):
    """One outbox, one server; see the module docstring. ``STORE``: a SQLite directory
    (``sqlite:``) or a Redis URL."""

    STORE = ""
    tried = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).tried += 1
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory(prefix="getbill-model-")
        self.name = f"model-{uuid.uuid4().hex[:8]}"
        self.store = os.path.join(self.dir.name, "o.db") if not self.STORE else self.STORE
        self.sandbox = Sandbox(followups=40, seed=3, latency=0.15)
        self.run(self.sandbox.start())
        self.proxy = FaultyProxy(self.sandbox.root_url)
        self.run(self.proxy.start())
        self.debts = self.sandbox.debt_ids()[:3]
        base = self.proxy.url + self.sandbox.base_url.removeprefix(self.sandbox.root_url)
        retry = RetryPolicy(max_tries=2, base=0.01, cap=0.02)
        rate = RateLimit(reads=100_000, writes=100_000, window=60.0)
        self.client = GetBillClient(
            self.sandbox.token, base_url=base, timeout=0.3, retry=retry, rate_limit=rate
        )
        self.box = self.outbox()
        self.run(self.box.open())
        self.keys: set[str] = set()
        self.unsure: set[str] = set()  # creates whose enqueue raised: stored or not
        self.other: Outbox | None = None
        self.tokens = 0
        self.duration = 0

    def outbox(self) -> Outbox:
        self.faulty = FaultyStore(store_for(self.store, self.name))
        return Outbox(self.client, self.faulty, **OPTIONS)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # -- what a service does ----------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), debt=st.integers(0, 2))
    def create_keyed(self, key: str, debt: int) -> None:
        try:
            self.run(self.box.create(debt_id=self.debts[debt], type="call", call_id=key))
        except OutboxStoreError:
            return  # stored or not: nothing is promised of it but "at most once"
        self.keys.add(key)

    @rule(debt=st.integers(0, 2))
    def create_keyless(self, debt: int) -> None:
        self.tokens += 1
        summary = f"t{self.tokens}"
        try:
            self.run(self.box.create(debt_id=self.debts[debt], type="sms", summary=summary))
        except OutboxStoreError:
            self.unsure.add(summary)

    @rule(key=st.sampled_from(KEYS))
    def update(self, key: str) -> None:
        if key in self.keys:
            self.duration += 1
            with contextlib.suppress(OutboxStoreError):
                self.run(self.box.update(key, duration_ms=self.duration))

    @rule(method=st.sampled_from(FAULTY), lost_reply=st.booleans())
    def store_fault(self, method: str, lost_reply: bool) -> None:
        """The store's next ``method`` fails: before it acted, or after (its reply lost)."""
        faults = self.faulty.after if lost_reply else self.faulty.before
        faults.setdefault(method, []).append(OutboxStoreError(f"{method}: injected fault"))

    # -- what the world does ----------------------------------------------------------------

    @rule(mode=st.sampled_from(MODES))
    def server(self, mode: str) -> None:
        self.proxy.mode = mode

    @rule(seconds=st.sampled_from((0.05, 0.2, 0.5)))
    def time_passes(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    @rule(grace=st.sampled_from((0.0, 0.05, 0.3)), same=st.booleans())
    def close_and_reopen(self, grace: float, same: bool) -> None:
        self.run(self.box.close(grace=grace))
        if not same:
            self.box = self.outbox()
        self.run(self.box.open())

    @rule()
    def kill(self) -> None:
        """As if the process died: its store goes first, so nothing it does after reaches
        the store (its writes on the wire land or not); a new process opens the outbox."""

        async def die() -> None:
            await self.box._store.close()
            self.box.drainer.abort()
            await self.box.drainer.stop(0)

        self.run(die())
        self.box = self.outbox()
        self.run(self.box.open())

    @rule()
    def second_drainer(self) -> None:
        """Another process drains the same store (once an example)."""
        if self.other is None:
            store = store_for(self.store, self.name)
            self.other = Outbox(self.client, store, **OPTIONS)
            self.run(self.other.open())

    @rule()
    def settle(self) -> None:
        self.proxy.mode = "answer"
        self.faulty.before.clear()
        self.faulty.after.clear()
        self.run(self.box.join(timeout=20))
        self.run(self.check_settled())

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def never_twice(self) -> None:
        keyed = self.sandbox.created_per_call_id()
        assert all(count <= 1 for count in keyed.values()), keyed
        keyless = self.keyless()
        assert all(count <= 1 for count in keyless.values()), keyless

    @invariant()
    def in_order(self) -> None:
        seen: dict[str, int] = {}
        for name, duration in self.proxy.commits:
            if name in KEYS and duration is not None:
                assert duration >= seen.get(name, 0), (name, self.proxy.commits)
                seen[name] = duration

    def keyless(self) -> Counter[str]:
        made = self.sandbox.created_followups()
        return Counter(str(f["summary"]) for f in made if f.get("call_id") is None)

    async def check_settled(self) -> None:
        status = await self.box.status()
        assert (status.pending, status.in_flight) == (0, 0), status
        parked = await self.box.dead()
        dead_keys = {d.key for d in parked if d.op == "create"}
        parked_tokens = {d.fields.get("summary") for d in parked if d.key is None}
        keyed = self.sandbox.created_per_call_id()
        for key in self.keys - dead_keys:
            assert keyed.get(key) == 1, (key, keyed, parked)
        keyless = self.keyless()
        for n in range(1, self.tokens + 1):
            if f"t{n}" not in parked_tokens | self.unsure:
                assert keyless[f"t{n}"] == 1, (n, keyless, parked)

    def teardown(self) -> None:
        try:
            self.settle()
        finally:

            async def down() -> None:
                await self.box.close(grace=0)
                if self.other is not None:
                    await self.other.close(grace=0)
                await self.client.close()
                await self.proxy.stop()
                await self.sandbox.stop()

            self.run(down())
            self.loop.close()
            self.dir.cleanup()


def run_model(store: str) -> int:
    class Model(OutboxModel):
        STORE = store
        tried = 0

    run_state_machine_as_test(
        Model,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    return Model.tried


@pytest.mark.timeout(int(os.environ.get("GETBILL_MODEL_TIMEOUT", "120")))
def test_the_outbox_keeps_its_promises_on_sqlite() -> None:
    tried = run_model("")
    print(f"\noutbox model on SQLite: {tried} examples")


@pytest.mark.timeout(int(os.environ.get("GETBILL_MODEL_TIMEOUT", "120")))
def test_the_outbox_keeps_its_promises_on_redis(redis_server: RedisServer) -> None:
    tried = run_model(redis_server.url.rpartition("/")[0] + "/7")
    print(f"\noutbox model on Redis: {tried} examples")
