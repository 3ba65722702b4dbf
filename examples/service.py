"""An aiohttp service on one GetBill budget: webhooks, interactive lookups, a background export.

- ``POST /getbill/webhooks``: GetBill's events, acknowledged only once handled (a 5xx makes a
  retrying sender deliver again), with duplicates filtered out;
- ``GET /followups/{id}``: an interactive lookup for people waiting on an answer;
- a background export of every followup to a JSONL file, on the same client and budget, in
  the bulk lane: ``RateLimit(reserve=0.25)`` keeps a quarter of each window for the rest;
- instrumented: ``Hooks`` count tries, retries and budget waits; with ``opentelemetry-sdk``
  installed, spans and metrics go to the global providers (set up here when ``--otel``).

With no options it runs the whole loop on loopback and prints a summary: an embedded sandbox
with a strict window sends webhooks, while lookups arrive during the export. With ``--serve``
it only listens, for the real API (GETBILL_TOKEN, GETBILL_WEBHOOK_SECRET, GETBILL_BASE_URL).

    python examples/service.py [--otel]
    python examples/service.py --serve --port 8080 --export followups.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from getbill_async import (
    AttemptInfo,
    CallInfo,
    GetBillClient,
    Hooks,
    NotFoundError,
    RateLimit,
)
from getbill_async.webhooks import (
    DuplicateFilter,
    FollowupCreated,
    FollowupUpdated,
    WebhookEvent,
    WebhookReceiver,
)

CLIENT: web.AppKey[GetBillClient] = web.AppKey("client", GetBillClient)
RECEIVER: web.AppKey[WebhookReceiver] = web.AppKey("receiver", WebhookReceiver)


class Telemetry:
    """What the hooks saw: a few counters a health page (or a log line) can show."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.budget_wait: Counter[str] = Counter()  # seconds, by lane

    def hooks(self) -> Hooks:
        return Hooks(
            on_response=self._response,
            on_retry=lambda attempt, wait: self.counts.update(["retries"]),
            on_budget_wait=self._waited,
        )

    def _response(self, attempt: AttemptInfo) -> None:
        self.counts[attempt.call.lane] += 1
        if attempt.status == 429:
            self.counts["429s"] += 1

    def _waited(self, call: CallInfo, seconds: float) -> None:
        self.budget_wait[call.lane] += seconds


def make_app(client: GetBillClient, secret: str) -> web.Application:
    async def on_event(event: WebhookEvent) -> None:
        # Acknowledged only when this returns: raise, and the sender gets a 5xx.
        if isinstance(event, (FollowupCreated, FollowupUpdated)):
            debt = await client.followups.debt_of(event.data)
            print(f"webhook {event.type}: {event.data.id} for a debt of {debt.amount:g}")

    receiver = WebhookReceiver(
        secret, on_event, acknowledge="after", deadline=8.0, duplicates=DuplicateFilter()
    )

    async def lookup(request: web.Request) -> web.Response:
        try:
            followup = await client.followups.get(request.match_info["id"])
        except NotFoundError:
            return web.json_response({"error": "no such followup"}, status=404)
        return web.json_response(
            {"id": followup.id, "status": followup.status, "debt_id": followup.debt_id}
        )

    app = web.Application()
    app[CLIENT], app[RECEIVER] = client, receiver
    app.router.add_post("/getbill/webhooks", receiver.handler)
    app.router.add_get("/followups/{id}", lookup)
    app.on_cleanup.append(receiver.on_cleanup)
    return app


async def start(app: web.Application, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def setup_otel() -> Any:
    """The OpenTelemetry SDK with an in-memory span exporter (a real service exports OTLP)."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


async def demo(with_otel: bool) -> None:
    from getbill_async.sandbox import Sandbox

    otel = setup_otel() if with_otel else None
    secret, telemetry = "whsec_demo", Telemetry()
    # A strict window: the export alone would spend it in bursts.
    reads, writes, window = 30, 20, 2.0
    async with Sandbox(
        followups=4_000, seed=4, reads=reads, writes=writes, window=window
    ) as sandbox:
        client = GetBillClient(
            sandbox.token,
            base_url=sandbox.base_url,
            # A quarter of each window is kept for the interactive lane: lookups and webhook
            # callbacks find room while the export (bulk lane) runs.
            rate_limit=RateLimit(reads=reads, writes=writes, window=window, reserve=0.25),
            hooks=telemetry.hooks(),
        )
        async with client, aiohttp.ClientSession() as http:
            runner, root = await start(make_app(client, secret), 0)
            sandbox.add_webhook(root + "/getbill/webhooks", secret)
            with tempfile.TemporaryDirectory() as tmp:
                export = asyncio.create_task(client.followups.export(Path(tmp) / "followups.jsonl"))
                waits = []
                for followup_id in sandbox.followup_ids()[:6]:
                    await asyncio.sleep(0.4)
                    started = time.monotonic()
                    async with http.get(f"{root}/followups/{followup_id}") as resp:
                        assert resp.status == 200, await resp.text()
                    waits.append(time.monotonic() - started)
                debt = sandbox.debt_ids()[0]
                created = await client.followups.create(debt_id=debt, type="call", call_id="s-1")
                await client.followups.update(created.id, status="deal_found")
                report = await export
            await sandbox.webhooks_idle()
            await runner.cleanup()
    receiver = runner.app[RECEIVER]
    print(f"export: {report.items} followups in {report.requests} requests")
    print(f"lookups: {len(waits)}, worst {max(waits):.2f}s")
    print(f"webhooks: {receiver.received} received, {receiver.failed} failed")
    counts = telemetry.counts
    print(
        f"requests: {counts['interactive']} interactive, {counts['bulk']} bulk, "
        f"{counts['retries']} retries, {counts['429s']} 429s"
    )
    waits = telemetry.budget_wait
    print(f"budget waits: interactive {waits['interactive']:.1f}s, bulk {waits['bulk']:.1f}s")
    if otel is not None:
        spans, reader = otel
        names = Counter(s.name for s in spans.get_finished_spans() if s.parent is not None)
        print("spans: " + ", ".join(f"{n} x{c}" for n, c in sorted(names.items())))
        data = reader.get_metrics_data()
        metric_names = sorted(
            {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
        )
        print("metrics: " + ", ".join(metric_names))


async def serve(port: int, export_to: str | None) -> None:
    telemetry = Telemetry()
    async with GetBillClient(
        base_url=os.environ.get("GETBILL_BASE_URL", "https://getbill.io/external-api/v1"),
        hooks=telemetry.hooks(),
    ) as client:
        runner, root = await start(make_app(client, os.environ["GETBILL_WEBHOOK_SECRET"]), port)
        print(f"listening on {root} (Ctrl-C to stop)")
        try:
            if export_to:
                report = await client.followups.export(export_to, resume=True)
                print(f"export: {report.items} followups -> {report.path}")
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="only listen (for the real API)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--export", help="with --serve: export every followup to this file")
    parser.add_argument("--otel", action="store_true", help="set up the OpenTelemetry SDK")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.export) if args.serve else demo(args.otel))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
