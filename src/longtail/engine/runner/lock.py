"""One command at a time in a run folder: an OS lock held for the command's whole life.

Rank 0 takes an exclusive, non-waiting lock on ``RUN_DIR/.longtail.lock`` (``flock`` on POSIX,
through the :mod:`filelock` library) before it writes anything into the folder, holds it until the
command ends, and writes who holds it (process id, host, start, command) to ``.longtail.lock.json``
beside it. The operating system drops the lock when the process ends, however it ends (``kill -9``
too), so a lock file left behind never blocks a later run: only a live holder does. A second
command into a locked folder stops with :class:`RunFolderInUse`, whose one-line message names the
folder and the holder's process id.

The lock file stays in the folder (empty; the info file is removed when the lock is released);
:data:`LOCK_FILES` are not results, and the checks of :mod:`~longtail.engine.runner.folders` ignore
them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import CheckpointError, atomic_write_json, file_mode, read_json

__all__ = ["LOCK_FILE", "LOCK_FILES", "LOCK_INFO", "RunFolderInUse", "RunFolderLock", "holder"]

#: The file the lock is taken on (in the run folder).
LOCK_FILE = ".longtail.lock"
#: Who holds the lock: ``{"pid", "host", "started", "command"}`` (JSON, written after locking).
LOCK_INFO = ".longtail.lock.json"
#: Files of the lock: not results, never listed as the folder's content.
LOCK_FILES = (LOCK_FILE, LOCK_INFO)

#: A file system without working locks (the run then goes on unlocked, with a note).
_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP}


class RunFolderInUse(FileExistsError):
    """Another command holds the run folder's lock (the message names the folder and its process)."""


def _alive(info: dict[str, Any]) -> bool:
    """Whether the process an info file names still runs (``True`` where that cannot be told)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != socket.gethostname() or os.name != "posix":
        return True  # another host (or Windows, where os.kill(pid, 0) would end the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read_info(out: Path) -> dict[str, Any] | None:
    try:
        info = read_json(out / LOCK_INFO)
    except (OSError, CheckpointError):
        return None
    return info if isinstance(info, dict) else None


def holder(out: Path, wait: float = 1.0) -> str:
    """Who holds ``out``'s lock, as a phrase (``process 123 on host h, started ...``).

    The holder writes its info file just after it took the lock: a missing one, or one naming a
    process that has ended (left by a killed run), is read again for up to ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    info = _read_info(out)
    while (info is None or not _alive(info)) and time.monotonic() < deadline:
        time.sleep(0.05)
        info = _read_info(out)
    if info is None or not _alive(info):
        return "another process (it has not written its process id yet)"
    started = f", started {info['started']}" if info.get("started") else ""
    return f"process {info.get('pid')} on host {info.get('host')}{started}"


def _new_lock(filelock: Any, path: Path) -> Any:
    """A non-waiting :class:`filelock.FileLock` on ``path`` whose file gets the umask's mode."""
    try:
        # filelock >= 4 would fall back to a marker file where flock does not work; such a lock
        # outlives a killed process and would block a resume: refused (ENOSYS, see acquire)
        return filelock.FileLock(str(path), timeout=0, mode=file_mode(), fallback_to_soft=False)
    except TypeError:  # filelock 3: flock, or NotImplementedError where it does not work
        return filelock.FileLock(str(path), timeout=0, mode=file_mode())


class RunFolderLock:
    """The lock of one run folder, held by this process from :meth:`acquire` to :meth:`release`.

    Attributes:
        out: the run folder (it must exist).
        note: why the folder could not be locked (the file system has no locks, filelock is not
            installed); the run then goes on without a lock. ``None``: locked, or not tried yet.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.note: str | None = None
        self._lock: Any = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def _take(self) -> Any:
        """A held :class:`filelock.FileLock` on the lock file; ``None`` where locks do not work
        (:attr:`note` says why)."""
        try:
            import filelock  # optional dependency: filelock (the cli extra; torch requires it)
        except ImportError:  # pragma: no cover
            self.note = (
                f"{self.out} is not locked (install filelock): run one command at a time in it"
            )
            return None
        lock = _new_lock(filelock, self.out / LOCK_FILE)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise RunFolderInUse(
                f"--out: {self.out} is in use by another longtail command ({holder(self.out)}); "
                "wait for it to end or choose another folder"
            ) from None
        except (NotImplementedError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in _NO_LOCKS:
                raise
            self.note = (
                f"{self.out} is not locked (its file system has no file locks): run one command at "
                "a time in it"
            )
            return None
        return lock

    def check_free(self) -> None:
        """Raise :class:`RunFolderInUse` if another process holds the lock now.

        Creates, writes and removes nothing: a folder without a lock file is free, and a lock taken
        to look is released at once. Not being able to look (a read-only folder) is not an error.
        """
        if not (self.out / LOCK_FILE).is_file():
            return
        try:
            lock = self._take()
        except RunFolderInUse:
            raise
        except OSError:  # acquire says why, if it comes to that
            return
        if lock is not None:
            lock.release()

    def acquire(self, command: str = "") -> None:
        """Take the lock without waiting and record this process as its holder.

        Raises:
            RunFolderInUse: another live process holds it (the message names it).
            OSError: the lock file or its info file cannot be written (e.g. a read-only folder).
        """
        lock = self._take()
        if lock is None:
            return
        self._lock = lock
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command,
        }
        try:
            atomic_write_json(self.out / LOCK_INFO, info)
        except BaseException:
            self.release()
            raise

    def release(self, *, discard: bool = False) -> None:
        """Remove the info file (with ``discard`` the lock file too), then release the lock.

        Removes only files this process wrote while holding the lock; does nothing if it holds none.
        """
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        try:
            for name in (LOCK_INFO, LOCK_FILE) if discard else (LOCK_INFO,):
                with contextlib.suppress(OSError):  # a cleanup must not hide the error it follows
                    (self.out / name).unlink()
        finally:
            lock.release()
