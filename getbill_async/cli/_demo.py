"""``getbill demo``: the main job, end to end, against an embedded sandbox.

It starts the sandbox on a free loopback port, exports every followup to JSONL with the
progress bar, logs a sample file of calls, and prints a summary. The same steps against a
real account are ``getbill export`` and ``getbill log``. The sample calls ship inside the
package, so the demo runs from any directory; it writes its files (``followups.jsonl``,
``results.jsonl``, ``demo-calls.csv``) in the current one, or where the options say.
"""

from __future__ import annotations

import argparse
import csv
import io
from importlib import resources
from pathlib import Path

from .._client import GetBillClient
from .._constants import DEFAULT_CONCURRENCY
from ..export import ExportOptions, export_followups, make_progress
from ._log import LogOptions, run_log
from ._log_outbox import outbox_path

__all__ = ["add_arguments", "run_demo"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--followups", type=int, default=25_000, help="sandbox size (25000)")
    parser.add_argument("--latency", type=float, default=0.02, help="sandbox latency (0.02 s)")
    parser.add_argument("--out", default="followups.jsonl", help="export file")
    parser.add_argument(
        "--calls", help="calls to log (default: a sample, written to demo-calls.csv)"
    )
    parser.add_argument("--results", default="results.jsonl", help="log outcomes")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)


def _write_sample_calls(dest: Path, debt_ids: list[str]) -> None:
    """Write the calls shipped with the package to ``dest``, on debts this sandbox has.

    The sample names debts of the default sandbox; a smaller one (``--followups``) has fewer
    debts, so a row whose debt is absent gets one of the sandbox's instead.
    """
    text = resources.files("getbill_async.cli").joinpath("demo_calls.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    known = set(debt_ids)
    for n, row in enumerate(rows):
        if row["debt_id"] not in known:
            row["debt_id"] = debt_ids[n % len(debt_ids)]
    with open(dest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


async def run_demo(args: argparse.Namespace) -> int:
    from ..sandbox import Sandbox

    out, results = Path(args.out).absolute(), Path(args.results).absolute()
    if args.calls is not None and not Path(args.calls).exists():
        print(f"demo: no calls file {args.calls}")
        return 2
    async with Sandbox(followups=args.followups, seed=1, latency=args.latency) as sandbox:
        calls = Path(args.calls or "demo-calls.csv").absolute()
        if args.calls is None:
            _write_sample_calls(calls, sandbox.debt_ids())
        print(f"sandbox: {sandbox.base_url} with {args.followups:,} followups")
        print(
            "the same against any server:\n"
            f"  GETBILL_TOKEN=... getbill export --base-url {sandbox.base_url} --out {out}\n"
            f"  GETBILL_TOKEN=... getbill log --base-url {sandbox.base_url} "
            f"--in {calls} --results {results}\n"
        )
        async with GetBillClient(sandbox.token, base_url=sandbox.base_url) as client:
            options = ExportOptions(start="restart", concurrency=args.concurrency)
            report = await export_followups(client, out, options, progress=make_progress("export"))
            with open(out, "rb") as handle:
                lines = sum(1 for _ in handle)
            expected = len(sandbox.followup_ids())
            print(
                f"export: {report.items:,} followups in {report.pages} pages, "
                f"{report.elapsed:.1f}s, {report.retries} retries -> {out} ({lines:,} lines; "
                f"the sandbox holds {expected:,})"
            )
            results.unlink(missing_ok=True)
            outbox_path(results).unlink(missing_ok=True)  # the run's outbox goes with it
            log = LogOptions(input=calls, results=results, concurrency=args.concurrency)
            code = await run_log(log, client)
            budget = await client.budget_status()
        print(
            f"budget used this hour: {budget.reads.used} of {budget.reads.limit} reads, "
            f"{budget.writes.used} of {budget.writes.limit} writes"
        )
        ok = lines == expected and report.items == expected and code == 0
        print(f"wrote {out}, {results}" + ("" if args.calls else f" and {calls}"))
        print("demo: done" if ok else "demo: FAILED (see above)")
        return 0 if ok else 1
