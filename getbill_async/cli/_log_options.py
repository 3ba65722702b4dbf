"""The options of one ``getbill log`` run, typed and checked once."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from .._constants import DEFAULT_CONCURRENCY
from ..errors import ConfigurationError, GetBillError
from ..support import check_int

__all__ = ["LogOptions"]


@dataclass(frozen=True)
class LogOptions:
    """What one ``getbill log`` run is asked to do: built once from the parsed flags
    (``from_args``), or directly (the demo).

    Raises:
        ConfigurationError: ``grace`` is not a finite number >= 0, or ``concurrency`` not an
            integer >= 1; the message names the flag.
    """

    input: Path
    results: Path | None = None
    resume: bool = False
    skip_invalid: bool = False
    resend_ambiguous: bool = False
    grace: float = 30.0
    plan: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    account: str | None = None  # the run's outbox is bound to it (``Outbox(account=...)``)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grace) and self.grace >= 0):
            raise ConfigurationError(
                f"--grace must be a finite number of seconds >= 0, got {self.grace!r}"
            )
        try:
            check_int("--concurrency", self.concurrency)
        except GetBillError as exc:
            raise ConfigurationError(str(exc)) from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LogOptions:
        """The options the parsed ``getbill log`` flags describe.

        Args:
            args: what ``build_parser().parse_args`` returned for ``log``.

        Returns:
            The options, checked.
        """
        if args.input is None:
            raise ConfigurationError("--in is required: the calls to log (CSV or JSONL)")
        return cls(
            input=Path(args.input),
            results=None if args.results is None else Path(args.results),
            resume=args.resume,
            skip_invalid=args.skip_invalid,
            resend_ambiguous=args.resend_ambiguous,
            grace=args.grace,
            plan=args.plan,
            concurrency=args.concurrency,
            account=args.account,
        )
