"""The optimisers of a run, built from the task's :class:`~longtail.engine.tasks.OptimizerSpec` s.

SGD (with ``train.momentum`` / ``nesterov``) or Adam; parameter groups with their own weight decay and
learning-rate scale; an after-step hook such as a MaxNorm projection. Every optimiser that follows
the schedule gets the learning rate of :class:`~longtail.engine.schedule.LRSchedule` (linear warm-up,
then step / cosine / constant) before every step. :func:`step_updates` names the optimiser of every
loss a training step returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from longtail.engine.config import Config
from longtail.engine.schedule import LRSchedule
from longtail.engine.tasks import OptimizerSpec, StepOutput, Task, Update

__all__ = ["DEFAULT_OPTIMIZER", "Optim", "build_optimizers", "step_updates", "trainable"]

#: Name of the optimiser built when the task's setup declares none.
DEFAULT_OPTIMIZER = "default"


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class Optim:
    """A built optimiser with its schedule, base learning rate and after-step hook."""

    def __init__(self, name: str, spec: OptimizerSpec, cfg: Config, steps_per_epoch: int):
        t = cfg.train
        self.name = name
        self.base_lr = float(spec.lr if spec.lr is not None else t.lr)
        wd = float(spec.weight_decay if spec.weight_decay is not None else t.weight_decay)
        groups: list[dict[str, Any]] = []
        raw = list(spec.params)
        if raw and isinstance(raw[0], Mapping):
            for g in raw:
                assert isinstance(g, Mapping)
                group = dict(g)
                group["params"] = [p for p in group["params"] if p.requires_grad]
                group.setdefault("weight_decay", wd)
                group.setdefault("lr_scale", 1.0)
                groups.append(group)
        else:
            plain = [p for p in raw if isinstance(p, torch.Tensor) and p.requires_grad]
            groups.append({"params": plain, "lr_scale": 1.0})
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError(f"optimizer {name!r}: no trainable parameters")
        self.scales = [float(g["lr_scale"]) for g in groups]
        if spec.kind == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                groups,
                lr=self.base_lr,
                momentum=t.momentum,
                weight_decay=wd,
                nesterov=t.nesterov and t.momentum > 0,
            )
        elif spec.kind == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=self.base_lr, weight_decay=wd)
        else:
            raise ValueError(f"optimizer {name!r}: kind must be 'sgd' or 'adam', got {spec.kind!r}")
        self.schedule = LRSchedule(
            self.base_lr,
            epochs=max(t.epochs, 1),
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=t.warmup_epochs if spec.schedule else 0,
            kind=t.schedule if spec.schedule else "constant",
            milestones=t.milestones,
            lr_decay=t.lr_decay,
        )
        self.after_step = spec.after_step

    def set_lr(self, step: int) -> float:
        lr = self.schedule.lr(step)
        for group, scale in zip(self.optimizer.param_groups, self.scales, strict=True):
            group["lr"] = lr * scale
        return lr


def build_optimizers(
    specs: Mapping[str, OptimizerSpec] | None,
    modules: Mapping[str, nn.Module],
    config: Config,
    steps_per_epoch: int,
) -> dict[str, Optim]:
    """The setup's optimisers (``None``: one SGD / Adam over every trainable parameter)."""
    if specs is None:
        params = [p for m in modules.values() for p in trainable(m)]
        specs = {DEFAULT_OPTIMIZER: OptimizerSpec(params=params)}
    return {k: Optim(k, s, config, steps_per_epoch) for k, s in specs.items()}


def step_updates(
    task: Task, out: Tensor | StepOutput | Sequence[Update], optims: Mapping[str, Optim]
) -> list[tuple[str, Any]]:
    """Normalise ``training_step``'s return to a list of (optimiser, step or callable)."""
    if isinstance(out, (Tensor, StepOutput)):
        if len(optims) != 1:
            raise ValueError(
                f"{type(task).__name__}.training_step returned one loss but the task has "
                f"{len(optims)} optimizers ({', '.join(optims)}); return a list of Update"
            )
        return [(next(iter(optims)), out)]
    ups: list[tuple[str, Any]] = []
    for u in out:
        if not isinstance(u, Update):
            raise TypeError(
                f"{type(task).__name__}.training_step: expected a loss, a StepOutput or "
                f"a sequence of Update, got an item of type {type(u).__name__}"
            )
        if u.optimizer not in optims:
            raise ValueError(
                f"Update: unknown optimizer {u.optimizer!r} (known: {', '.join(optims)})"
            )
        ups.append((u.optimizer, u.step))
    if not ups:
        raise ValueError(f"{type(task).__name__}.training_step returned no updates")
    return ups
