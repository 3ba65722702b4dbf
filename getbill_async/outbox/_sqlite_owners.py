"""Which drainers of a SQLite outbox still run: each holds a lock the kernel frees when it ends.

A drainer that claims from the file first takes an exclusive ``flock`` on a file of its own
in ``<outbox>.owners/`` (named by a hash of its owner id) and keeps it until the store is
closed. Another process asks whether an owner still runs by trying that lock: free means the
owner has ended, however it ended (SIGKILL included), and its entries can be taken back at
once; held means it runs, whatever its process id or host name say. Processes that share the
file share the kernel (SQLite's WAL needs one machine), so two containers on one host, each
in its own PID namespace, cannot mistake each other for dead.

Where the kernel does not enforce the lock (checked when it is taken: a second descriptor
must be refused it), or there are no ``flock`` locks at all, no owner is ever taken for
dead: its lease alone decides. An owner without a lock file (a release from before the
locks) is left to its lease as well.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from ..support import names_file

try:
    import fcntl
except ImportError:  # no flock here: leases alone decide
    fcntl = None  # type: ignore[assignment]

__all__ = ["OwnerLocks"]

log = logging.getLogger("getbill_async.outbox")


class OwnerLocks:
    """The owners' lock files of the outbox at ``path``."""

    __slots__ = ("folder", "enforced", "_held", "_swept", "_warned")

    def __init__(self, path: str) -> None:
        self.folder = Path(path + ".owners")
        self.enforced = fcntl is not None
        self._held: dict[str, int] = {}
        self._swept = False
        self._warned = False

    def _file(self, owner: str) -> Path:
        return self.folder / hashlib.sha256(owner.encode()).hexdigest()[:32]

    def hold(self, owner: str) -> None:
        """Take ``owner``'s lock (at once; a no-op when held already)."""
        if owner in self._held or fcntl is None:
            return
        try:
            self._take(owner)
        except OSError as exc:  # no lock file: others leave our entries to their lease
            if not self._warned:
                self._warned = True
                log.warning(
                    "outbox %s: no owner's lock (%s); a drainer that ends is known to have "
                    "ended only when its lease does",
                    self.folder,
                    exc,
                )

    def _take(self, owner: str) -> None:
        assert fcntl is not None
        self.folder.mkdir(exist_ok=True)
        path = self._file(owner)
        while owner not in self._held:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.enforced = self.enforced and not _granted_twice(path)
            except BaseException:
                os.close(fd)
                raise
            if names_file(path, fd):
                self._held[owner] = fd
            else:  # swept away between open and lock: a lock on a name no one can ask
                os.close(fd)

    def sweep(self, in_flight: set[str]) -> None:
        """Remove (once) the lock files of owners that ended with nothing in flight: those
        not among the owners ``in_flight`` whose lock is free."""
        if self._swept or fcntl is None or not self.folder.is_dir():
            return
        self._swept = True
        keep = {self._file(owner).name for owner in in_flight}
        try:
            found = list(self.folder.iterdir())
        except OSError:
            return
        for path in found:
            if path.name in keep:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                assert fcntl is not None
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
            except OSError:
                pass  # held: its owner runs
            finally:
                os.close(fd)

    def alive(self, owner: str) -> bool:
        """False only when ``owner`` took its lock and no longer holds it."""
        if not self.enforced or owner in self._held or fcntl is None:
            return True
        path = self._file(owner)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return True  # no lock to ask (or none we may open): the lease decides
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (or the lock cannot be asked): it runs, as far as we know
            return True
        finally:
            os.close(fd)  # the lock, if taken, goes with it
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return False

    @property
    def held(self) -> list[str]:
        """The owners whose locks are held here."""
        return list(self._held)

    def release(self, keep: set[str]) -> None:
        """Let go of every lock held here. The files of the owners in ``keep`` (they still
        have entries in flight) stay, free, so others see those owners have ended."""
        held, self._held = self._held, {}
        for owner, fd in held.items():
            try:
                if owner not in keep:
                    self._file(owner).unlink(missing_ok=True)
            finally:
                os.close(fd)


def _granted_twice(path: Path) -> bool:
    """Whether a second descriptor gets the lock just taken (then locks are not enforced)."""
    assert fcntl is not None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
