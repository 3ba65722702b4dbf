"""``getbill log`` and careless input: each mistake is refused by line, before anything is sent.

A results file made for another input (or for this one before an edit), a CSV row with more
cells than headers or a header named twice, ``--results`` naming the input, a repeated
``call_id``, a JSONL line nested a hundred thousand deep, budget flags out of range, a second
run on the same results file. Every case runs the real ``getbill`` command in a subprocess
against a sandbox on loopback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from getbill_async import ConfigurationError, RateLimit, RetryPolicy
from getbill_async.cli import main
from getbill_async.sandbox import Sandbox

HEADER = "debt_id,type,call_id,notes\n"


def getbill(sb: Sandbox | None, *args: str) -> tuple[int, str, str]:
    # Without a sandbox: a closed loopback port, so that any request would fail the case.
    env = {**os.environ, "GETBILL_TOKEN": "t", "GETBILL_BASE_URL": "http://127.0.0.1:9/v1"}
    if sb is not None:
        env |= {"GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
    done = subprocess.run(
        [sys.executable, "-m", "getbill_async.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def log(sb: Sandbox | None, calls: Path, results: Path, *extra: str) -> tuple[int, str, str]:
    argv = ("log", "--in", str(calls), "--results", str(results), "--no-progress", *extra)
    return await asyncio.to_thread(getbill, sb, *argv)


def csv_calls(path: Path, debt: str, call_ids: list[str]) -> Path:
    path.write_text(HEADER + "".join(f"{debt},call,{c},note {c}\n" for c in call_ids))
    return path


@pytest.mark.timeout(60)
async def test_resume_refuses_a_results_file_made_for_another_input(tmp_path: Path) -> None:
    async with Sandbox(followups=20) as sb:
        debt = sb.debt_ids()[0]
        a = csv_calls(tmp_path / "a.csv", debt, ["a1", "a2", "a3"])
        b = csv_calls(tmp_path / "b.csv", debt, ["b1", "b2", "b3", "b4"])
        results = tmp_path / "r.jsonl"
        code, out, _ = await log(sb, a, results)
        assert code == 0 and "created 3" in out
        before = results.read_bytes()
        code, out, err = await log(sb, b, results, "--resume")
        assert code == 2, out
        assert f"{results} holds the results of {a}" in err and f"not of {b}" in err
        assert results.read_bytes() == before, "a refused results file is left as it was"
        # The same file, edited since: its rows are not those the results speak of.
        csv_calls(a, debt, ["a1", "x2", "a3", "a4"])
        code, _, err = await log(sb, a, results, "--resume")
        assert code == 2 and f"not of {a}" in err and "edited since" in err
        assert sorted(sb.created_per_call_id()) == ["a1", "a2", "a3"]


@pytest.mark.timeout(60)
async def test_resume_reads_a_journal_without_header_only_if_its_rows_match(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20) as sb:
        debt = sb.debt_ids()[0]
        calls = csv_calls(tmp_path / "calls.csv", debt, ["c1", "c2", "c3"])
        old = tmp_path / "old.jsonl"  # as written before the header existed
        old.write_bytes(
            b'{"line":2,"status":"attempt","call_id":"c1","debt_id":"%s"}\n' % debt.encode()
            + b'{"line":2,"status":"created","id":"f-1","call_id":"c1"}\n'
        )
        code, out, err = await log(sb, calls, old, "--resume")
        assert code == 0 and "created 2" in out and "already done 1" in out, err
        assert sorted(sb.created_per_call_id()) == ["c2", "c3"]
        other = csv_calls(tmp_path / "other.csv", debt, ["z1", "c2"])
        old.write_bytes(b'{"line":2,"status":"created","id":"f-1","call_id":"c1"}\n')
        code, _, err = await log(sb, other, old, "--resume")
        assert code == 2 and f"line 2 of {other} is not" in err


@pytest.mark.timeout(60)
async def test_csv_extra_cells_and_a_header_named_twice_are_refused(tmp_path: Path) -> None:
    async with Sandbox(followups=20) as sb:
        debt = sb.debt_ids()[0]
        calls = tmp_path / "calls.csv"
        calls.write_text(
            HEADER
            + f"{debt},call,E-1,Customer said hi, then hung up\n"
            + f"{debt},call,E-2,fine\n"
            + f'{debt},call,E-3,"quoted, as it should"\n'
        )
        code, out, err = await log(sb, calls, tmp_path / "r.jsonl")
        assert code == 2, out
        assert f"{calls}:2: 5 cells but 4 headers" in err and "' then hung up'" in err
        assert "1 invalid row(s) of 3; nothing sent" in err
        twice = tmp_path / "twice.csv"
        twice.write_text(f"debt_id,type,notes,call_id,notes\n{debt},call,first,T-1,second\n")
        code, _, err = await log(sb, twice, tmp_path / "r2.jsonl", "--skip-invalid")
        assert code == 2 and f"{twice}:1: header: 'notes' names columns 3 and 5" in err
        assert sb.stats.requests == 0
        assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "r2.jsonl").exists()


@pytest.mark.timeout(60)
async def test_results_naming_the_input_is_refused_by_inode(tmp_path: Path) -> None:
    calls = csv_calls(tmp_path / "calls.csv", "d1", ["c1"])
    before = calls.read_bytes()
    (tmp_path / "hard.jsonl").hardlink_to(calls)
    (tmp_path / "soft.jsonl").symlink_to(calls)
    for results in (calls, tmp_path / "hard.jsonl", tmp_path / "soft.jsonl"):
        code, _, err = await log(None, calls, results, "--resume")
        assert code == 2 and f"--results {results} is the input file {calls}" in err
    assert calls.read_bytes() == before


@pytest.mark.timeout(60)
async def test_a_repeated_debt_and_call_id_is_a_duplicate_not_a_second_create(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20) as sb:
        debt, other = sb.debt_ids()[:2]
        calls = tmp_path / "calls.csv"
        calls.write_text(HEADER + f"{debt},call,K,a\n{other},call,K,b\n{debt},call,K,c\n")
        code, _, err = await log(sb, calls, tmp_path / "r.jsonl")
        assert code == 2 and sb.stats.requests == 0
        assert f"{calls}:4: call_id: duplicate of line 2" in err
        code, out, _ = await log(sb, calls, tmp_path / "r.jsonl", "--skip-invalid")
        assert code == 0 and "created 2" in out and "invalid 1" in out
        assert sb.created_per_call_id() == {"K": 2}  # one on each debt


@pytest.mark.timeout(60)
async def test_a_jsonl_row_nested_too_deeply_is_an_invalid_row(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    calls.write_text("[" * 100_000 + "\n")
    code, _, err = await log(None, calls, tmp_path / "r.jsonl")
    assert code == 2 and "Traceback" not in err
    assert f"{calls}:1: not a JSON object (nested too deeply)" in err


@pytest.mark.timeout(60)
async def test_budget_flags_out_of_range_are_one_line_errors_for_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = csv_calls(tmp_path / "calls.csv", "d1", ["c1"])
    out, state = str(tmp_path / "out.jsonl"), str(tmp_path / "s.json")
    cases = [
        (["log", "--in", str(calls), "--results", out, "--reads", "0"], "--reads", ">= 1"),
        (["export", "--out", out, "--window", "0"], "--window", "> 0"),
        (["sync", "--out", out, "--state", state, "--window", "nan"], "--window", "nan"),
        (["budget", "--writes", "0"], "--writes", ">= 1"),
        (["export", "--out", out, "--concurrency", "0"], "--concurrency", ">= 1"),
        (["budget", "--reserve", "1"], "--reserve", "< 1"),
    ]
    # Two through the real command, in a subprocess; every case through ``main``.
    runs = await asyncio.gather(
        *(asyncio.to_thread(getbill, None, *argv) for argv, *_ in cases[:3:2])
    )
    for argv, *_ in cases:
        code = main(argv)
        runs.append((code, "", capsys.readouterr().err))
    for (argv, flag, words), (code, _, err) in zip(cases[:3:2] + cases, runs, strict=True):
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"getbill {argv[0]}: {flag} must be") and words in err, err
    assert not Path(out).exists() and not Path(state).exists()


def test_bad_settings_raise_configuration_error_which_is_a_value_error() -> None:
    for make in (
        lambda: RateLimit(window=float("nan")),
        lambda: RateLimit(reads=0),
        lambda: RateLimit(reserve=1.0),
        lambda: RetryPolicy(max_tries=0),
        lambda: RetryPolicy(max_time=float("nan")),
    ):
        with pytest.raises(ConfigurationError) as caught:
            make()
        assert isinstance(caught.value, ValueError)


def test_log_grace_out_of_range_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["log", "--in", "x.csv", "--results", "r.jsonl", "--grace", "nan"]) == 2
    assert capsys.readouterr().err == (
        "getbill log: --grace must be a finite number of seconds >= 0, got nan\n"
    )


@pytest.mark.timeout(60)
async def test_a_second_log_on_the_same_results_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    async with Sandbox(followups=20) as sb:
        debt = sb.debt_ids()[0]
        calls = csv_calls(tmp_path / "calls.csv", debt, [f"c{i}" for i in range(6)])
        results = tmp_path / "r.jsonl"
        env = {**os.environ, "GETBILL_TOKEN": sb.token, "GETBILL_BASE_URL": sb.base_url}
        argv = ["log", "--in", str(calls), "--results", str(results), "--no-progress"]
        # A budget of two writes holds the first run on its third row.
        first = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "getbill_async.cli", *argv, "--writes", "2", "--grace", "0",
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while b'"created"' not in (results.read_bytes() if results.exists() else b""):
                assert time.monotonic() < deadline, "the first run created nothing"
                await asyncio.sleep(0.02)
            code, _, err = await log(sb, calls, results, "--resume")
            assert code == 1 and f"{results} is in use by another process" in err
        finally:
            first.send_signal(signal.SIGINT)
            await asyncio.wait_for(first.communicate(), 20)
        assert first.returncode == 130
        code, out, _ = await log(sb, calls, results, "--resume")
        assert code == 0 and "already done 2" in out and "created 4" in out
        counts = sb.created_per_call_id()
        assert len(counts) == 6 and set(counts.values()) == {1}
        journal = [msgspec.json.decode(x) for x in results.read_bytes().splitlines()]
        assert journal[0]["journal"] == 2 and journal[0]["input"] == str(calls)
