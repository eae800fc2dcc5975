"""Learning-rate schedules as pure functions of the optimisation step.

``lr(step) = base_lr * factor(step)`` where, with ``S`` steps per epoch, ``W = warmup_epochs * S``
and ``T = epochs * S``:

- warm-up (``step < W``): ``factor = (step + 1) / W`` (linear, as in Goyal et al. 2017 and the
  LDAM / LA CIFAR recipes, which warm up for 5 epochs);
- ``"constant"``: 1;
- ``"step"``: ``lr_decay ** (number of milestones <= epoch)`` (milestones in epochs, e.g. 160, 180
  of 200 in the LDAM recipe);
- ``"cosine"``: ``0.5 * (1 + cos(pi * (step - W) / (T - W)))`` (Loshchilov & Hutter 2017), per step.

Being a pure function of the step, the schedule needs no state of its own in a checkpoint: resuming at
epoch ``e`` recomputes the same rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["LRSchedule"]


class LRSchedule:
    """Warm-up then step / cosine / constant decay, evaluated per optimisation step."""

    def __init__(
        self,
        base_lr: float,
        *,
        epochs: int,
        steps_per_epoch: int,
        warmup_epochs: int = 0,
        kind: str = "cosine",
        milestones: Sequence[int] = (),
        lr_decay: float = 0.1,
    ):
        if kind not in ("cosine", "step", "constant"):
            raise ValueError(f"kind must be 'cosine', 'step' or 'constant', got {kind!r}")
        if epochs < 1 or steps_per_epoch < 1:
            raise ValueError(
                f"epochs and steps_per_epoch must be >= 1, got {epochs} and {steps_per_epoch}"
            )
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_steps = int(warmup_epochs) * self.steps_per_epoch
        self.kind = kind
        self.milestones = tuple(int(m) for m in milestones)
        self.lr_decay = float(lr_decay)

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rate at global step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            return self.lr_decay ** sum(1 for m in self.milestones if epoch >= m)
        total = self.epochs * self.steps_per_epoch - self.warmup_steps
        t = min(max(step - self.warmup_steps, 0), max(total, 1)) / max(total, 1)
        return 0.5 * (1.0 + math.cos(math.pi * t))

    def lr(self, step: int) -> float:
        """Learning rate at global step ``step``."""
        return self.base_lr * self.factor(step)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's ``lr`` for ``step``; returns it."""
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
