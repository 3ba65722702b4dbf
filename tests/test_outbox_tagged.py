"""Tagged creates (what ``getbill log`` feeds the outbox): unique by tag, reported as they
settle, looked up first when asked, given up after a bound when they cannot be sent, and a
file made before tags existed gains them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from getbill_async import FollowupCreate, GetBillClient, Outbox, RetryPolicy
from getbill_async.outbox import EntryEvent
from getbill_async.sandbox import Sandbox
from tests.outbox_helpers import indexes

pytestmark = pytest.mark.timeout(30)


def item(debt: str, call_id: str | None, summary: str = "") -> FollowupCreate:
    return FollowupCreate(debt_id=debt, type="call", call_id=call_id, summary=summary)


async def test_tagged_creates_are_unique_by_tag_and_reported_as_they_settle(
    sandbox: Sandbox, client: GetBillClient, tmp_path: Path
) -> None:
    debt, other = sandbox.debt_ids()[:2]
    events: list[EntryEvent] = []
    async with Outbox(client, tmp_path / "o.db", on_event=events.append) as outbox:
        assert await outbox.create_tagged("1", item(debt, "K"))
        assert await outbox.create_tagged("2", item(other, "K"))  # one call_id, two debts
        assert await outbox.create_tagged("3", item(debt, None))
        assert not await outbox.create_tagged("1", item(debt, "K"))  # fed again: a no-op
        await outbox.join(timeout=20)
        entries = await outbox.tagged()
    assert sandbox.created_per_call_id() == {"K": 2}
    assert [(e.tag, e.state) for e in entries] == [("1", "done"), ("2", "done"), ("3", "done")]
    assert all(e.followup_id for e in entries)
    by_tag = {(e.tag, e.state) for e in events}
    for tag in "123":
        assert {(tag, "in_flight"), (tag, "done")} <= by_tag
    done = {e.tag: e.followup_id for e in events if e.state == "done"}
    assert done == {e.tag: e.followup_id for e in entries}


async def test_a_tagged_create_marked_check_is_looked_up_not_sent_again(
    sandbox: Sandbox, client: GetBillClient, tmp_path: Path
) -> None:
    debt = sandbox.debt_ids()[0]
    made = await client.followups.create(item(debt, "C-1"))
    events: list[EntryEvent] = []
    async with Outbox(client, tmp_path / "o.db", on_event=events.append) as outbox:
        await outbox.create_tagged("7", item(debt, "C-1"), check=True)
        await outbox.create_tagged("8", item(debt, "C-2"), check=True)  # absent: sent
        await outbox.join(timeout=20)
    assert sandbox.created_per_call_id() == {"C-1": 1, "C-2": 1}
    found = [(e.tag, e.found, e.followup_id) for e in events if e.state == "done"]
    assert ("7", True, made.id) in found and ("8", False) in [f[:2] for f in found]


async def test_a_write_that_cannot_be_sent_is_dead_after_give_up_after(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    debt = sandbox.debt_ids()[0]
    retry = RetryPolicy(base=0.001, cap=0.01)
    events: list[EntryEvent] = []
    async with (
        GetBillClient("not-the-token", base_url=sandbox.base_url, retry=retry) as client,
        Outbox(client, tmp_path / "o.db", give_up_after=2, on_event=events.append) as outbox,
    ):
        await outbox.create_tagged("1", item(debt, "G-1"))
        await outbox.join(timeout=20)
        assert (await outbox.status()).dead == 1
    assert [e.state for e in events] == ["in_flight", "pending", "in_flight", "dead"]
    assert events[-1].error is not None and events[-1].error["kind"] == "AuthenticationError"
    assert sandbox.created_per_call_id() == {}


async def test_a_file_made_before_tags_gains_them_and_keeps_its_entries(
    client: GetBillClient, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
            "CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT,"
            " op TEXT NOT NULL, state TEXT NOT NULL, debt_id TEXT, fields TEXT NOT NULL,"
            " followup_id TEXT, enqueued REAL NOT NULL, finished REAL,"
            " attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,"
            " check_first INTEGER NOT NULL DEFAULT 0, owner TEXT, lease_until REAL, error TEXT);"
            "CREATE UNIQUE INDEX entries_create_key ON entries (key) WHERE op = 'create';"
            "INSERT INTO meta VALUES ('format', 'getbill-outbox'), ('version', '1'),"
            " ('merged', '0');"
            "INSERT INTO entries (key, op, state, debt_id, fields, enqueued, followup_id)"
            " VALUES ('old-1', 'create', 'done', 'd1', '{}', 1.0, 'f-1');"
        )
    conn.close()
    async with Outbox(client, path, drain=False) as outbox:
        assert await outbox.tagged() == []
        await outbox.create_tagged("1", item("d1", "old-1"))  # unique by tag, not by key
        assert [(e.tag, e.key, e.state) for e in await outbox.tagged()] == [
            ("1", "old-1", "pending")
        ]
        assert (await outbox.status()).done == 1
        await outbox.create(debt_id="d1", type="call", call_id="old-1")  # replay of the done one
        assert (await outbox.status()).pending == 1
    assert indexes(path) == {"entries_by_key", "entries_state", "entries_tag"}
