"""``getbill demo``: the main job, end to end, against an embedded sandbox."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run_demo"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--followups", type=int, default=25_000, help="sandbox size (25000)")


async def run_demo(args: argparse.Namespace) -> int:
    raise NotImplementedError
