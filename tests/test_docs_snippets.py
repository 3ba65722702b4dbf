"""Every python block of the README and of the docs site runs, against a sandbox.

Sybil finds the blocks (```` ```python ```` fences, and ``<!-- skip: next -->`` before a block
that must not run); the evaluator here compiles each with top-level ``await`` allowed and runs
it on the page's event loop. The blocks of one page share one namespace, in order, like a
reader typing them into ``python -m asyncio``. Each page gets a fresh sandbox (served on a
thread of its own, so that blocking code reaches it too), reached the way a real program
reaches the API: ``GETBILL_TOKEN`` and ``GETBILL_BASE_URL`` in the environment (and
``REDIS_URL``, ``REDIS_CLUSTER_URL`` for the fleet examples), in a fresh working directory.
The convention is written down in docs/development.md.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Document, Example
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from getbill_async import GetBillClient
from getbill_async.sandbox import Sandbox
from tests.redis_fixtures import RedisCluster, RedisServer
from tests.sync_helpers import ThreadedSandbox

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP = "<!-- skip: next -->"
SKIP_LINE = re.compile(r"^<!-- skip: next -->$", flags=re.M)
#: Skipped blocks can drift unseen: this many at most, so a new one is a choice, not a habit.
MAX_SKIPPED = 4


class AsyncEvaluator:
    """Runs a python block on ``loop``, top-level ``await``/``async with``/``async for`` too."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ran = 0

    def __call__(self, example: Example) -> None:
        # Padded so that a traceback's line numbers are the page's.
        source = pad(example.parsed, example.line + example.parsed.line_offset)
        code = compile(
            source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        # With top-level await in it, the code object is a coroutine function's body.
        result = eval(code, example.namespace)  # noqa: S307 - the project's own docs
        if inspect.iscoroutine(result):
            self.loop.run_until_complete(result)
        example.namespace.pop("__builtins__", None)
        self.ran += 1


def run_page(path: Path, loop: asyncio.AbstractEventLoop) -> int:
    """Run every python block of ``path`` in order; return how many ran."""
    evaluator = AsyncEvaluator(loop)
    document = Document.parse(str(path), CodeBlockParser("python", evaluator), SkipParser())
    for example in document:
        example.evaluate()
    return evaluator.ran


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def snippet_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    redis_cluster: RedisCluster,
) -> Iterator[asyncio.AbstractEventLoop]:
    # The sandbox has a loop of its own, on a thread, so that a block of sync code (which
    # blocks this thread while it waits) reaches it too.
    loop = asyncio.new_event_loop()
    with ThreadedSandbox(followups=1000, seed=7) as sandbox:
        for name in ("GETBILL_CLIENT_ID", "GETBILL_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GETBILL_TOKEN", sandbox.token)
        monkeypatch.setenv("GETBILL_BASE_URL", sandbox.base_url)
        monkeypatch.setenv("REDIS_URL", redis_server.url)
        monkeypatch.setenv("REDIS_CLUSTER_URL", redis_cluster.url)
        monkeypatch.chdir(tmp_path)
        yield loop
        loop.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_python_blocks_run(path: Path, snippet_env: asyncio.AbstractEventLoop) -> None:
    text = path.read_text()
    ran = run_page(path, snippet_env)
    blocks = len(re.findall(r"^(```|<!-- invisible-code-block: )python\s*$", text, flags=re.M))
    skipped = len(SKIP_LINE.findall(text))
    assert ran == blocks - skipped, "a python block was not run: is its fence plain?"


def test_skipped_blocks_are_few() -> None:
    skipped = {page_id(path): len(SKIP_LINE.findall(path.read_text())) for path in PAGES}
    assert sum(skipped.values()) <= MAX_SKIPPED, {k: v for k, v in skipped.items() if v}


@pytest.mark.timeout(30)
def test_a_block_that_drifts_from_the_api_fails(
    tmp_path: Path, snippet_env: asyncio.AbstractEventLoop
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- invisible-code-block: python\nfrom getbill_async import GetBillClient\n-->\n\n"
        f"{SKIP}\n```python\nraise SystemExit('a skipped block runs')\n```\n\n"
        "```python\nasync with GetBillClient() as client:\n"
        "    await client.followups.list(stauts='delivered')\n```\n"
    )
    with pytest.raises(TypeError, match="stauts") as caught:
        run_page(page, snippet_env)
    # The traceback points into the page, at the block's own line.
    frames = [f for f in caught.traceback if str(f.path) == str(page)]
    assert frames and frames[-1].lineno + 1 == 12


@pytest.mark.timeout(30)
async def test_the_client_takes_its_base_url_from_the_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GETBILL_BASE_URL", sandbox.base_url)
    async with GetBillClient(sandbox.token) as client:
        assert client.base_url == sandbox.base_url
        assert (await client.followups.list(limit=1)).pagination.total == 1000
    monkeypatch.delenv("GETBILL_BASE_URL")
    for given, expected in (
        (None, "https://getbill.io/external-api/v1"),
        ("https://a.test/v1",) * 2,
    ):
        async with GetBillClient("t", base_url=given) as client:
            assert client.base_url == expected
