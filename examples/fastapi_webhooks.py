"""A FastAPI service that receives GetBill's webhooks and looks up the debt behind each followup.

The FastAPI twin of webhook_service.py (``pip install fastapi uvicorn``). The receiver is a
plain ASGI app mounted in the FastAPI app; the app's lifespan waits for the callbacks still
running when the server stops. With no options the whole loop runs on loopback: an embedded
sandbox sends signed followup.created / followup.updated events to this service while a
client logs and updates a few followups. With ``--serve`` it only listens, for the real API
(set GETBILL_WEBHOOK_SECRET, GETBILL_TOKEN, and GETBILL_BASE_URL if not the default) until
Ctrl-C.

    python examples/fastapi_webhooks.py
    python examples/fastapi_webhooks.py --serve --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket

import uvicorn
from fastapi import FastAPI

from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox
from getbill_async.webhooks import (
    FollowupCreated,
    FollowupUpdated,
    UndecodedEvent,
    UnknownEvent,
    WebhookEvent,
    WebhookReceiver,
)

# A mount answers below its path: give GetBill the URL with the trailing slash.
ENDPOINT = "/getbill/webhooks/"


def make_app(secret: str, client: GetBillClient) -> tuple[FastAPI, WebhookReceiver]:
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
        elif isinstance(event, UndecodedEvent):
            # Signed, so from GetBill, but not as documented: keep it to look at later.
            print(f"a {event.type or 'body'} that did not decode: {event.error}")
        else:
            print(f"{event.type}")

    receiver = WebhookReceiver(secret, on_event)
    api = FastAPI(lifespan=receiver.lifespan)  # shutdown waits for running callbacks
    api.mount(ENDPOINT.rstrip("/"), receiver.asgi)

    @api.get("/health")
    async def health() -> dict[str, int]:
        return {"received": receiver.received, "pending": receiver.pending}

    return api, receiver


async def start(api: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """uvicorn on 127.0.0.1:``port`` (0: any free port), serving until ``stop``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(api, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise SystemExit("the server did not start")
        await asyncio.sleep(0.01)
    return server, task, sock.getsockname()[1]


async def stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True  # what Ctrl-C does: the lifespan's shutdown runs
    await task


async def demo() -> None:
    secret = "whsec_demo"
    async with Sandbox(followups=500) as sandbox:
        async with GetBillClient(sandbox.token, base_url=sandbox.base_url) as client:
            api, receiver = make_app(secret, client)
            server, task, port = await start(api, 0)
            sandbox.add_webhook(f"http://127.0.0.1:{port}{ENDPOINT}", secret)
            for n, debt_id in enumerate(sandbox.debt_ids()[:3]):
                created = await client.followups.create(
                    debt_id=debt_id, type="call", call_id=f"demo-{n}"
                )
                await client.followups.update(
                    created.id, status="deal_found", summary="Agreed to pay"
                )
            await sandbox.webhooks_idle()
            await stop(server, task)  # waits for the callbacks still running
            print(
                f"{receiver.received} events received, {sandbox.stats.webhooks_delivered} delivered"
            )


async def listen(port: int) -> None:
    secret = os.environ["GETBILL_WEBHOOK_SECRET"]
    async with GetBillClient(
        base_url=os.environ.get("GETBILL_BASE_URL", "https://getbill.io/external-api/v1")
    ) as client:
        api, _ = make_app(secret, client)
        server, task, port = await start(api, port)
        print(f"listening on http://127.0.0.1:{port}{ENDPOINT} (Ctrl-C to stop)")
        try:
            await task  # uvicorn stops on Ctrl-C or SIGTERM
        finally:
            await stop(server, task)


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
