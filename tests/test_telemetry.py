"""Telemetry: spans and metrics read back with the OpenTelemetry SDK, and the plain hooks.

The SDK is set as the global provider once for the session (OpenTelemetry allows no other);
each test tells its own data apart by the sandbox's port, which is new for every sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from getbill_async import (
    AmbiguousWriteError,
    AttemptInfo,
    CallInfo,
    ConfigurationError,
    GetBillClient,
    Hooks,
    RateLimit,
    RetryPolicy,
)
from getbill_async.sandbox import FaultPlan, Sandbox

FAST = RetryPolicy(base=0.001, cap=0.01)


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()

    def finished(self) -> Sequence[ReadableSpan]:
        return self.spans.get_finished_spans()

    def points(self, name: str, port: int) -> list[Any]:
        """The data points of metric ``name`` about the server on ``port``."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [
                            p
                            for p in metric.data.data_points
                            if (p.attributes or {}).get("server.port") == port
                        ]
        return found


@pytest.fixture(scope="session")
def global_otel() -> Telemetry:
    telemetry = Telemetry()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(telemetry.spans))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[telemetry.reader]))
    return telemetry


@pytest.fixture
def otel(global_otel: Telemetry) -> Iterator[Telemetry]:
    global_otel.spans.clear()
    yield global_otel
    global_otel.spans.clear()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(followups=300, seed=5) as sb:
        yield sb


def client_for(sb: Sandbox, **options: Any) -> GetBillClient:
    options.setdefault("retry", FAST)
    return GetBillClient(sb.token, base_url=sb.base_url, **options)


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_call_is_a_parent_span_with_one_client_span_per_try(
    otel: Telemetry, sandbox: Sandbox
) -> None:
    followup_id = sandbox.followup_ids()[3]
    async with client_for(sandbox) as client:
        await client.followups.get(followup_id)
    (parent,) = (s for s in otel.finished() if s.kind is SpanKind.INTERNAL)
    (child,) = (s for s in otel.finished() if s.kind is SpanKind.CLIENT)
    assert child.name == "GET /followups/{id}" and parent.name == "getbill GET /followups/{id}"
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert attributes_of(child) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": sandbox.port,
        "url.template": "/followups/{id}",
        "url.full": f"{sandbox.base_url}/followups/{followup_id}",
        "http.response.status_code": 200,
    }
    assert child.status.status_code is StatusCode.UNSET
    assert attributes_of(parent)["getbill.lane"] == "interactive"
    assert attributes_of(parent)["getbill.attempts"] == 1
    (duration,) = otel.points("http.client.request.duration", sandbox.port)
    assert duration.count == 1 and 0 < duration.sum < 5
    assert duration.attributes["url.template"] == "/followups/{id}"


async def test_a_retry_is_a_second_client_span_with_its_resend_count(
    otel: Telemetry,
) -> None:
    async with Sandbox(followups=50, seed=5, faults=FaultPlan(at={1: "503"})) as sb:
        async with client_for(sb) as client:
            page = await client.followups.list(limit=5)
        assert len(page.data) == 5
        first, second = sorted(
            (s for s in otel.finished() if s.kind is SpanKind.CLIENT),
            key=lambda s: s.start_time or 0,
        )
        assert first.name == second.name == "GET /followups"
        assert attributes_of(first)["http.response.status_code"] == 503
        assert attributes_of(first)["error.type"] == "503"
        assert first.status.status_code is StatusCode.ERROR
        assert "http.request.resend_count" not in attributes_of(first)
        assert attributes_of(second)["http.request.resend_count"] == 1
        assert "error.type" not in attributes_of(second)
        (retries,) = otel.points("getbill.retries", sb.port)
        assert retries.value == 1 and retries.attributes["error.type"] == "503"
        statuses = sorted(
            p.attributes["http.response.status_code"]
            for p in otel.points("http.client.request.duration", sb.port)
        )
        assert statuses == [200, 503]


async def test_tries_without_an_answer_or_with_a_broken_one_name_their_error(
    otel: Telemetry,
) -> None:
    plan = FaultPlan(at={1: "slow", 2: "truncated"}, slow_seconds=1.0)
    async with Sandbox(followups=50, seed=5, faults=plan) as sb:
        async with client_for(sb, timeout=0.3) as client:
            await client.followups.list(limit=5)
        timed_out, truncated, fine = sorted(
            (s for s in otel.finished() if s.kind is SpanKind.CLIENT),
            key=lambda s: s.start_time or 0,
        )
    assert attributes_of(timed_out)["error.type"] == "APITimeoutError"
    assert "http.response.status_code" not in attributes_of(timed_out)
    assert attributes_of(truncated)["error.type"] == "DecodeError"
    assert attributes_of(truncated)["http.response.status_code"] == 200
    assert attributes_of(truncated)["http.request.resend_count"] == 1
    assert attributes_of(fine)["http.request.resend_count"] == 2
    assert "error.type" not in attributes_of(fine)


async def test_the_lane_of_a_view_is_on_its_spans_and_waits(
    otel: Telemetry, sandbox: Sandbox
) -> None:
    async with client_for(sandbox) as client:
        await client.with_options(priority="bulk").followups.get(sandbox.followup_ids()[0])
    (call,) = (s for s in otel.finished() if s.kind is SpanKind.INTERNAL)
    assert attributes_of(call)["getbill.lane"] == "bulk"
    (wait,) = otel.points("getbill.budget.wait", sandbox.port)
    assert wait.attributes["getbill.lane"] == "bulk"


async def test_429s_and_ambiguous_writes_are_counted(otel: Telemetry) -> None:
    plan = FaultPlan(at={1: "storm429", 3: "commit_500"}, storm_length=1)
    async with Sandbox(followups=50, seed=5, faults=plan) as sb:
        async with client_for(sb) as client:
            await client.followups.list(limit=1)
            with pytest.raises(AmbiguousWriteError):
                await client.followups.create(debt_id=sb.debt_ids()[0], type="sms")
        (limited,) = otel.points("getbill.rate_limited", sb.port)
        assert limited.value == 1 and limited.attributes["getbill.budget.class"] == "read"
        (ambiguous,) = otel.points("getbill.ambiguous_writes", sb.port)
        assert ambiguous.value == 1 and ambiguous.attributes["url.template"] == "/followups"
        create = next(s for s in otel.finished() if s.name == "getbill POST /followups")
        assert create.status.status_code is StatusCode.ERROR
        assert attributes_of(create)["error.type"] == "AmbiguousWriteError"
        assert [e.name for e in create.events] == ["getbill.ambiguous_write"]


async def test_budget_waits_are_on_the_call_span_and_in_the_metrics(
    otel: Telemetry, sandbox: Sandbox
) -> None:
    rate = RateLimit(reads=2, writes=2, window=0.3)
    async with client_for(sandbox, rate_limit=rate) as client:
        for _ in range(3):
            await client.followups.list(limit=1)
        status = await client.budget_status()
    calls = sorted(
        (s for s in otel.finished() if s.kind is SpanKind.INTERNAL),
        key=lambda s: s.start_time or 0,
    )
    waited = attributes_of(calls[-1])["getbill.budget.wait"]
    assert 0.1 < waited < 2
    (event,) = calls[-1].events
    assert event.name == "getbill.budget_wait"
    assert event.attributes == {"getbill.budget.wait": waited, "getbill.lane": "interactive"}
    (wait,) = otel.points("getbill.budget.wait", sandbox.port)
    assert wait.count == 3 and wait.sum == pytest.approx(waited)
    assert dict(wait.attributes) == {
        "getbill.budget.class": "read",
        "getbill.lane": "interactive",
        "server.address": "127.0.0.1",
        "server.port": sandbox.port,
    }
    used = {
        p.attributes["getbill.budget.class"]: p.value
        for p in otel.points("getbill.budget.used", sandbox.port)
    }
    remaining = {
        p.attributes["getbill.budget.class"]: p.value
        for p in otel.points("getbill.budget.remaining", sandbox.port)
    }
    assert set(used) == set(remaining) == {"read", "write"}
    assert used["read"] + remaining["read"] == 2 and remaining["write"] == 2
    assert status.reads.limit == 2


async def test_no_secret_and_no_id_in_any_span_or_metric(otel: Telemetry, sandbox: Sandbox) -> None:
    ids = sandbox.followup_ids()[:2]
    debt = sandbox.debt_ids()[0]
    async with client_for(sandbox) as client:
        created = await client.followups.create(debt_id=debt, type="call", call_id="c-9")
        await client.followups.update(created.id, status="deal_found")
        await client.followups.get(ids[0])
        await client.followups.list_for_debt(debt, limit=2)
        await client.debts.get(debt)
        await client.debts.list(limit=2)
        async for _ in client.followups.iterate(limit=100, concurrency=2):
            pass
    spans = otel.finished()
    names = {s.name for s in spans if s.kind is SpanKind.CLIENT}
    assert names == {
        "POST /followups",
        "PUT /followups/{id}",
        "GET /followups/{id}",
        "GET /followups/debt/{debt_id}",
        "GET /debts/{id}",
        "GET /debts",
        "GET /followups",
    }
    text = repr([(s.name, s.attributes, [e.attributes for e in s.events]) for s in spans])
    text += repr(otel.reader.get_metrics_data())
    assert sandbox.token not in text and "Bearer" not in text
    for identifier in (*ids, debt, created.id):
        assert identifier not in "".join(names)
    lanes = {attributes_of(s)["getbill.lane"] for s in spans if s.kind is SpanKind.INTERNAL}
    assert lanes == {"interactive", "bulk"}  # the walk runs in the bulk lane


# hooks -----------------------------------------------------------------------------------------


class Recorded:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []

    def hooks(self) -> Hooks:
        return Hooks(
            on_request=lambda a: self.seen.append(("request", a.call.name, a.resend_count)),
            on_response=lambda a: self.seen.append(("response", a.call.name, a.status)),
            on_retry=lambda a, wait: self.seen.append(("retry", a.call.name, a.error_type)),
            on_budget_wait=lambda c, s: self.seen.append(("budget_wait", c.name, c.lane)),
            on_ambiguous_write=lambda c, e: self.seen.append(("ambiguous", c.name, type(e))),
        )


async def test_hooks_see_tries_retries_waits_and_ambiguous_writes() -> None:
    plan = FaultPlan(at={1: "502", 4: "commit_500"})
    recorded = Recorded()
    rate = RateLimit(reads=2, writes=10, window=0.3)
    async with Sandbox(followups=50, seed=5, faults=plan) as sb:
        async with client_for(sb, hooks=recorded.hooks(), rate_limit=rate) as client:
            await client.followups.list(limit=1)  # tries 1 (502) and 2
            await client.followups.list(limit=1)  # waits for the window
            with pytest.raises(AmbiguousWriteError):
                await client.followups.create(debt_id=sb.debt_ids()[0], type="sms")
    get, post = "GET /followups", "POST /followups"
    assert recorded.seen == [
        ("request", get, 0),
        ("response", get, 502),
        ("retry", get, "502"),
        ("request", get, 1),
        ("response", get, 200),
        ("budget_wait", get, "interactive"),
        ("request", get, 0),
        ("response", get, 200),
        ("request", post, 0),
        ("response", post, 500),
        ("ambiguous", post, AmbiguousWriteError),
    ]


async def test_a_hook_that_raises_never_fails_the_request(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(attempt: AttemptInfo) -> None:
        raise RuntimeError("hook bug")

    caplog.set_level(logging.ERROR, logger="getbill_async")
    async with client_for(sandbox, hooks=Hooks(on_response=broken)) as client:
        page = await client.followups.list(limit=2)
    assert len(page.data) == 2
    assert any("on_response hook raised" in r.getMessage() for r in caplog.records)


def test_hooks_are_checked() -> None:
    async def coroutine(attempt: AttemptInfo) -> None:
        await asyncio.sleep(0)

    with pytest.raises(ConfigurationError, match="Hooks.on_request must be a plain function"):
        Hooks(on_request=coroutine)
    with pytest.raises(ConfigurationError, match="Hooks.on_retry must be a function, got int"):
        Hooks(on_retry=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="hooks must be a Hooks, got dict"):
        GetBillClient("t", hooks={"on_request": print})  # type: ignore[arg-type]


def test_call_info_names_by_template_never_by_path() -> None:
    call = CallInfo("GET", None, "/followups/f1", "read", "bulk", ("http://h:1", "h", 1))
    assert call.name == "GET" and "f1" not in repr(call)


_WITHOUT_OTEL = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
from getbill_async import GetBillClient, Hooks
from getbill_async.sandbox import Sandbox

async def main() -> None:
    seen = []
    async with Sandbox(followups=20, seed=1) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url) as plain:
            await plain.followups.list(limit=1)
            assert plain._pipeline().events is None
        hooks = Hooks(on_response=lambda a: seen.append(a.status))
        async with GetBillClient(sb.token, base_url=sb.base_url, hooks=hooks) as hooked:
            await hooked.followups.list(limit=1)
    assert seen == [200], seen
    print("ok")

asyncio.run(main())
"""

_NO_SDK = """
import asyncio
from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox

async def main() -> None:
    async with Sandbox(followups=20, seed=1) as sb:
        async with GetBillClient(sb.token, base_url=sb.base_url) as client:
            await client.followups.list(limit=1)
            events = client._pipeline().events
            assert events is not None and not any(o.listening() for o in events.observers)
    print("ok")

asyncio.run(main())
"""


@pytest.mark.parametrize("script", [_WITHOUT_OTEL, _NO_SDK], ids=["without-api", "api-no-sdk"])
def test_telemetry_without_the_extra_or_without_an_sdk(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
