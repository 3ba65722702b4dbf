"""An outbox store belongs to one file and one account: a read-only file is refused when it
is opened; a file deleted (or replaced) while the service runs refuses new entries, loudly,
instead of acknowledging them into a file no one will reopen; a store opened by another
account is refused. On SQLite, and the account rule on Redis too."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from getbill_async import ClientCredentials, GetBillClient, Outbox, ValidationError
from getbill_async.outbox import OutboxStoreError
from tests.redis_fixtures import RedisServer

pytestmark = pytest.mark.timeout(30)
OFFLINE = "http://127.0.0.1:9/v1"  # drain=False: no request is ever sent


def offline(token: str | ClientCredentials = "t", base_url: str = OFFLINE) -> GetBillClient:
    return GetBillClient(token, base_url=base_url, allow_insecure=True)


@pytest.fixture
async def client() -> AsyncIterator[GetBillClient]:
    async with offline() as made:
        yield made


def _writable(path: Path) -> bool:
    try:
        with open(path, "r+b"):
            return True
    except OSError:
        return False


@pytest.fixture
def read_only() -> Iterator[list[Path]]:
    """Files to make read-only: ``chmod``, and for root (whom modes do not stop) the
    immutable flag; a machine where neither holds skips the test."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def make_read_only(path: Path, made: list[Path]) -> None:
    os.chmod(path, 0o444)
    if _writable(path) and shutil.which("chattr"):
        made.append(path)
        subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if _writable(path):
        pytest.skip("this machine cannot make a file read-only for this user")


async def test_a_read_only_file_is_refused_when_opened_not_at_the_first_create(
    client: GetBillClient,
    tmp_path: Path,
    read_only: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "ro.db"
    async with Outbox(client, path, drain=False) as outbox:
        await outbox.create(debt_id="d", type="call", call_id="r-1")
    make_read_only(path, read_only)
    outbox = Outbox(client, path, poll=0.01)
    with pytest.raises(OutboxStoreError, match=f"{path} cannot be written"):
        await outbox.open()
    await outbox.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_file_deleted_while_open_refuses_new_entries_and_says_so_once(
    client: GetBillClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gone.db"
    async with Outbox(client, path, drain=False) as outbox:
        await outbox.create(debt_id="d", type="call", call_id="g-1")
        path.unlink()
        with pytest.raises(OutboxStoreError, match="it was deleted"):
            await outbox.create(debt_id="d", type="call", call_id="g-2")
        with pytest.raises(OutboxStoreError, match="nothing was enqueued"):
            await outbox.create(debt_id="d", type="call")
        with pytest.raises(OutboxStoreError, match="it was deleted"):
            await outbox.update("g-1", status="deal_found")
        assert (await outbox.status()).pending == 1  # what was acknowledged is still there
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "new entries are refused" in errors[0].getMessage()


async def test_a_file_replaced_while_open_refuses_new_entries(
    client: GetBillClient, tmp_path: Path
) -> None:
    path, other = tmp_path / "a.db", tmp_path / "b.db"
    async with Outbox(client, other, drain=False):
        pass
    async with Outbox(client, path, drain=False) as outbox:
        await outbox.create(debt_id="d", type="call", call_id="x-1")
        os.replace(other, path)
        with pytest.raises(OutboxStoreError, match="another file now has its name"):
            await outbox.create(debt_id="d", type="call", call_id="x-2")


async def test_a_file_of_another_account_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acct.db"
    async with offline() as client, Outbox(client, path, drain=False, account="sales") as box:
        await box.create(debt_id="d", type="call", call_id="a-1")
    async with offline() as client:
        with pytest.raises(OutboxStoreError, match="belongs to .*account sales.*not to"):
            await Outbox(client, path, drain=False, account="support").open()
        async with Outbox(client, path, drain=False, account="sales") as box:
            assert (await box.status()).pending == 1  # the same account opens it again
    async with offline(base_url="http://127.0.0.2:9/v1") as client:
        with pytest.raises(OutboxStoreError, match="belongs to"):
            await Outbox(client, path, drain=False, account="sales").open()


async def test_oauth_clients_are_told_apart_by_their_client_id(tmp_path: Path) -> None:
    path = tmp_path / "oauth.db"
    first = ClientCredentials("app-a", "secret-a-123")
    second = ClientCredentials("app-b", "secret-b-456")
    async with offline(first) as client, Outbox(client, path, drain=False):
        pass
    async with offline(second) as client:
        with pytest.raises(OutboxStoreError, match="client app-a") as refused:
            await Outbox(client, path, drain=False).open()
        assert "secret" not in str(refused.value)


async def test_the_account_name_is_checked(client: GetBillClient, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="account: must be a non-empty name"):
        Outbox(client, tmp_path / "n.db", account=" ")


async def test_a_redis_outbox_of_another_account_is_refused(redis_server: RedisServer) -> None:
    name = f"acct-{uuid.uuid4().hex[:8]}"
    async with offline() as client:
        async with Outbox(client, redis_server.url, name=name, drain=False, account="sales"):
            pass
        box = Outbox(client, redis_server.url, name=name, drain=False, account="support")
        with pytest.raises(OutboxStoreError, match="belongs to .*account sales"):
            await box.open()
        async with Outbox(client, redis_server.url, name=name, drain=False, account="sales"):
            pass
