"""The dlt source on a real day: its own token URL, a busy account, the sweep, budgets.

Real dlt pipelines into DuckDB files, against the sandbox on loopback (see
``test_dlt_source`` for how a run is driven from a test).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest
from aiohttp import web
from dlt.pipeline.exceptions import PipelineStepFailed

from getbill_async import (
    ConfigurationError,
    GetBillClient,
    RateLimit,
    RedisBudget,
    ValidationError,
)
from getbill_async.dlt import getbill_source
from getbill_async.sandbox import Sandbox
from getbill_async.transport import ClientCredentials, reads_for, resolve_credentials
from tests.loopback import serve
from tests.redis_fixtures import RedisServer
from tests.test_dlt_source import (
    NOT_LOADED,
    differences,
    dlt_home,
    pipeline,
    run,
    table_columns,
)

__all__ = ["dlt_home"]  # the autouse fixture: a clean dlt home for every test here


@dataclass
class Seen:
    """One request a recording proxy passed on."""

    method: str
    path: str
    text: str  # the headers and the body, as they came


@dataclass
class Recorder:
    """A proxy on a loopback port of its own (a host of its own) that passes every request
    on to ``target`` and records it."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)

    def carried(self, secret: str) -> list[Seen]:
        return [s for s in self.seen if secret in s.text]


@asynccontextmanager
async def recorder(
    target: str, before: Callable[[web.Request], Awaitable[None]] | None = None
) -> AsyncIterator[Recorder]:
    """The proxy; ``before(request)`` runs before a request is passed on (a hook that
    changes the server between two reads of a walk)."""
    rec = Recorder()
    async with aiohttp.ClientSession() as http:

        async def forward(request: web.Request) -> web.Response:
            if before is not None:
                await before(request)
            body = await request.read()
            headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            rec.seen.append(Seen(request.method, request.path, headers + "\n" + body.decode()))
            sent = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            url = target + request.path_qs
            async with http.request(request.method, url, data=body, headers=sent) as resp:
                kept = {
                    k: v
                    for k, v in resp.headers.items()
                    if k.lower().startswith("x-ratelimit") or k.lower() == "content-type"
                }
                return web.Response(status=resp.status, body=await resp.read(), headers=kept)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        async with serve(app) as url:
            rec.url = url
            yield rec


@pytest.mark.timeout(60)
async def test_the_client_secret_goes_only_to_the_configured_token_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        Sandbox(followups=150, seed=11) as sb,
        recorder(sb.root_url) as api,
        recorder(sb.root_url) as tokens,
    ):
        secret = sb.client_secret
        monkeypatch.setenv("SOURCES__GETBILL__CLIENT_ID", sb.client_id)
        monkeypatch.setenv("SOURCES__GETBILL__CLIENT_SECRET", secret)
        prefix = sb.base_url.removeprefix(sb.root_url)
        monkeypatch.setenv("SOURCES__GETBILL__BASE_URL", api.url + prefix)
        monkeypatch.setenv("GETBILL_TOKEN_URL", tokens.url + "/token")
        monkeypatch.setenv("GETBILL_SCOPES", "followups:read debts:read")
        pipe = pipeline(tmp_path, "oauth")
        assert await run(pipe, getbill_source()) == {"followups": 150, "debts": 15}

        # The same with the source's own options, and the environment's token URL elsewhere.
        monkeypatch.setenv("GETBILL_TOKEN_URL", "https://token.invalid/token")
        other = recorder(sb.root_url)
        async with other as chosen:
            source = getbill_source(token_url=chosen.url + "/token", scopes=["followups:read"])
            with pytest.raises(PipelineStepFailed, match="debts:read"):  # only what was asked
                await run(pipeline(tmp_path, "scoped"), source)
    assert [(s.method, s.path) for s in tokens.seen] == [("POST", "/token")]
    assert "scope=followups%3Aread+debts%3Aread" in tokens.seen[0].text
    assert tokens.carried(secret) == tokens.seen
    assert [(s.method, s.path) for s in chosen.carried(secret)] == [("POST", "/token")]
    assert "scope=followups%3Aread\n" in chosen.seen[0].text + "\n"
    assert api.seen and not api.carried(secret)  # the API's host never saw the secret
    assert all(s.path.startswith(prefix + "/") for s in api.seen)


def test_credentials_resolve_by_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GETBILL_TOKEN", "GETBILL_CLIENT_ID", "GETBILL_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name in ("GETBILL_TOKEN_URL", "GETBILL_SCOPES", "GETBILL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    staging = "https://staging.example.com:8443/external-api/v1"
    creds = resolve_credentials(client_id="c", client_secret="s", base_url=staging)
    assert isinstance(creds, ClientCredentials)
    assert creds.token_url == "https://staging.example.com:8443/token"  # never production's
    default = resolve_credentials(ClientCredentials("c", "s"))
    assert isinstance(default, ClientCredentials)
    assert default.token_url == "https://getbill.io/token"
    monkeypatch.setenv("GETBILL_CLIENT_ID", "env-id")
    monkeypatch.setenv("GETBILL_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("GETBILL_SCOPES", "debts:read")
    monkeypatch.setenv("GETBILL_TOKEN_URL", "https://auth.example.com/token")
    creds = resolve_credentials(base_url=staging)
    assert creds == ClientCredentials(
        "env-id", "env-secret", ("debts:read",), "https://auth.example.com/token"
    )
    passed = resolve_credentials(token_url="https://other.example.com/t", scopes="a:b c:d")
    assert isinstance(passed, ClientCredentials)
    assert (passed.token_url, passed.scopes) == ("https://other.example.com/t", ("a:b", "c:d"))
    monkeypatch.setenv("GETBILL_TOKEN", " tok ")
    assert resolve_credentials() == "tok"  # a token wins, as before
    with pytest.raises(ValidationError, match="either token, or both client_id and"):
        resolve_credentials(client_id="c")
    with pytest.raises(ValidationError, match="^scopes: scopes must be names"):
        resolve_credentials(client_id="c", client_secret="s", scopes='["a:b", "c:d"]')
    assert "env-secret" not in repr(creds)


@pytest.mark.timeout(60)
async def test_a_budget_instance_is_refused_at_once_and_a_factory_serves_every_run(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    limit = RateLimit(reads=50, writes=5, window=1.0)
    budget = RedisBudget(redis_server.url, "getbill:dlt-instance", limit)
    try:
        with pytest.raises(ConfigurationError, match=r"pass a BudgetFactory instead") as info:
            getbill_source("t", base_url="http://127.0.0.1:1/v1", rate_limit=budget)  # type: ignore[arg-type]
        assert "rate_limit=lambda: RedisBudget(...)" in str(info.value)
    finally:
        await budget.aclose()
    async with Sandbox(followups=100, seed=12) as sb:
        pipe = pipeline(tmp_path, "factory")
        for _ in range(2):  # two runs in one process, each on a loop of its own
            source = getbill_source(
                sb.token,
                base_url=sb.base_url,
                rate_limit=lambda: RedisBudget(redis_server.url, "getbill:dlt-instance", limit),
            )
            assert (await run(pipe, source))["debts"] == 10


def _state(pipe: Any) -> dict[str, Any]:
    return dict(pipe.state["sources"]["getbill"]["resources"]["followups"])


def differences_but(left: Path, right: Path, table: str, left_out: list[str]) -> tuple[int, int]:
    """Rows of ``table`` in ``left`` not in ``right`` and the other way round (every loaded
    column, duplicates counted), the rows whose id is in ``left_out`` left out."""
    names = sorted(c for c in table_columns(left, table) if c not in NOT_LOADED)
    assert names == sorted(c for c in table_columns(right, table) if c not in NOT_LOADED)
    cols = ", ".join(f'"{n}"' for n in names)
    skip = ", ".join(f"'{i}'" for i in left_out) or "''"
    with duckdb.connect() as db:
        db.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        db.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        one = f"SELECT {cols} FROM l.getbill.{table} WHERE id NOT IN ({skip})"
        two = f"SELECT {cols} FROM r.getbill.{table} WHERE id NOT IN ({skip})"
        only_left = db.execute(f"SELECT count(*) FROM ({one} EXCEPT ALL {two})").fetchone()
        only_right = db.execute(f"SELECT count(*) FROM ({two} EXCEPT ALL {one})").fetchone()
    assert only_left is not None and only_right is not None
    return only_left[0], only_right[0]


class CallLog:
    """Calls logged over HTTP, as a dialer would: some on each day before its run, and one
    before each of the first page reads of a walk after its first (``during``, up to
    ``busy`` of them)."""

    def __init__(self, sb: Sandbox, writer: GetBillClient) -> None:
        self.sb, self.writer, self.debt = sb, writer, sb.debt_ids()[0]
        self.day = date(2025, 1, 1)
        self.busy = 0
        self.during: list[str] = []
        self.count = 0

    async def log(self, day: date) -> str:
        self.count += 1
        when = datetime(day.year, day.month, day.day, 8, tzinfo=timezone.utc)
        created = await self.writer.followups.create(
            debt_id=self.debt,
            type="call",
            status="delivered",
            call_date=when + timedelta(seconds=self.count),
            call_id=f"dialer-{self.count}",
        )
        return created.id

    async def before(self, request: web.Request) -> None:
        page = request.query.get("page", "1")
        if self.busy and request.path.endswith("/followups") and page != "1":
            self.busy -= 1
            self.during.append(await self.log(self.day))


@pytest.mark.timeout(120)
async def test_on_a_busy_account_the_window_moves_every_run(tmp_path: Path) -> None:
    days = [date(2025, 1, 6) + timedelta(days=n) for n in range(5)]
    async with (
        Sandbox(followups=400, seed=31) as sb,
        GetBillClient(sb.token, base_url=sb.base_url) as writer,
    ):
        calls = CallLog(sb, writer)
        for n in range(5, 0, -1):  # the days before the first run had their calls too
            for _ in range(15):
                await calls.log(days[0] - timedelta(days=n))
        async with recorder(sb.root_url, calls.before) as api:
            base = api.url + sb.base_url.removeprefix(sb.root_url)
            pipe = pipeline(tmp_path, "busy")
            reads: list[int] = []
            for day in days:
                for _ in range(12):
                    await calls.log(day)
                calls.day, calls.busy, calls.during = day, 3, []
                spent = sb.requests_made("read")
                source = getbill_source(sb.token, base_url=base, today=day, page_limit=20)
                await run(pipe, source)
                calls.busy = 0
                reads.append(sb.requests_made("read") - spent)
                state = _state(pipe)
                assert calls.during, "calls were logged during the walk"
                assert state["synced_through"] == day.isoformat(), (day, state)
                assert state["last_run"]["proved"]
        await run(pipeline(tmp_path, "reference"), getbill_source(sb.token, base_url=sb.base_url))
    print(f"reads per run: {reads}")
    assert max(reads[1:]) - min(reads[1:]) <= 2  # flat: the window is the last four days
    assert max(reads[1:]) < reads[0] // 3
    left, right = tmp_path / "busy.duckdb", tmp_path / "reference.duckdb"
    # Row by row, but for the calls logged during the last walk (the next run's).
    assert differences_but(left, right, "followups", calls.during) == (0, 0)
    # The debt those calls were logged for counts them already.
    assert differences_but(left, right, "debts", [calls.debt]) == (0, 0)


def warehouse_ids(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as db:
        return {row[0] for row in db.sql("SELECT id FROM getbill.followups").fetchall()}


class ReadsAtPlan(logging.Handler):
    """Notes how many reads the sandbox had answered when the sweep's plan was logged."""

    def __init__(self, sb: Sandbox) -> None:
        super().__init__(logging.INFO)
        self.sb = sb
        self.plans: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "sweep plan" in record.getMessage():
            self.plans.append((record.getMessage(), self.sb.requests_made("read")))


@pytest.mark.timeout(120)
async def test_a_planned_sweep_loads_what_incremental_runs_cannot_see(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day = date(2025, 1, 6)
    caplog.set_level(logging.INFO, logger="getbill_async")  # restored after the test
    logger = logging.getLogger("getbill_async")
    async with (
        Sandbox(followups=500, seed=41) as sb,
        GetBillClient(sb.token, base_url=sb.base_url) as writer,
    ):
        watch = ReadsAtPlan(sb)
        pipe = pipeline(tmp_path, "swept")

        def source(today: date) -> Any:
            return getbill_source(sb.token, base_url=sb.base_url, today=today, full_every=7)

        await run(pipe, source(day))
        debt = sb.debt_ids()[0]
        undated = await writer.followups.create(debt_id=debt, type="call", status="delivered")
        eleven_days_late = datetime(2024, 12, 27, 9, tzinfo=timezone.utc)
        late = await writer.followups.create(
            debt_id=debt, type="call", status="delivered", call_date=eleven_days_late
        )
        gone = sb.followup_ids()[5]
        sb.delete_followup(gone)

        await run(pipe, source(day + timedelta(days=1)))
        held = warehouse_ids(tmp_path / "swept.duckdb")
        assert undated.id not in held and late.id not in held and gone in held  # unseen
        assert _state(pipe)["last_run"]["sweep"] is False

        before = sb.requests_made("read")
        logger.addHandler(watch)
        try:
            await run(pipe, source(day + timedelta(days=7)))  # the sweep is due
        finally:
            logger.removeHandler(watch)
        spent = sb.requests_made("read") - before
        await run(pipeline(tmp_path, "reference"), getbill_source(sb.token, base_url=sb.base_url))
    (message, reads_then), *_ = watch.plans
    planned = reads_for(501, 100)
    assert message.startswith(f"followups sweep plan: 501 items in {planned} requests")
    assert reads_then == before + 1  # logged after its one probe, before the sweep's reads
    assert spent == 1 + planned + 1  # the probe, the sweep as planned, a page of debts
    state = _state(pipe)
    assert state["swept_on"] == "2025-01-13" and state["synced_through"] == "2025-01-13"
    assert state["last_run"] == {"sweep": True, "proved": True, "reads": planned, "deleted": 1}
    held = warehouse_ids(tmp_path / "swept.duckdb")
    assert {undated.id, late.id} <= held and gone not in held
    left, right = tmp_path / "swept.duckdb", tmp_path / "reference.duckdb"
    assert differences(left, right, "followups") == (0, 0, 501)


@pytest.mark.timeout(120)
async def test_a_net_zero_change_during_a_run_loses_no_change(tmp_path: Path) -> None:
    # One followup leaves the window on the first page and another enters further down while
    # the walk runs: total stays put, and the first followup of page 2 slides onto page 1.
    async with Sandbox(followups=2000, seed=51) as sb:
        window = "2024-12-01"  # the second run's date_from: 2025-01-01 less lag_days=31
        listed = sb.followup_ids(date_from=window)
        every = sb.followup_ids()
        entering = next(
            f
            for f in every[every.index(listed[60]) :]
            if f not in set(listed) and (sb.followup(f) or {}).get("call_date")
        )
        leaving, sliding = listed[5], listed[20]
        changed: list[bool] = []

        async def before(request: web.Request) -> None:
            if request.query.get("page", "1") != "1" and "date_from" in request.query:
                if not changed:
                    changed.append(True)
                    sb.change_followup(leaving, call_date="2020-01-02T10:00:00+00:00")
                    sb.change_followup(entering, call_date="2024-12-20T10:00:00+00:00")

        async with recorder(sb.root_url, before) as api:
            base = api.url + sb.base_url.removeprefix(sb.root_url)
            pipe = pipeline(tmp_path, "netzero")

            def source(today: str) -> Any:
                return getbill_source(
                    sb.token, base_url=base, today=today, lag_days=31, page_limit=20
                )

            await run(pipe, source("2024-12-31"))
            sb.change_followup(sliding, status="deal_found", notes="agreed on the phone")
            total = len(sb.followup_ids(date_from=window))
            await run(pipe, source("2025-01-01"))
        assert changed and total == len(sb.followup_ids(date_from=window))  # net zero
    with duckdb.connect(str(tmp_path / "netzero.duckdb"), read_only=True) as db:
        found = db.execute(
            "SELECT status, notes FROM getbill.followups WHERE id = ?", [sliding]
        ).fetchall()
    assert found == [("deal_found", "agreed on the phone")]  # the change that slid, loaded
    assert _state(pipe)["last_run"]["proved"]
