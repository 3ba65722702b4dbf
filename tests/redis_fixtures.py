"""Real Redis for the tests: one redis-server, and a 3-node Redis Cluster, per test session.

Each server listens on a free loopback port with its own data directory; all are stopped at
the end. ``scripts/ensure-redis`` (run by ``make test``) installs the Debian packages
(redis-server, and redis-tools for redis-cli) when they are missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisCluster", "RedisServer", "redis_cluster", "redis_server"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway ``redis-server``: no persistence, loopback only, stopped by ``stop()``.

    ``start()`` can be called again after ``stop()`` (same port), to test a Redis that returns.
    """

    def __init__(
        self, port: int | None = None, *, cluster: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: install the Debian package 'redis-server' "
                "(scripts/ensure-redis does it when run as root)"
            )
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="getbill-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._cluster = cluster
        self.bus_port = free_port() if cluster else 0
        self.extra = list(extra)  # more redis-server options, e.g. ("--replicaof", host, port)

    def start(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            raise RuntimeError("redis-server already running")
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(Path(self._dir.name) / "redis.log"),
        ]  # fmt: skip
        if self._cluster:
            command += [
                "--cluster-enabled", "yes",
                "--cluster-port", str(self.bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
            ]  # fmt: skip
        command += self.extra
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (Path(self._dir.name) / "redis.log").read_text(errors="replace")
                self._proc = None
                raise RuntimeError(f"redis-server exited at start: {log[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests keep apart by key."""
    with RedisServer() as server:
        yield server


class RedisCluster:
    """Three redis-server nodes joined by ``redis-cli --cluster create`` (no replicas)."""

    def __init__(self, nodes: int = 3) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError(
                "redis-cli not found: install the Debian package 'redis-tools' "
                "(scripts/ensure-redis does it when run as root)"
            )
        self.cli = cli
        self.nodes = [RedisServer(cluster=True) for _ in range(nodes)]
        self.url = self.nodes[0].url

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        create = [self.cli, "--cluster", "create"]
        create += [f"127.0.0.1:{node.port}" for node in self.nodes]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._state_ok(node.port) for node in self.nodes):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster was not ready within {timeout}s")

    def _state_ok(self, port: int) -> bool:
        info = subprocess.run(
            [self.cli, "-p", str(port), "cluster", "info"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return "cluster_state:ok" in info.stdout

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One 3-node cluster for the whole session; tests keep apart by key."""
    with RedisCluster() as cluster:
        yield cluster
