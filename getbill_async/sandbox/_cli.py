"""Command line for serving the sandbox: `add_arguments` fills a parser, `run` serves."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ._faults import FaultPlan
from ._sandbox import DEFAULT_WEBHOOK_SECRET, Sandbox

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    parser.add_argument("--followups", type=int, default=25_000, help="seeded followups")
    parser.add_argument("--seed", type=int, default=1, help="seed of the data (1)")
    parser.add_argument("--reads", type=int, default=1000, help="reads per window per client")
    parser.add_argument("--writes", type=int, default=500, help="writes per window per client")
    parser.add_argument("--window", type=float, default=3600.0, help="window in seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    parser.add_argument(
        "--faults",
        metavar="SPEC",
        default=None,
        help='fault plan, e.g. "500:0.02,reset_after:0.01,slow@12"',
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument(
        "--webhook-url",
        metavar="URL",
        default=None,
        help="POST signed followup.created/updated events to this URL",
    )
    parser.add_argument(
        "--webhook-secret",
        metavar="SECRET",
        default=DEFAULT_WEBHOOK_SECRET,
        help=f"secret that signs the webhooks ({DEFAULT_WEBHOOK_SECRET})",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; 0 on a clean stop, 2 on bad options, 1 if bind fails."""
    try:
        plan = FaultPlan.parse(args.faults, seed=args.fault_seed) if args.faults else None
        sandbox = Sandbox(
            followups=args.followups,
            seed=args.seed,
            reads=args.reads,
            writes=args.writes,
            window=args.window,
            latency=args.latency,
            faults=plan,
            host=args.host,
            port=args.port,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(sandbox, args))
    except KeyboardInterrupt:
        pass  # platforms without loop signal handlers stop here
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(sandbox: Sandbox, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        async with sandbox:
            print(f"GetBill sandbox: {args.followups} followups, seed {args.seed}")
            print(f"base URL:      {sandbox.base_url}")
            print(f"token URL:     {sandbox.token_url}")
            print(f"static token:  {sandbox.token}")
            print(f"client id:     {sandbox.client_id}")
            print(f"client secret: {sandbox.client_secret}")
            if args.webhook_url:
                print(f"webhooks to:   {args.webhook_url}")
            print("Ctrl-C to stop.", flush=True)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
