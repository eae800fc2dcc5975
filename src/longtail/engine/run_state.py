"""A training run's files: its checkpoints (at epoch ends), ``log.csv``, resuming, TensorBoard.

The state after epoch ``e`` is fully described by the modules, the optimisers (momentum buffers),
the task's ``state_dict`` and ``e`` (see :mod:`longtail.engine.trainer` for why no RNG state is
needed): a checkpoint with those (layout in :mod:`longtail.engine.checkpoint`), serialised at the end
of an epoch (at most every ``$LONGTAIL_CHECKPOINT_SECONDS``, 2 s by default, and after the last
epoch; see :func:`longtail.engine.trainer.checkpoint_interval`) and written atomically (with ``fsync``) by a background thread while the next epoch
runs, lets a resumed run continue to bit-identical weights on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from longtail.engine import distributed as D
from longtail.engine.checkpoint import (
    REQUIRED_KEYS,
    BackgroundWriter,
    load_checkpoint,
    serialize_checkpoint,
)
from longtail.engine.config import Config, config_to_dict
from longtail.engine.optimizers import Optim
from longtail.engine.tasks import Task

__all__ = [
    "CHECKPOINT_VERSION",
    "fingerprint_of",
    "log_csv",
    "open_tensorboard",
    "restore_checkpoint",
    "snapshot_checkpoint",
    "unwrap",
]

CHECKPOINT_VERSION = 2


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (``model`` itself otherwise)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(model, nn.parallel.DistributedDataParallel) and inner else model


def fingerprint_of(config: Config, label: str, seed: int) -> str:
    """Hash of everything that determines a run except the lists of methods and seeds."""
    d = config_to_dict(config)
    d.pop("methods", None)
    d.pop("seeds", None)
    d.pop("name", None)
    d["train"].pop("eval_every", None)
    d["train"].pop("num_threads", None)
    d["data"].pop("num_workers", None)  # decoding workers do not change what is trained
    d["method_params"] = d["method_params"].get(label, {})
    blob = json.dumps({"config": d, "label": label, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def log_csv(history: list[dict[str, float]]) -> str:
    """The CSV text of ``log.csv`` (one row per epoch)."""
    columns: list[str] = []
    for row in history:
        for k in row:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        out = []
        for c in columns:
            v = row.get(c, math.nan)
            out.append("" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}")
        writer.writerow(out)
    return buf.getvalue()


def snapshot_checkpoint(
    writer: BackgroundWriter,
    run_dir: Path | None,
    fingerprint: str,
    task: Task,
    modules: Mapping[str, nn.Module],
    optims: Mapping[str, Optim],
    epoch: int,
    step: int,
    history: list[dict[str, float]],
    seconds: float,
    scaler_state: dict[str, Any] | None,
) -> None:
    """Snapshot the checkpoint and ``log.csv`` now; ``writer`` writes them in the background."""
    path = None if run_dir is None else run_dir / "checkpoint.pt"
    if path is None or run_dir is None or not D.is_main_process():
        return

    def cpu(m: nn.Module) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in unwrap(m).state_dict().items()}

    state = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "epoch": epoch,
        "model": cpu(modules["model"]),
        "modules": {k: cpu(m) for k, m in modules.items() if k != "model"},
        "optimizers": {k: o.optimizer.state_dict() for k, o in optims.items()},
        "scheduler": {"step": step},
        "scaler": scaler_state or {},
        "task": task.state_dict(),
        "history": history,
        "train_seconds": seconds,
    }
    files = [
        (path, serialize_checkpoint(state)),
        (run_dir / "log.csv", log_csv(history).encode("utf-8")),
    ]
    writer.submit(files)


def restore_checkpoint(
    ckpt: Path,
    fingerprint: str,
    task: Task,
    modules: Mapping[str, nn.Module],
    optims: Mapping[str, Optim],
    scaler: Any,
) -> tuple[int, list[dict[str, float]], float]:
    """Load ``ckpt`` into the modules, optimisers, scaler and task; return (epoch, history, seconds).

    Raises:
        ValueError: ``ckpt`` was written by a run with another fingerprint.
    """
    state = load_checkpoint(ckpt, required=REQUIRED_KEYS)
    if state.get("fingerprint") != fingerprint:
        raise ValueError(
            f"resume: {ckpt} was written by a different configuration, method or seed; "
            "use another output folder or delete it"
        )
    modules["model"].load_state_dict(state["model"])
    for name, sd in state.get("modules", {}).items():
        modules[name].load_state_dict(sd)
    for name, sd in state["optimizers"].items():
        optims[name].optimizer.load_state_dict(sd)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    task.load_state_dict(state.get("task", {}))
    return int(state["epoch"]), list(state["history"]), float(state["train_seconds"])


def open_tensorboard(run_dir: Path | None, purge_step: int | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``run_dir/tb`` (rank 0; ``None`` without tensorboard);
    ``purge_step``: drop the events from that step on (a resumed run logs them again)."""
    if run_dir is None or not D.is_main_process():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency: tensorboard
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)
