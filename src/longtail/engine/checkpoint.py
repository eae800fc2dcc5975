"""Atomic checkpoints and result files.

A checkpoint is a dict of tensors and plain Python values only, so that
``torch.load(path, weights_only=True)`` (no arbitrary unpickling) reads it::

    {"version": 1, "epoch": int (epochs completed), "model": state_dict, "optimizer": state_dict,
     "scheduler": {"step": int}, "task": dict, "rng": {"torch": ByteTensor, "cuda": [ByteTensor]},
     "history": [ {column: float} per epoch ], "train_seconds": float, "fingerprint": str}

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the target
(:func:`os.replace` is atomic on POSIX and Windows), so a process killed at any point (even with
SIGKILL) leaves either the previous or the new file, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write_json", "load_checkpoint", "read_json", "save_checkpoint"]


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    _atomic(Path(path), lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` onto the CPU."""
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode("utf-8")
    _atomic(Path(path), lambda fh: fh.write(data))


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
