"""The sandbox against its own OpenAPI description (`GET /openapi.json`), statefully too.

The contract run drives the sandbox from `GET /openapi.json` with a contract-testing tool:
every operation with valid and invalid input, then the stateful phase (a debt listed feeds a
create, a followup created feeds a read and an update). No request the description allows may
answer a 5xx, and every answer must match the description. Bounded: a few seeds, a few dozen
examples each, well under a minute in all. The tool speaks blocking HTTP, so it runs in a
worker thread while the sandbox serves on the test's own loop.

Each class of input that once answered a 5xx has its own test in `test_sandbox_dates.py`
(the only class so far: datetimes whose UTC instant leaves years 1..9999).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings

from getbill_async.sandbox import Sandbox

# The `contract` extra; the lowest-versions run goes without it (see the Makefile's `lock`).
pytest.importorskip("schemathesis")

import schemathesis  # noqa: E402
from schemathesis.checks import load_all_checks, not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

pytestmark = pytest.mark.timeout(120)

load_all_checks()
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ensure_resource_availability,
    ignored_auth,
    unsupported_method,
]
SEEDS = (1, 2, 3)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    # Windows wide enough that no contract run meets a 429 it did not ask for.
    async with Sandbox(followups=300, seed=5, reads=10**6, writes=10**6) as sandbox:
        yield sandbox


async def _document(sb: Sandbox) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(sb.openapi_url) as resp:
        assert resp.status == 200
        document: dict[str, Any] = await resp.json()
    return document


def _schema(document: dict[str, Any], sb: Sandbox) -> Any:
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(
        base_url=sb.base_url,
        headers={"Authorization": f"Bearer {sb.token}"},
        request_timeout=10,
    )
    return schema


def _stateless(schema: Any, seed: int, mode: Any) -> None:
    @hypothesis.seed(seed)
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


def _stateful(schema: Any, seed: int) -> None:
    base = schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            # The stateful phase may link a create to any string as `debt_id`; a 422 for an
            # unknown debt is the documented answer, so the positive-acceptance check is out.
            case.validate_response(response, checks=CHECKS, recorder=self.recorder)

    hypothesis.seed(seed)(Machine)  # the stateful runner reads the seed off the class
    Machine.run(
        settings=settings(
            max_examples=12,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_contract_stateless(sb: Sandbox, seed: int) -> None:
    schema = _schema(await _document(sb), sb)
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        await asyncio.to_thread(_stateless, schema, seed, mode)
    assert not any(status >= 500 for status in sb.stats.by_status)


async def test_contract_stateful(sb: Sandbox) -> None:
    schema = _schema(await _document(sb), sb)
    for seed in SEEDS:
        await asyncio.to_thread(_stateful, schema, seed)
    assert not any(status >= 500 for status in sb.stats.by_status)
    assert sb.stats.by_status.get(201, 0) > 0  # the links led to creates on real debts
