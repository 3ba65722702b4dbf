"""A pytest plugin for the tests of services built on this SDK: the sandbox as fixtures.

Installed with the package (a ``pytest11`` entry point), it registers two fixtures and one
marker, and does nothing else: a test that asks for neither runs exactly as without it.

    @pytest.mark.getbill_sandbox(followups=50, writes=5, faults="500:0.1")
    async def test_logs_the_call(getbill_sandbox, getbill_client):
        await my_service.log_call(getbill_client, call_id="c-1")
        assert len(getbill_sandbox.created_followups(call_id="c-1")) == 1

- ``getbill_sandbox``: a started ``Sandbox`` on 127.0.0.1 (a free port), one per test, stopped
  after it. The marker's keywords go to ``Sandbox`` (see ``SANDBOX_OPTIONS``); ``faults`` may
  be a ``FaultPlan`` or its text form (``"500:0.1,reset_after@3"``), drawn with ``seed``.
  Without a marker: 100 followups, seed 1, the API's own limits.
- ``getbill_client``: a ``GetBillClient`` on that sandbox (its static token), with the
  sandbox's limits as its budget and quick retries, closed after the test.

Both are async fixtures, run on the test's event loop: with pytest-asyncio active they are
pytest-asyncio fixtures (strict and auto modes) that follow the test's loop scope (its
``asyncio`` marker's ``loop_scope``, else ``asyncio_default_test_loop_scope``), whatever
``asyncio_default_fixture_loop_scope`` says; without it (not installed, or
``-p no:asyncio``), plain async fixtures, which anyio's pytest plugin runs for
``@pytest.mark.anyio`` tests. Nothing of the sandbox or of aiohttp's server is imported
until a test asks for a fixture.
"""

from __future__ import annotations

import asyncio
import functools
import types
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal, get_args

import pytest

if TYPE_CHECKING:
    from getbill_async import GetBillClient
    from getbill_async.sandbox import Sandbox

__all__ = [
    "DEFAULT_FOLLOWUPS",
    "LOOP_SCOPES",
    "SANDBOX_OPTIONS",
    "loop_scope_of",
    "sandbox_options",
]

MARKER = "getbill_sandbox"
DEFAULT_FOLLOWUPS = 100  # small: a sandbox per test starts in milliseconds
#: The keywords the marker takes, as ``Sandbox`` takes them.
SANDBOX_OPTIONS = (
    "followups",
    "seed",
    "reads",
    "writes",
    "window",
    "latency",
    "faults",
    "token_lifetime",
    "max_page_limit",
    "webhook_url",
    "webhook_secret",
    "media_host",
    "media_ttl",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (so ``--strict-markers`` accepts it) and the fixtures."""
    config.pluginmanager.register(_fixtures(config), "getbill-fixtures")
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the getbill_sandbox fixture's Sandbox "
        f"({', '.join(SANDBOX_OPTIONS)}); faults may be text, such as '500:0.1'",
    )


def sandbox_options(node: pytest.Item | Any) -> dict[str, Any]:
    """The ``Sandbox`` keywords for a test: defaults, then its markers' (closest wins).

    Args:
        node: The test item (``request.node``).

    Returns:
        The keywords, with a text ``faults`` turned into a ``FaultPlan``.

    Raises:
        pytest.UsageError: A positional argument, or a keyword ``Sandbox`` does not take.
    """
    options: dict[str, Any] = {"followups": DEFAULT_FOLLOWUPS}
    for mark in reversed(list(node.iter_markers(MARKER))):  # farthest first
        if mark.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keywords only, got {mark.args}")
        unknown = sorted(set(mark.kwargs) - set(SANDBOX_OPTIONS))
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER}: unknown option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(SANDBOX_OPTIONS)}"
            )
        options.update(mark.kwargs)
    faults = options.get("faults")
    if isinstance(faults, str):
        from getbill_async.sandbox import FaultPlan

        try:
            options["faults"] = FaultPlan.parse(faults, seed=options.get("seed", 1))
        except ValueError as exc:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}: faults: {exc}") from None
    return options


async def _sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    """A started Sandbox on 127.0.0.1, one per test, set by @pytest.mark.getbill_sandbox(...).

    Options: followups=..., writes=..., faults="500:0.1", ... (see SANDBOX_OPTIONS); by
    default 100 followups, seed 1, the API's limits. Assert with its helpers:
    created_followups(call_id=...), requests_made("read"|"write"), answered(429),
    delivered_webhooks().
    """
    from getbill_async.sandbox import Sandbox

    options = sandbox_options(request.node)
    try:
        sandbox = Sandbox(**options)
    except ValueError as exc:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}: {exc}") from None
    async with sandbox:
        yield sandbox


async def _client(
    request: pytest.FixtureRequest, getbill_sandbox: Sandbox
) -> AsyncIterator[GetBillClient]:
    """A GetBillClient of getbill_sandbox (its token, its limits as the budget, quick
    retries), closed after the test."""
    from getbill_async import GetBillClient, Hooks, RateLimit, RetryPolicy

    home = asyncio.get_running_loop()

    def on_its_loop(attempt: object) -> None:
        # The sandbox serves on `home` only: a request from another loop (a fixture of the
        # user's, on a loop of another scope) would wait for an answer that never comes.
        # pytest.fail is no Exception, so the client's hook guard lets it through at once.
        if asyncio.get_running_loop() is not home:
            pytest.fail(_other_loop(request), pytrace=False)

    async with GetBillClient(
        getbill_sandbox.token,
        base_url=getbill_sandbox.base_url,
        rate_limit=RateLimit(**getbill_sandbox.limits()),
        retry=RetryPolicy(base=0.001, cap=0.05),
        hooks=Hooks(on_request=on_its_loop),
    ) as client:
        yield client


def _other_loop(request: pytest.FixtureRequest) -> str:
    scope = loop_scope_of(request.node)
    return (
        f"getbill_client was used on another event loop than the test's ({scope}-scoped), "
        "where its sandbox serves: an async fixture that uses it runs on a loop of another "
        f"scope. Give that fixture loop_scope={scope!r} "
        f"(@pytest_asyncio.fixture(loop_scope={scope!r})), or set "
        f"asyncio_default_fixture_loop_scope = {scope!r} to match the tests' loop scope"
    )


def _fixture_module(wrap: Callable[..., Any]) -> types.ModuleType:
    """The two fixtures, as a module object that pytest scans like a plugin module."""
    module = types.ModuleType(f"{__name__}.fixtures")
    module.getbill_sandbox = wrap(_sandbox, name="getbill_sandbox")  # type: ignore[attr-defined]
    module.getbill_client = wrap(_client, name="getbill_client")  # type: ignore[attr-defined]
    return module


LoopScope = Literal["function", "class", "module", "package", "session"]
#: pytest-asyncio's loop scopes, narrowest first.
LOOP_SCOPES: tuple[LoopScope, ...] = get_args(LoopScope)


def loop_scope_of(node: pytest.Item | Any) -> str:
    """The scope of the event loop pytest-asyncio runs a test on.

    The ``loop_scope`` of the test's closest ``asyncio`` marker, else the
    ``asyncio_default_test_loop_scope`` setting, else ``"function"``, as pytest-asyncio
    decides it. A test that is not async runs its fixtures on a function-scoped loop.

    Args:
        node: The test item (``request.node``).

    Returns:
        One of ``LOOP_SCOPES``.

    Raises:
        pytest.UsageError: A loop scope pytest-asyncio does not know.
    """
    marker = node.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if scope is None:
        try:
            scope = node.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # a pytest-asyncio without the setting: tests run per function
            scope = None
    scope = scope or "function"
    if scope not in LOOP_SCOPES:
        raise pytest.UsageError(
            f"{node.nodeid}: the getbill fixtures follow the test's event loop, whose scope "
            f"{scope!r} is not one of {', '.join(LOOP_SCOPES)}: fix the test's "
            "@pytest.mark.asyncio(loop_scope=...) or asyncio_default_test_loop_scope"
        )
    return str(scope)


def _on_loop(fixture: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    # A function object of its own per loop scope: pytest-asyncio marks the function it is
    # given with its loop scope.
    @functools.wraps(fixture)
    async def on_loop(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for value in fixture(*args, **kwargs):
            yield value

    return on_loop


def _following(kind: str) -> Callable[[pytest.FixtureRequest], Any]:
    def follow(request: pytest.FixtureRequest) -> Any:
        return request.getfixturevalue(f"_getbill_{kind}_{loop_scope_of(request.node)}_loop")

    follow.__doc__ = f"The getbill {kind}, set up on the test's own event loop."
    return follow


def _asyncio_fixture_module() -> types.ModuleType:
    """The fixtures under pytest-asyncio: on the test's loop, whatever its scope.

    pytest-asyncio runs an async fixture on the loop of the fixture's ``loop_scope`` (by
    default ``asyncio_default_fixture_loop_scope``), which need not be the test's: the
    sandbox would then serve on a loop that is not running while the test awaits it, and
    every request would hang. So each fixture exists once per loop scope, hidden, and the
    public one picks the variant whose loop is the test's.
    """
    import pytest_asyncio

    module = types.ModuleType(f"{__name__}.fixtures")
    for scope in LOOP_SCOPES:
        for kind, fixture in (("sandbox", _sandbox), ("client", _client)):
            name = f"_getbill_{kind}_{scope}_loop"
            wrapped = pytest_asyncio.fixture(_on_loop(fixture), loop_scope=scope, name=name)
            setattr(module, name, wrapped)
    module.getbill_sandbox = pytest.fixture(_following("sandbox"), name="getbill_sandbox")  # type: ignore[attr-defined]
    module.getbill_client = pytest.fixture(_following("client"), name="getbill_client")  # type: ignore[attr-defined]
    return module


def _fixtures(config: pytest.Config) -> types.ModuleType:
    # Whether pytest-asyncio is active in this run (installed, and not disabled by
    # `-p no:asyncio`): its fixtures then run on the test's loop, in strict mode too.
    # Otherwise plain async fixtures, which anyio's plugin runs for its tests.
    if config.pluginmanager.has_plugin("asyncio"):
        return _asyncio_fixture_module()
    return _fixture_module(pytest.fixture)
