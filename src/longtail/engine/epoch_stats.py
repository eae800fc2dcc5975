"""Per-epoch training statistics, buffered on the device and read on the host now and then.

The loop keeps the per-step losses (and the logits and targets for the running training accuracy)
as tensors and reads them on the host once every ``SYNC_EVERY`` steps and at the end of every epoch,
so a step costs no host synchronisation. A non-finite loss is found at the next read (at most
``SYNC_EVERY - 1`` steps later) and reported with the exact step where it first appeared. Under
``torchrun`` the epoch's logged scalars are averaged over processes in one ``all_reduce`` with a
fixed key order (a key logged on some ranks only counts as missing elsewhere, it cannot hang the
run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor

from longtail.engine import distributed as D
from longtail.engine.tasks import StepOutput

__all__ = ["SYNC_EVERY", "EpochAccumulator", "all_reduce_logs"]

#: Steps between two host reads of the buffered losses / logits (finite check, running accuracy).
SYNC_EVERY = 32
#: Buffered logits elements that force an earlier read (bounds the memory of the buffer).
_MAX_BUFFERED_LOGITS = 1 << 22


class _Trainer(Protocol):
    """What the accumulator needs of its :class:`~longtail.engine.trainer.Trainer`."""

    world: int

    def _non_finite(self, value: float, epoch: int, step: int, steps: int, lr: float) -> None: ...


def all_reduce_logs(local: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Mean over processes of each logged scalar, over the processes that logged it (NaN: none).

    The key sets are gathered first and the values then reduced in one ``all_reduce`` in sorted key
    order, so processes that logged different keys still issue the same collectives.
    """
    keys_per_rank: list[Any] = [None] * D.world_size()
    dist.all_gather_object(keys_per_rank, sorted(local))
    keys = sorted({k for ks in keys_per_rank for k in ks})
    dev = device if device.type == "cuda" else None
    buf = torch.zeros(2 * len(keys), dtype=torch.float64, device=dev)
    for i, k in enumerate(keys):
        v = local.get(k, math.nan)
        if not math.isnan(v):
            buf[2 * i] = v
            buf[2 * i + 1] = 1.0
    dist.all_reduce(buf)
    vals = buf.tolist()
    return {
        k: vals[2 * i] / vals[2 * i + 1] if vals[2 * i + 1] else math.nan
        for i, k in enumerate(keys)
    }


class EpochAccumulator:
    """Per-epoch training statistics, kept as tensors and read on the host every ``SYNC_EVERY`` steps.

    The values and their order of accumulation are those of a per-step read (``float(loss)`` times
    the batch size, summed in step order; exact integer hit counts), so the log does not depend on
    ``SYNC_EVERY``. ``train_loss`` is the loss of a step's last update; with several updates, each
    optimiser's loss is also logged as ``loss_<optimizer>``. The accuracy scores the last update
    that gave both logits and targets. Under DDP the buffered losses are averaged over the processes
    with one ``all_reduce`` per read, and a non-finite loss on any process stops every process.
    """

    def __init__(self, trainer: _Trainer, epoch: int, steps: int, distributed: bool):
        self.trainer = trainer
        self.epoch = epoch
        self.steps = steps
        self.distributed = distributed
        self.loss_sum = 0.0
        self.seen = 0
        self.hits = 0
        self.scored = 0
        self.extra: dict[str, float] = {}
        self._losses: list[Tensor] = []
        self._meta: list[tuple[int, int, float, list[str], dict[str, float | Tensor]]] = []
        self._hits: list[Tensor] = []
        self._scored: int = 0
        self._buffered = 0

    def add(self, step: int, done: list[tuple[str, StepOutput]], n: int, lr: float) -> None:
        names = [name for name, _ in done] if len(done) > 1 else []
        for _, so in done:
            self._losses.append(so.loss.detach())
        logs: dict[str, float | Tensor] = {}
        for _, so in done:
            logs.update(so.logs)
        self._meta.append((step, n, lr, names, logs))
        scored = [so for _, so in done if so.logits is not None and so.targets is not None]
        if scored:
            so = scored[-1]
            logits, targets = so.logits, so.targets
            assert logits is not None and targets is not None
            if (
                logits.ndim != 2
                or targets.ndim != 1
                or targets.shape[0] != logits.shape[0]
                or targets.is_floating_point()
            ):
                raise ValueError(
                    "StepOutput.targets: the running accuracy needs (N, C) logits and (N,) integer "
                    f"targets, got logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                    f"({targets.dtype}); leave targets None for outputs that are not class scores"
                )
            self._hits.append((logits.detach().argmax(dim=1) == targets).sum())
            self._scored += targets.shape[0]
            self._buffered += logits.numel()
        # under DDP the reads are collective: flush on the step count only, the same on every rank
        early = not self.distributed and self._buffered >= _MAX_BUFFERED_LOGITS
        if len(self._meta) >= SYNC_EVERY or early:
            self.flush()

    def flush(self) -> None:
        if not self._losses:
            return
        losses = torch.stack([t.float().reshape(()) for t in self._losses])
        if self.distributed:
            dist.all_reduce(losses)
            values = [v / self.trainer.world for v in losses.tolist()]
        else:
            values = losses.tolist()
        if self._hits:
            self.hits += int(torch.stack(self._hits).sum())
            self.scored += self._scored
        meta = self._meta
        self._losses, self._meta, self._hits, self._scored, self._buffered = [], [], [], 0, 0
        pos = 0
        for step, n, lr, names, logs in meta:
            k = max(len(names), 1)
            step_losses = values[pos : pos + k]
            pos += k
            for lv in step_losses:
                if not math.isfinite(lv):
                    self.trainer._non_finite(lv, self.epoch, step, self.steps, lr)
            self.loss_sum += step_losses[-1] * n
            self.seen += n
            for name, lv in zip(names, step_losses, strict=False):
                key = f"loss_{name}"
                self.extra[key] = self.extra.get(key, 0.0) + lv * n
            for key, v in logs.items():
                self.extra[key] = self.extra.get(key, 0.0) + float(v) * n
