"""The sync face in its users' stacks, for real: a Celery prefork worker on a Redis broker, a
notebook on a Jupyter kernel, a threaded WSGI app. These libraries are test dependencies;
the package imports none of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from getbill_async import RateLimit
from getbill_async.sync import GetBillClient
from tests.redis_fixtures import RedisServer
from tests.sync_helpers import ThreadedSandbox, wait_for

ROOT = Path(__file__).resolve().parents[1]
TASKS = 200


def _pool_children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _dead(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.fixture
def worker_env(
    tmp_path: Path, redis_server: RedisServer
) -> Iterator[tuple[ThreadedSandbox, dict[str, str]]]:
    with ThreadedSandbox(followups=50, seed=11) as sb:
        env = dict(
            os.environ,
            CELERY_BROKER=redis_server.url,
            CELERY_QUEUE=f"calls-{uuid.uuid4().hex[:8]}",
            OUTBOX_PATH=str(tmp_path / "calls.db"),
            GETBILL_TOKEN=sb.token,
            GETBILL_BASE_URL=sb.base_url,
            PYTHONWARNINGS="ignore",  # Celery's own deprecations, in its own process
        )
        yield sb, env


@pytest.mark.timeout(60)
def test_celery_prefork_tasks_log_every_call_exactly_once_despite_a_killed_worker(
    worker_env: tuple[ThreadedSandbox, dict[str, str]],
) -> None:
    from celery import Celery

    sb, env = worker_env
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
        "--pool=prefork", "--concurrency=2", "--loglevel=WARNING",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    producer = Celery("producer", broker=env["CELERY_BROKER"])
    producer.conf.broker_connection_retry_on_startup = True
    try:
        debts = sb.read(lambda s: s.debt_ids())
        calls = [f"celery-{i}" for i in range(TASKS)]
        for i, call_id in enumerate(calls):
            producer.send_task(
                "log_call", args=[debts[i % len(debts)], call_id], queue=env["CELERY_QUEUE"]
            )

        def made() -> int:
            return len(sb.read(lambda s: s.created_per_call_id()))

        wait_for("the pool to log a quarter of the calls", lambda: made() >= TASKS // 4, 30)
        victim = _pool_children(worker.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for("every call", lambda: made() >= TASKS, 40)
        time.sleep(0.5)  # a duplicate, if any, would show by now: the lease is 2 s
        per_call = sb.read(lambda s: s.created_per_call_id())
        assert {k: v for k, v in per_call.items() if v != 1} == {}
        assert sorted(per_call) == sorted(calls)
        assert sb.read(lambda s: s.answered(429)) == 0
        assert _dead(victim)
    finally:
        producer.close()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)
        assert worker.stderr is not None
        log = worker.stderr.read().decode(errors="replace")
        worker.stderr.close()
        print(log)


NOTEBOOK_CELLS = [
    "from getbill_async.sync import GetBillClient\nclient = GetBillClient()",
    "client.followups.list(limit=1).pagination.total",
    "sum(1 for _ in client.followups.iterate(limit=20))",
    # The async face, with the kernel's own top-level await, in the same notebook.
    "from getbill_async import GetBillClient as AsyncClient\n"
    "async with AsyncClient() as async_client:\n"
    "    page = await async_client.followups.list(limit=1)\n"
    "page.pagination.total",
    "client.close()",
]


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_notebook_on_a_real_kernel_uses_both_faces(monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    with ThreadedSandbox(followups=70, seed=2) as sb:
        monkeypatch.setenv("GETBILL_TOKEN", sb.token)
        monkeypatch.setenv("GETBILL_BASE_URL", sb.base_url)
        v4: Any = nbformat.v4
        notebook = v4.new_notebook()
        notebook.cells = [v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
        NotebookClient(notebook, timeout=30, kernel_name="python3").execute()
    results = []
    for cell in notebook.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors == [], errors
        shown = [o for o in cell.outputs if o.output_type == "execute_result"]
        results.append(shown[0].data["text/plain"] if shown else None)
    assert results == [None, "70", "70", "70", None]


@pytest.mark.timeout(60)
def test_a_threaded_wsgi_app_shares_one_client_and_gets_no_429() -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    with ThreadedSandbox(followups=40, seed=4, reads=20, window=1.0) as sb:
        rate = RateLimit(reads=20, writes=10, window=1.0)
        client = GetBillClient(sb.token, base_url=sb.base_url, rate_limit=rate)
        app = Flask("calls")

        @app.get("/followups/<followup_id>")
        def followup(followup_id: str) -> dict[str, str]:
            return {"id": client.followups.get(followup_id).id}

        server = make_server("127.0.0.1", 0, app, threaded=True)
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        ids = sb.read(lambda s: s.followup_ids())
        base = f"http://127.0.0.1:{server.server_port}/followups/"

        def fetch(followup_id: str) -> int:
            with urllib.request.urlopen(base + followup_id, timeout=20) as answer:  # noqa: S310
                return int(answer.status)

        try:
            with ThreadPoolExecutor(6) as requests:
                statuses = list(requests.map(fetch, ids))
        finally:
            server.shutdown()
            serving.join(5)
            client.close()
        assert statuses == [200] * 40
        assert sb.read(lambda s: s.answered(429)) == 0
        assert sb.read(lambda s: s.requests_made("read")) == 40


@pytest.mark.timeout(30)
def test_the_package_imports_none_of_these_stacks() -> None:
    code = (
        "import sys, getbill_async, getbill_async.sync; "
        "print([m for m in ('celery', 'flask', 'nbclient', 'ipykernel') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=25)
    assert done.stdout.strip() == "[]", done.stderr
