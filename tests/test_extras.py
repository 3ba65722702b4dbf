"""Optional extras stay optional: the package imports whole without them, and a feature that
needs one fails when asked for, with one line that names the extra.

The subprocesses run with the optional packages made unimportable by a meta-path finder in a
``sitecustomize`` module (the dev venv has them installed; uninstalling is not an option).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from getbill_async import MissingExtraError
from getbill_async.support import available, require

#: Every optional dependency of the package, by its top-level module.
OPTIONAL = ("redis", "rich", "uvloop", "pyarrow", "opentelemetry", "dlt", "duckdb")

BLOCKER = f"""
import sys

BLOCKED = {OPTIONAL!r}


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
"""

PROBE = """
import json

out = {}
for module in %r:
    try:
        __import__(module)
        out[module] = "importable"
    except ImportError:
        out[module] = "blocked"

import getbill_async
from getbill_async import *  # noqa: F403

out["star"] = sorted(name for name in getbill_async.__all__ if name not in globals())
try:
    RedisBudget("redis://127.0.0.1:1/0", key="getbill:test")
except MissingExtraError as exc:
    out["RedisBudget"] = str(exc)
print(json.dumps(out))
"""


def run_without_extras(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    # A stand-in token: the extra must be missed before any credential or request matters.
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GETBILL_TOKEN": "test-token"}
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.timeout(60)
def test_the_package_imports_whole_without_any_extra(tmp_path: Path) -> None:
    proc = run_without_extras(tmp_path, "-c", PROBE % (OPTIONAL,))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {module: out[module] for module in OPTIONAL} == dict.fromkeys(OPTIONAL, "blocked")
    assert out["star"] == []  # every name of __all__ came with import *
    assert out["RedisBudget"] == (
        "RedisBudget needs redis, which is not installed: pip install 'getbill-async[redis]'"
    )


DEAD_API = ("--base-url", "http://127.0.0.1:1/v1")  # refused: nothing may be asked of it


def install(extra: str) -> str:
    return f"which is not installed: pip install 'getbill-async[{extra}]'"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("export", "--out", "f.jsonl", "--redis", "redis://127.0.0.1:1/0", *DEAD_API),
            "getbill export: --redis (a budget shared through Redis) needs redis, "
            + install("redis"),
        ),
        (
            ("export", "--out", "f.parquet", *DEAD_API),
            "getbill export: Parquet export needs pyarrow, " + install("parquet"),
        ),
        (
            ("budget", "--redis", "redis://127.0.0.1:1/0", "--watch"),
            "getbill budget: getbill budget --redis needs redis, " + install("redis"),
        ),
    ],
    ids=["export-redis", "export-parquet", "budget-redis"],
)
def test_cli_feature_without_its_extra_says_which_extra_in_one_line(
    tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    proc = run_without_extras(tmp_path, "-m", "getbill_async.cli", *args)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [line]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sitecustomize.py"]  # nothing written


@pytest.mark.timeout(60)
def test_the_demo_runs_without_any_extra(tmp_path: Path) -> None:
    # No rich (a plain progress line), no uvloop (the standard loop).
    proc = run_without_extras(
        tmp_path, "-m", "getbill_async.cli", "demo", "--followups", "500", "--latency", "0"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: done" in proc.stdout
    assert "export: 500/500 items" in proc.stderr


def test_require_returns_the_module_or_names_the_extra() -> None:
    assert require("json", extra="x", feature="JSON") is json
    with pytest.raises(MissingExtraError) as caught:
        require("getbill_no_such_module.sub", extra="parquet", feature="Parquet export")
    assert str(caught.value) == (
        "Parquet export needs getbill_no_such_module.sub, which is not installed: "
        "pip install 'getbill-async[parquet]'"
    )
    assert isinstance(caught.value, ImportError)
    assert available("json") and not available("getbill_no_such_module.sub")


def test_require_does_not_hide_a_broken_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module is there but one of its own imports fails: that is no missing extra.
    (tmp_path / "getbill_broken_dep.py").write_text("import getbill_absent_inner_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("getbill_broken_dep", extra="x", feature="F")
    assert not isinstance(caught.value, MissingExtraError)
    assert caught.value.name == "getbill_absent_inner_dep"
