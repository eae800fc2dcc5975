"""Atomic file writes, checkpoints and result files: the one place the engine writes files.

A checkpoint is a dict of tensors and plain Python values only, so that
``torch.load(path, weights_only=True)`` (no arbitrary unpickling) reads it::

    {"version": 2, "epoch": int (epochs completed), "model": state_dict (the "model" module),
     "modules": {name: state_dict} (the task's other trained modules),
     "optimizers": {name: state_dict}, "scheduler": {"step": int}, "task": dict, "scaler": dict,
     "history": [ {column: float} per epoch ], "train_seconds": float, "fingerprint": str}

Every write (:func:`atomic_write_bytes` and the helpers built on it) goes to a temporary file in the
same folder, is flushed to disk, then renamed over the target (:func:`os.replace` is atomic on POSIX and
Windows), so a process killed at any point (even with SIGKILL) leaves either the previous or the new
file, never a torn one; the file gets the mode the user's umask gives a new file (:func:`file_mode`).
A file that is nevertheless unreadable (a copy cut short, a full disk, another program's file) makes
:func:`load_checkpoint` / :func:`read_json` raise :class:`CheckpointError`, a ``ValueError`` naming
the file, instead of a low-level unpickling or JSON error.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BackgroundWriter",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_mode",
    "load_checkpoint",
    "read_json",
    "save_checkpoint",
    "serialize_checkpoint",
]

#: Keys every checkpoint written by the trainer holds.
REQUIRED_KEYS = ("epoch", "model", "optimizers", "history", "train_seconds", "fingerprint")


class CheckpointError(ValueError):
    """A checkpoint or result file is truncated, corrupt or not one of ours (the message names it)."""


def _read_umask() -> int:
    """The process's umask, without changing it where the system says (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def _umask_at_import() -> int:
    mask = os.umask(0o022)  # os.umask only reads by setting: put it back at once
    os.umask(mask)
    return mask


#: The umask when this module was imported (used where ``/proc/self/status`` does not exist).
_UMASK_AT_IMPORT = _umask_at_import()


def file_mode() -> int:
    """The mode of a new file under the current umask (``0o666 & ~umask``, e.g. 0o644 under 022).

    :func:`tempfile.mkstemp` creates its files 0o600 whatever the umask; the writes here chmod the
    temporary file to this mode so that the files of a run are as readable as any other file the
    user creates.
    """
    return 0o666 & ~_read_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename.

    The folder is created if needed; the file gets the mode a new file has under the user's umask
    (:func:`file_mode`). On any error the temporary file is removed and ``path`` keeps its previous
    content.

    Raises:
        OSError: the write failed (e.g. a full disk); its ``filename`` is ``path``, the file being
            written, whichever call failed (a failed ``write`` names no file, ``mkstemp`` the
            temporary one); a folder that cannot be created is named itself.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # an error names the folder it could not make
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # POSIX (and Windows from Python 3.13)
                os.fchmod(fh.fileno(), file_mode())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != str(path):
            # the same OSError subclass (OSError(errno, ...) picks it), naming the target file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def serialize_checkpoint(state: dict[str, Any]) -> bytes:
    """``torch.save`` ``state`` into bytes (what :func:`save_checkpoint` writes)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    atomic_write_bytes(path, serialize_checkpoint(state))


def load_checkpoint(
    path: str | os.PathLike[str], *, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` onto the CPU.

    Args:
        path: the file.
        required: keys the loaded mapping must hold (e.g. :data:`REQUIRED_KEYS`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated, corrupt, not a ``weights_only`` checkpoint, or lacks a
            required key; the message names the file and says how to recover.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError / ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {p} is truncated or corrupt and cannot be loaded ({reason}); delete it to "
            "restart this run from the beginning"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {p} does not hold a mapping (got {type(state).__name__}); delete it to "
            "restart this run from the beginning"
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {p} lacks {', '.join(missing)}: not written by this version of longtail; "
            "delete it to restart this run from the beginning"
        )
    return state


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; an unreadable one raises :class:`CheckpointError` naming it."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{p} is truncated or corrupt ({exc}); delete it to redo the run that wrote it"
        ) from None


class BackgroundWriter:
    """Atomic file writes on one background thread that the caller never waits for, newest first.

    The trainer serialises a checkpoint in its own thread (so the bytes are a snapshot) and hands the
    slow part (write, ``fsync``, rename) to this writer, so that the next epoch starts at once.
    :meth:`submit` does not wait: while the thread is writing, the files submitted meanwhile wait
    for it, and a newer submission of the same path replaces the content still waiting (a writer
    behind the trainer skips the checkpoints a newer one supersedes; every file on disk is one whole
    submission). One thread serves every submission while there is work, and ends after
    :data:`IDLE_SECONDS` without any (starting a thread per epoch costs more than the write).
    :meth:`wait` blocks until every submitted file is on disk and re-raises a write error, which
    :meth:`submit` also re-raises once it has happened. Writes stay atomic: a process killed
    mid-write leaves the previous file.
    """

    #: Seconds the writing thread waits for more work before it ends.
    IDLE_SECONDS = 1.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[Path, bytes] = {}
        self._writing = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(self.IDLE_SECONDS)
                if not self._pending:
                    self._thread = None  # idle: the next submission starts another thread
                    return
                files = list(self._pending.items())
                self._pending.clear()
                self._writing = True
            try:
                for path, data in files:
                    atomic_write_bytes(path, data)
            except BaseException as exc:  # re-raised by wait() / submit() in the caller's thread
                with self._cond:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, files: list[tuple[Path, bytes]]) -> None:
        """Write ``files`` (path, content) atomically, in order, in the background (no waiting)."""
        with self._cond:
            self._raise_error()
            for path, data in files:
                self._pending.pop(path, None)  # the newest content of a path is written last
                self._pending[path] = data
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="longtail-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait(self) -> None:
        """Block until the submitted files are written; re-raise a write error."""
        with self._cond:
            while self._pending or self._writing:
                self._cond.wait()
            self._raise_error()
