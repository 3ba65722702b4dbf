"""A service that receives GetBill's webhooks and looks up the debt behind each followup.

With no options the whole loop runs on loopback: an embedded sandbox sends signed
followup.created / followup.updated events to this service while a client logs and updates a
few followups. With ``--serve`` it only listens, for the real API (set GETBILL_WEBHOOK_SECRET,
GETBILL_TOKEN, and GETBILL_BASE_URL if not the default) until Ctrl-C.

    python examples/webhook_service.py
    python examples/webhook_service.py --serve --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import os

from aiohttp import web

from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox
from getbill_async.webhooks import (
    FollowupCreated,
    FollowupUpdated,
    UnknownEvent,
    WebhookEvent,
    WebhookReceiver,
)


def make_app(secret: str, client: GetBillClient) -> tuple[web.Application, WebhookReceiver]:
    async def on_event(event: WebhookEvent) -> None:
        # Runs after GetBill got its 2xx: taking our time here delays nobody.
        if isinstance(event, (FollowupCreated, FollowupUpdated)):
            debt = await client.followups.debt_of(event.data)
            who = f"{debt.firstname} {debt.lastname}, {debt.amount} {debt.currency}"
            print(f"{event.type}: {event.data.id} ({event.data.status}) for {who}")
            if event.changes:
                print(f"  changed: {', '.join(sorted(event.changes))}")
        elif isinstance(event, UnknownEvent):
            print(f"an event this SDK does not know yet: {event.type}")
        else:
            print(f"{event.type}")

    receiver = WebhookReceiver(secret, on_event)
    app = web.Application()
    app.router.add_post("/getbill/webhooks", receiver.handler)
    app.on_cleanup.append(receiver.on_cleanup)
    return app, receiver


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def demo() -> None:
    secret = "whsec_demo"
    async with Sandbox(followups=500) as sandbox:
        async with GetBillClient(sandbox.token, base_url=sandbox.base_url) as client:
            app, receiver = make_app(secret, client)
            runner = await serve(app, 0)
            sandbox.add_webhook(
                f"http://127.0.0.1:{runner.addresses[0][1]}/getbill/webhooks", secret
            )
            debts = sandbox.debt_ids()[:3]
            for n, debt_id in enumerate(debts):
                created = await client.followups.create(
                    debt_id=debt_id, type="call", call_id=f"demo-{n}"
                )
                await client.followups.update(
                    created.id, status="deal_found", summary="Agreed to pay"
                )
            await sandbox.webhooks_idle()
            await runner.cleanup()  # waits for the callbacks still running
            print(
                f"{receiver.received} events received, {sandbox.stats.webhooks_delivered} delivered"
            )


async def listen(port: int) -> None:
    secret = os.environ["GETBILL_WEBHOOK_SECRET"]
    async with GetBillClient(
        base_url=os.environ.get("GETBILL_BASE_URL", "https://getbill.io/external-api/v1")
    ) as client:
        runner = await serve(make_app(secret, client)[0], port)
        print(f"listening on http://127.0.0.1:{port}/getbill/webhooks (Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="only listen (for the real API)")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    try:
        asyncio.run(listen(args.port) if args.serve else demo())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
