"""Every benchmark in benchmarks/, one after another: one table, one report, one chart.

Runs each ``benchmarks/*.py`` but the private ``_*.py`` files and this script, each in a
process of its own with a time bound (and all of them within an overall one). A benchmark
prints its own markdown table and, given ``--json PATH``, writes its ratios there as a list of
``{"benchmark", "metric", "ratio", "goal", "better"}`` (``goal`` may be null: context only;
``better`` is "lower" or "higher"). Then this script prints the ratios of all of them in one
table, writes ``benchmarks/results.md`` (that table, then each benchmark's own output) and
``benchmarks/results.png`` (each ratio against its goal).

    python benchmarks/run_all.py [NAME ...] [--timeout 240] [--total 1200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import table  # noqa: E402

COMMAND = "make bench"


@dataclass
class Run:
    name: str
    status: str = "not run"
    seconds: float = 0.0
    output: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)


def discover(names: list[str]) -> list[Path]:
    found = [
        path
        for path in sorted(HERE.glob("*.py"))
        if not path.name.startswith("_") and path.name != Path(__file__).name
    ]
    if names:
        found = [path for path in found if path.stem in names]
        missing = set(names) - {path.stem for path in found}
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(missing))}")
    return found


def stop_group(proc: subprocess.Popen[str]) -> None:
    """End a benchmark that ran over its time, and whatever it started (its sandbox)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(path: Path, timeout: float) -> Run:
    run = Run(path.stem)
    takes_json = "--json" in path.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ratios.json"
        args = [sys.executable, str(path)] + (["--json", str(out)] if takes_json else [])
        started = time.monotonic()
        proc = subprocess.Popen(
            args,
            cwd=HERE.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group, so a time-out ends its sandbox too
        )
        try:
            run.output, _ = proc.communicate(timeout=timeout)
            run.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            stop_group(proc)
            run.output = (proc.communicate()[0] or "") + f"\n[stopped after {timeout:.0f} s]"
            run.status = f"timed out ({timeout:.0f} s)"
        run.seconds = time.monotonic() - started
        if out.exists() and run.status == "ok":
            run.rows = json.loads(out.read_text())
        elif run.status == "ok" and not takes_json:
            run.status = "ok (no ratios: takes no --json)"
    return run


def met(row: dict[str, Any]) -> str:
    goal = row.get("goal")
    if goal is None:
        return "(context)"
    ratio = float(row["ratio"])
    ok = ratio >= goal if row.get("better") == "higher" else ratio <= goal
    return "yes" if ok else "**no**"


def goal_text(row: dict[str, Any]) -> str:
    goal = row.get("goal")
    if goal is None:
        return ""
    return f"{'>=' if row.get('better') == 'higher' else '<='} {goal:g}"


def combined_table(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        for row in run.rows:
            rows.append(
                [
                    run.name,
                    row["metric"],
                    f"{float(row['ratio']):.2f}",
                    goal_text(row),
                    met(row),
                ]
            )
        if not run.rows:
            rows.append([run.name, run.status, "", "", ""])
    return table(["benchmark", "metric", "ratio", "goal", "met"], rows)


def colour(row: dict[str, Any]) -> str:
    verdict = met(row)
    return "#9e9e9e" if verdict == "(context)" else "#2e7d32" if verdict == "yes" else "#c62828"


def chart(runs: list[Run], path: Path) -> bool:
    """One panel per benchmark (each on its own scale): a bar per ratio, its goal a black tick.

    False when matplotlib is missing or there is nothing to draw.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    drawn = [run for run in runs if run.rows]
    if not drawn:
        return False
    counts = [len(run.rows) for run in drawn]
    fig, axes = plt.subplots(
        len(drawn),
        1,
        figsize=(11, 0.34 * sum(counts) + 0.75 * len(drawn) + 0.8),
        gridspec_kw={"height_ratios": counts},
        squeeze=False,
    )
    for ax, run in zip(axes[:, 0], drawn, strict=True):
        rows = run.rows
        ratios = [float(row["ratio"]) for row in rows]
        goals = [row.get("goal") for row in rows]
        top = max(ratios + [float(g) for g in goals if g is not None] + [1e-9])
        positions = list(range(len(rows)))[::-1]
        ax.barh(positions, ratios, color=[colour(row) for row in rows], height=0.62)
        for y, ratio, goal in zip(positions, ratios, goals, strict=True):
            if goal is not None:
                ax.plot([goal, goal], [y - 0.42, y + 0.42], color="black", linewidth=2.2)
            right = max(ratio, float(goal) if goal is not None else 0.0)
            ax.text(right + top * 0.015, y, f"{ratio:.2f}", va="center", fontsize=8)
        ax.set_yticks(positions)
        ax.set_yticklabels([str(row["metric"]) for row in rows], fontsize=8)
        ax.set_xlim(0, top * 1.15)
        ax.set_title(f"{run.name}.py", fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"getbill-async benchmarks: ratios against their goals ({COMMAND}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d})\n"
        "black tick: goal; green: met, red: not met, grey: context (no goal)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(runs: list[Run], total: float, drew: bool) -> str:
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    parts = [
        "# Benchmark results",
        "",
        f"`{COMMAND}` (`python benchmarks/run_all.py`), "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine}; {total:.0f} s in all.",
        "Ratios are taken within one run (medians of interleaved rounds where a benchmark "
        "times two sides); goals come from the issues.",
        "",
        combined_table(runs),
        "",
    ]
    if drew:
        parts += ["![ratios against their goals](results.png)", ""]
    for run in runs:
        parts += [
            f"## {run.name}.py: {run.status}, {run.seconds:.0f} s",
            "",
            run.output.strip(),
            "",
        ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="run only these (e.g. decode pipeline)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per benchmark")
    parser.add_argument("--total", type=float, default=1200.0, help="seconds for all of them")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md/png go")
    args = parser.parse_args()

    started = time.monotonic()
    runs: list[Run] = []
    for path in discover(args.names):
        left = args.total - (time.monotonic() - started)
        if left < 5:
            runs.append(Run(path.stem, status="skipped: out of time"))
            continue
        print(f"--- {path.name} (at most {min(args.timeout, left):.0f} s)", flush=True)
        run = run_one(path, min(args.timeout, left))
        print(run.output.rstrip(), f"\n--- {path.name}: {run.status}, {run.seconds:.0f} s\n")
        runs.append(run)
    total = time.monotonic() - started

    print(combined_table(runs))
    args.out.mkdir(parents=True, exist_ok=True)
    drew = chart(runs, args.out / "results.png")
    (args.out / "results.md").write_text(report(runs, total, drew))
    print(
        f"\nwrote {args.out / 'results.md'}" + (f" and {args.out / 'results.png'}" if drew else "")
    )
    print(f"{total:.0f} s in all")
    if any(not run.status.startswith("ok") for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
