"""The ``getbill`` command: the parser and ``main``; one module per command beside it.

Commands: ``sandbox`` (serve the embedded sandbox), ``export``, ``log``, ``sync``, ``budget``
and ``demo``. Every command that sends requests takes the flags of ``_common``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .. import __version__
from .._constants import LOGGER_NAME
from ..errors import ConfigurationError, GetBillError
from . import _budget, _demo, _export, _log, _sync
from ._common import add_client_options, check_flags, make_client

__all__ = ["build_parser", "main"]


def _cancel_on_sigterm() -> None:
    """SIGTERM (a service manager's stop, ``kill``) ends the command as Ctrl-C does: the main
    task is cancelled, so an export or a log commits what it wrote before it exits."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def _with_client(args: argparse.Namespace, log: _log.LogOptions | None) -> int:
    _cancel_on_sigterm()
    client = make_client(args)
    try:
        async with client:
            # The command's work is bulk work: a service sharing the OAuth client through
            # Redis keeps the reserve of every window for its interactive calls.
            bulk = client.in_lane("bulk")
            if args.command == "export":
                return await _export.run_export(args, bulk)
            if args.command == "sync":
                return await _sync.run_sync(args, bulk)
            if log is None:  # getbill log --verify
                from ._log_verify import verify_log

                return await verify_log(args, bulk)
            assert log is not None
            return await _log.run_log(log, bulk)
    finally:
        closer = getattr(client.budget, "aclose", None)  # a RedisBudget owns a connection
        if closer is not None:
            await closer()


def build_parser() -> argparse.ArgumentParser:
    """The ``getbill`` parser, every command's flags included.

    Returns:
        The parser (``docs/_hooks/cli_reference.py`` renders the CLI reference from it).
    """
    parser = argparse.ArgumentParser(prog="getbill", description="GetBill's API from the shell")
    parser.add_argument("--version", action="version", version=f"getbill-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from ..sandbox import add_arguments as sandbox_arguments

    sandbox_arguments(commands.add_parser("sandbox", help="serve the embedded sandbox API"))
    _export.add_arguments(
        commands.add_parser("export", help="export followups: JSONL, CSV, Parquet")
    )
    log = commands.add_parser("log", help="create followups from a CSV or JSONL file")
    _log.add_arguments(log)
    add_client_options(log)
    sync = commands.add_parser("sync", help="keep a directory of day partitions current")
    _sync.add_arguments(sync)
    add_client_options(sync)
    _budget.add_arguments(
        commands.add_parser("budget", help="the budget left: shared or the server's")
    )
    _demo.add_arguments(commands.add_parser("demo", help="export and log against a local sandbox"))
    from ..outbox import add_parser as outbox_parser

    outbox_parser(commands)
    return parser


def _run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, on uvloop when it is installed (the ``fast`` extra): the client's
    CPU time per page is a few per cent lower on it (benchmarks/pipeline.py)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``getbill`` with ``argv`` (the process's arguments by default).

    Args:
        argv: the arguments after the program's name.

    Returns:
        The exit status: 0 done, 1 failed (one line on stderr), 2 bad input, 130 interrupted
        (SIGINT), 143 terminated (SIGTERM).
    """
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger(LOGGER_NAME).setLevel(logging.DEBUG)
    if args.command == "sandbox":
        from ..sandbox import run

        return run(args)
    try:
        check_flags(args)  # before any file is touched or any connection made
        logging_rows = args.command == "log" and not args.verify
        log = _log.LogOptions.from_args(args) if logging_rows else None
    except ConfigurationError as exc:
        print(f"getbill {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        return _run(_demo.run_demo(args))
    if args.command == "outbox":
        from ..outbox import run as run_outbox

        return run_outbox(args)
    if args.command == "budget":
        return _budget.run(args)
    try:
        return _run(_with_client(args, log))
    except GetBillError as exc:
        print(f"getbill {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a missing folder, a full disk, no permission: one line, no trace
        print(f"getbill {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"getbill {args.command}: interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # only SIGTERM cancels the main task from outside
        print(f"getbill {args.command}: terminated; what was written is kept", file=sys.stderr)
        return 143
