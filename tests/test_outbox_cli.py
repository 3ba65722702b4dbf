"""``getbill outbox``: the handlers called directly, on a real outbox and the sandbox."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from getbill_async import GetBillClient, Outbox
from getbill_async.outbox._cli import add_parser, run_async
from getbill_async.sandbox import Sandbox

pytestmark = pytest.mark.timeout(30)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="getbill")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["outbox", *argv])


async def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_async(parse(*argv), out)
    return code, out.getvalue()


async def test_status_dead_requeue_and_drain(
    sandbox: Sandbox, client: GetBillClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "o.db")
    debt = sandbox.debt_ids()[0]
    async with Outbox(client, db, poll=0.02) as outbox:
        await outbox.create(debt_id="no-such-debt", type="call", call_id="cli-bad")
        await outbox.join(timeout=10)
    async with Outbox(client, db, drain=False) as outbox:
        for i in range(3):
            await outbox.create(debt_id=debt, type="call", call_id=f"cli-{i}")
        await outbox.update("cli-0", status="deal_found")

    code, out = await cli("--db", db, "status")
    assert code == 0
    assert "pending: 3\n" in out and "dead: 1\n" in out and "writes saved by merging: 1" in out
    assert "eta (budget free now): 0 s" in out

    code, out = await cli("--db", db, "watch", "--count", "2", "--interval", "0.01")
    assert code == 0 and len(out.splitlines()) == 2 and "pending 3" in out

    code, out = await cli("--db", db, "dead")
    [line] = [json.loads(text) for text in out.splitlines()]
    assert (line["key"], line["status"], line["message"]) == ("cli-bad", 422, "Validation failed")

    monkeypatch.setenv("GETBILL_TOKEN", sandbox.token)
    code, out = await cli("--db", db, "drain", "--base-url", sandbox.base_url, "--timeout", "10")
    assert (code, out) == (0, "sent 3 writes, looked up 0, dead 1, held 0\n")
    assert sorted(sandbox.created_per_call_id()) == ["cli-0", "cli-1", "cli-2"]

    code, out = await cli("--db", db, "requeue", "cli-bad")
    assert (code, out) == (0, "requeued 1 entries\n")
    code, out = await cli("--db", db, "requeue", "--id", "99")
    assert (code, out) == (0, "requeued 0 entries\n")


async def test_a_file_that_is_not_an_outbox_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just notes\n" * 10)
    code, out = await cli("--db", str(path), "status")
    assert code == 1 and out == ""
    assert "notes.txt is not an outbox database" in capsys.readouterr().err
    assert path.read_text() == "not a database, just notes\n" * 10


async def test_the_store_flags_go_before_or_after_the_action(tmp_path: Path) -> None:
    db = str(tmp_path / "o.db")
    before = await cli("--db", db, "--writes", "50", "status")
    after = await cli("status", "--db", db, "--writes", "50")
    assert before == after and before[0] == 0 and "pending: 0" in before[1]
    assert (await cli("status"))[0] == 2  # no --db on either side


async def test_drain_and_verify_open_the_outbox_as_the_account_named(
    sandbox: Sandbox,
    client: GetBillClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(tmp_path / "acct.db")
    async with Outbox(client, db, drain=False, account="sales") as outbox:
        await outbox.create(debt_id=sandbox.debt_ids()[0], type="call", call_id="acct-1")
    monkeypatch.setenv("GETBILL_TOKEN", sandbox.token)
    base = ("--base-url", sandbox.base_url)
    for named in (("--account", "support"), ()):  # another account; none (the file has one)
        code, out = await cli("--db", db, "drain", *base, *named, "--timeout", "5")
        assert (code, out) == (1, "")
        assert "belongs to 'http" in capsys.readouterr().err
    assert sandbox.created_per_call_id() == {}
    code, out = await cli("--db", db, "drain", *base, "--account", "sales", "--timeout", "5")
    assert (code, out) == (0, "sent 1 writes, looked up 0, dead 0, held 0\n")
    assert sandbox.created_per_call_id() == {"acct-1": 1}
    monkeypatch.setenv("GETBILL_ACCOUNT", "support")
    code, _ = await cli("--db", db, "verify", *base, "--no-progress")
    assert code == 1 and "belongs to" in capsys.readouterr().err
    code, out = await cli("--db", db, "verify", *base, "--account", "sales", "--no-progress")
    assert code == 0, out
