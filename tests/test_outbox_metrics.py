"""The outbox's OpenTelemetry gauges and counters, read through the SDK's in-memory reader
(a meter provider of the test's own: the global one is left alone)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from getbill_async import GetBillClient, Outbox
from getbill_async.outbox._metrics import instruments_for
from getbill_async.sandbox import Sandbox

pytestmark = pytest.mark.timeout(30)


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    found: list[Any] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += list(metric.data.data_points)
    return found


async def test_entries_by_state_merged_and_writes_sent(
    sandbox: Sandbox, client: GetBillClient, tmp_path: Path
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, tmp_path / "m.db", drain=False) as producer:
        await producer.create(debt_id="no-such-debt", type="call", call_id="m-bad")
        for i in range(3):
            await producer.create(debt_id=debt, type="call", call_id=f"m-{i}")
        await producer.update("m-0", status="deal_found")
    async with Outbox(client, tmp_path / "m.db", poll=0.02, name="dialer") as outbox:
        outbox.drainer.metrics = instruments_for("dialer", provider)
        await outbox.join(timeout=10)
        entries: dict[str, int] = {}
        for _ in range(100):  # the drainer samples the counts about once a second
            entries = {
                p.attributes["state"]: p.value for p in points(reader, "getbill.outbox.entries")
            }
            if entries.get("done") == 3:
                break
            await asyncio.sleep(0.05)
    assert entries == {"pending": 0, "in_flight": 0, "done": 3, "dead": 1, "held": 0}
    [merged] = points(reader, "getbill.outbox.merged")
    assert (merged.value, merged.attributes["getbill.outbox"]) == (1, "dialer")
    [writes] = points(reader, "getbill.outbox.writes")
    assert (writes.value, dict(writes.attributes)) == (
        3,
        {"getbill.outbox": "dialer", "op": "create"},
    )
    provider.shutdown()
