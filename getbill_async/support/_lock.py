"""One process at a time on a file: an exclusive ``flock`` on ``<file>.lock``, held for a run.

Two runs that write the same output (an export's ``--out``, a log's results file) interleave
their writes and delete each other's temporary files. The first run takes the lock; a second
one is refused at once with ``FileInUseError`` ("in use by another process"), before it has
touched anything.

The kernel releases a ``flock`` when its holder's descriptor closes, however the process ends
(an exception, SIGKILL, a crash): a lock file left on disk by a dead run locks nothing. The
holder removes the lock file when it lets go; a run that opened the same name just before
that removal finds its lock on an unlinked file, and opens the name again (the inode check in
``acquire``), so two runs can never both think they hold it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..errors import FileInUseError

__all__ = ["FileLock", "names_file"]


class FileLock:
    """An exclusive lock on ``path`` (by way of ``path.lock`` beside it), for one run.

        with FileLock(out, what="export"):
            ...  # no other process holds out's lock meanwhile

    Args:
        path: the file to protect.
        what: what holds it, for the error (``export``, ``log``).
    """

    __slots__ = ("path", "lock_path", "what", "_fd")

    def __init__(self, path: str | os.PathLike[str], *, what: str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            FileInUseError: another process holds it.
            OSError: the lock file cannot be created (a missing folder, no permission).
        """
        while self._fd is None:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FileInUseError(
                    f"{self.path} is in use by another process (a {self.what} holds "
                    f"{self.lock_path.name}); wait for it to end, or choose another file"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if names_file(self.lock_path, fd):
                self._fd = fd
            else:  # the holder removed the name after we opened it: open it again
                os.close(fd)

    def release(self) -> None:
        """Let go of the lock (removing the lock file first); a no-op if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def names_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, not replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
