"""The pytest plugin, as a user meets it: pytester runs small test files of a user's service.

The plugin comes in through the package's ``pytest11`` entry point, as in a user's project
(this run loads it too: nothing here names it).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

SERVICE = '''
"""A user's service: log one call as a followup on a debt."""
from datetime import datetime, timezone


async def log_call(client, debt_id, call_id, outcome):
    when = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    return await client.followups.create(
        debt_id=debt_id, type="call", status=outcome, call_date=when, call_id=call_id
    )


async def log_calls(client, debt_id, calls):
    rows = [
        dict(debt_id=debt_id, type="call", status=outcome, call_id=call_id)
        for call_id, outcome in calls
    ]
    async with client.followups.create_many(rows) as batch:
        return [result async for result in batch]


async def log_through_outbox(client, path, debt_id, call_id):
    """A dialer: the call is logged when it starts and updated when it ends."""
    from getbill_async import Outbox

    async with Outbox(client, path) as outbox:
        await outbox.create(debt_id=debt_id, type="call", status="in_progress", call_id=call_id)
        await outbox.update(call_id, status="deal_found", duration_ms=182_000)
        await outbox.join(timeout=10)
        return await outbox.status()
'''

LOGS_CALLS = """
import pytest

from service import log_call, log_calls, log_through_outbox


@pytest.mark.getbill_sandbox(followups=20, seed=9)
async def test_logs_one_call(getbill_sandbox, getbill_client):
    debt = getbill_sandbox.debt_ids()[0]
    followup = await log_call(getbill_client, debt, "dialer-1", "deal_found")
    created = getbill_sandbox.created_followups(call_id="dialer-1")
    assert [f["id"] for f in created] == [followup.id]
    assert created[0]["status"] == "deal_found"
    assert getbill_sandbox.requests_made("write") == 1
    assert getbill_sandbox.requests_made("read") == 0


async def test_logs_a_batch_once_each(getbill_sandbox, getbill_client):
    debt = getbill_sandbox.debt_ids()[0]
    calls = [(f"c-{n}", "no_answer") for n in range(5)]
    results = await log_calls(getbill_client, debt, calls)
    assert len(results) == 5 and all(r.error is None for r in results)
    assert len(getbill_sandbox.created_followups()) == 5
    assert getbill_sandbox.created_per_call_id() == {f"c-{n}": 1 for n in range(5)}
    assert getbill_sandbox.answered(429) == 0


@pytest.mark.getbill_sandbox(writes=2, window=0.5)
async def test_a_tight_write_budget_waits_instead_of_429(getbill_sandbox, getbill_client):
    debt = getbill_sandbox.debt_ids()[0]
    for n in range(3):
        await log_call(getbill_client, debt, f"w-{n}", "delivered")
    assert getbill_sandbox.requests_made("write") == 3
    assert getbill_sandbox.answered(429) == 0
    assert getbill_sandbox.limits() == {"reads": 1000, "writes": 2, "window": 0.5}


async def test_the_outbox_merges_a_call_into_one_write(getbill_sandbox, getbill_client, tmp_path):
    debt = getbill_sandbox.debt_ids()[0]
    status = await log_through_outbox(getbill_client, tmp_path / "outbox.db", debt, "dl-81")
    assert status.done == 1 and status.merged == 1 and status.pending == 0
    [created] = getbill_sandbox.created_followups(call_id="dl-81")
    assert created["status"] == "deal_found" and created["duration_ms"] == 182_000
    assert getbill_sandbox.requests_made("write") == 1


async def test_no_marker_means_a_small_default_sandbox(getbill_sandbox):
    assert len(getbill_sandbox.followup_ids()) == 100
"""

INJECTS_FAULTS = """
import pytest

pytestmark = pytest.mark.getbill_sandbox(followups=50, seed=4)


@pytest.mark.getbill_sandbox(faults="500:0.3,503:0.1")
async def test_a_walk_survives_server_errors(getbill_sandbox, getbill_client):
    seen = [f.id async for f in getbill_client.followups.iterate(limit=5)]
    assert sorted(seen) == sorted(getbill_sandbox.followup_ids())
    assert getbill_sandbox.answered(500) + getbill_sandbox.answered(503) > 0
    assert getbill_sandbox.requests_made("read") > 10  # ten pages, and the retries


@pytest.mark.getbill_sandbox(faults="reset_after@1")
async def test_an_ambiguous_create_is_settled_by_its_call_id(getbill_sandbox, getbill_client):
    debt = getbill_sandbox.debt_ids()[0]
    await getbill_client.followups.create(debt_id=debt, type="call", call_id="amb-1")
    assert getbill_sandbox.created_per_call_id() == {"amb-1": 1}
    assert sum(getbill_sandbox.stats.faults_injected.values()) == 1
"""


def ini(mode: str) -> str:
    """A user's pytest settings for pytest-asyncio (its loop scope set, as it asks)."""
    return (
        "[tool.pytest.ini_options]\n"
        f'asyncio_mode = "{mode}"\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_a_user_suite_logs_calls_and_checks_them_with_the_helpers(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makepyfile(service=SERVICE, test_logs_calls=LOGS_CALLS)
    if mode == "strict":  # strict mode: every async test is marked, as its users write them
        pytester.makepyprojecttoml(ini("strict"))
        source = LOGS_CALLS.replace("\nasync def", "\n@pytest.mark.asyncio\nasync def")
        pytester.makepyfile(test_logs_calls=source)
    else:
        pytester.makepyprojecttoml(ini("auto"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error", "--strict-markers")
    result.assert_outcomes(passed=5)


@pytest.mark.timeout(60)
def test_a_user_suite_injects_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(ini("auto"))
    pytester.makepyfile(test_faults=INJECTS_FAULTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


ANYIO = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"  # the client is aiohttp's


@pytest.mark.anyio
@pytest.mark.getbill_sandbox(followups=12)
async def test_under_anyio(getbill_sandbox, getbill_client):
    ids = [f.id async for f in getbill_client.followups.iterate(limit=5)]
    assert ids == getbill_sandbox.followup_ids()
    assert getbill_sandbox.requests_made("read") == 3
"""


@pytest.mark.timeout(60)
def test_without_pytest_asyncio_anyio_runs_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_anyio=ANYIO)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error")
    result.assert_outcomes(passed=1)


@pytest.mark.timeout(60)
def test_a_bad_marker_names_the_allowed_options_and_other_tests_run_as_before(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyprojecttoml(ini("strict"))
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.asyncio
@pytest.mark.getbill_sandbox(folowups=5)
async def test_typo(getbill_sandbox):
    pass

@pytest.mark.asyncio
@pytest.mark.getbill_sandbox(faults="500:2")
async def test_bad_rate(getbill_sandbox):
    pass
""",
        test_plain="def test_one():\n    assert True\n",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*unknown option(s) folowups; allowed: followups, seed, reads, writes, window,*",
            "*faults: fault rate must be within 0..1, got 2.0*",
        ]
    )


def test_importing_the_plugin_imports_no_sandbox_and_no_extra() -> None:
    probe = (
        "import sys, getbill_async.pytest_plugin\n"
        "heavy = ('aiohttp.web', 'getbill_async.sandbox', 'getbill_async.dlt', 'dlt')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"


LOOP_SCOPES = """
import pytest
import pytest_asyncio

pytestmark = pytest.mark.getbill_sandbox(followups=12)


async def check(sandbox, client):
    ids = [f.id async for f in client.followups.iterate(limit=5)]
    assert ids == sandbox.followup_ids()
    await sandbox.webhooks_idle()  # the sandbox's own awaitables, on the test's loop


async def test_on_the_default_module_loop(getbill_sandbox, getbill_client):
    await check(getbill_sandbox, getbill_client)


@pytest.mark.asyncio(loop_scope="function")
async def test_on_a_function_loop(getbill_sandbox, getbill_client):
    await check(getbill_sandbox, getbill_client)


@pytest.mark.asyncio(loop_scope="session")
async def test_on_the_session_loop(getbill_sandbox, getbill_client):
    await check(getbill_sandbox, getbill_client)


@pytest.mark.asyncio(loop_scope="class")
class TestOnAClassLoop:
    async def test_one(self, getbill_sandbox, getbill_client):
        await check(getbill_sandbox, getbill_client)

    async def test_two(self, getbill_sandbox, getbill_client):
        await check(getbill_sandbox, getbill_client)


@pytest_asyncio.fixture  # on the session loop, as the setting says; the test's is another
async def first_page(getbill_client):
    return await getbill_client.followups.list(limit=5)


async def test_a_fixture_of_its_own_on_another_loop_fails_at_once(first_page):
    pass
"""


@pytest.mark.timeout(150)
def test_the_fixtures_follow_the_test_loop_scope(pytester: pytest.Pytester) -> None:
    """The fixtures' loop scope setting and the tests' differ: the fixtures still run on
    each test's loop (they once hung there for minutes, then failed with a timeout), and a
    fixture of the user's on another loop fails at once, naming the settings to change."""
    pytester.makepyprojecttoml(
        "[tool.pytest.ini_options]\n"
        'asyncio_mode = "auto"\n'
        'asyncio_default_fixture_loop_scope = "session"\n'
        'asyncio_default_test_loop_scope = "module"\n'
    )
    pytester.makepyfile(test_loops=LOOP_SCOPES)
    # A subprocess, so that a hang is cut by the inner run's own timeout.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error", "--timeout", "20", timeout=140
    )
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(
        [
            "getbill_client was used on another event loop than the test's (module-scoped),*"
            "Give that fixture loop_scope='module' (@pytest_asyncio.fixture(loop_scope='module')),"
            " or set asyncio_default_fixture_loop_scope = 'module'*",
        ]
    )
    assert "Timeout" not in result.stdout.str()
