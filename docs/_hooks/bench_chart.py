"""MkDocs hook: the performance page shows ``benchmarks/results.png``, the chart ``make bench``
draws, straight from where it is written (no copy in ``docs/`` to go stale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

CHART = "results.png"


def on_files(files: Files, config: Any) -> Files:
    chart = Path(config["config_file_path"]).parent / "benchmarks" / CHART
    files.append(File.generated(config, CHART, abs_src_path=str(chart)))
    return files
