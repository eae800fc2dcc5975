"""Single-label classification: the task of every registry method, and the second stage of two-stage ones.

:class:`SingleLabelTask` trains a :class:`~longtail.engine.methods.Method`'s first stage (its loss with
deferred re-weighting, sampler, head and input mixing) and applies its post-hoc step;
:class:`SecondStageTask` starts from the weights of a finished first stage and trains what the method's
``second_stage`` says on the frozen features (cRT, LWS, weight balancing), or nothing (a post-hoc step
only: ``train.epochs`` 0). Both evaluate with :class:`longtail.metrics.SingleLabelMetrics` (balanced
accuracy, accuracy, many / medium / few, ECE), grouping classes by ``data.group_counts``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.engine.classifier import CLASSIFIER_METRICS, ClassifierTask, class_sampler
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Method
from longtail.engine.tasks import Batch, OptimizerSpec, Setup, StepOutput
from longtail.heads import LearnableWeightScaling
from longtail.losses import class_balanced_loss, value_checks
from longtail.tracks.single_label.m2m import M2mTask
from longtail.tracks.single_label.sla import SLATask

__all__ = [
    "SINGLE_LABEL_METRICS",
    "SecondStageTask",
    "SingleLabelTask",
    "second_stage_config",
    "single_label_finish_task",
    "single_label_task",
]

#: The single-label task is the core's classifier task (its metrics likewise).
SingleLabelTask = ClassifierTask
SINGLE_LABEL_METRICS = CLASSIFIER_METRICS


def single_label_task(
    method: Method, data: DataBundle, config: Config, params: Mapping[str, Any] | None = None
) -> SingleLabelTask:
    """The task that trains ``method``'s first stage: :class:`SingleLabelTask`, or
    :class:`~longtail.tracks.single_label.sla.SLATask` for a method with self-supervised label augmentation."""
    if method.sla is not None:
        return SLATask(method, data, config, params=params)
    return SingleLabelTask(method, data, config, params=params)


def single_label_finish_task(
    method: Method,
    data: DataBundle,
    config: Config,
    stage_state: Mapping[str, Tensor],
    params: Mapping[str, Any] | None = None,
) -> SingleLabelTask:
    """The task of ``method``'s second stage or post-hoc step: :class:`SecondStageTask`, or
    :class:`~longtail.tracks.single_label.m2m.M2mTask` (``second_stage="m2m"``)."""
    if method.second_stage == "m2m":
        return M2mTask(method, data, config, stage_state=stage_state, params=params)
    return SecondStageTask(method, data, config, stage_state=stage_state, params=params)


def second_stage_config(config: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """The training section of a method's second stage (``epochs`` 0 for a post-hoc step only).

    ``ceil(stage2_epoch_fraction * train.epochs)`` epochs, cosine from ``stage2_lr_factor * train.lr``
    without warm-up; the rest of ``train`` (batch size, augmentation, precision) as in the first
    stage. The epoch length is the second stage's sampler's.
    """
    t = config.train
    if method.second_stage == "m2m":  # f is trained from scratch: the full schedule
        return config
    if method.second_stage is None:
        train = dataclasses.replace(t, epochs=0, warmup_epochs=0)
    else:
        train = dataclasses.replace(
            t,
            epochs=max(1, math.ceil(float(params["stage2_epoch_fraction"]) * t.epochs - 1e-9)),
            lr=float(params["stage2_lr_factor"]) * t.lr,
            warmup_epochs=0,
            schedule="cosine",
            milestones=[],
        )
    return dataclasses.replace(config, train=train)


class SecondStageTask(SingleLabelTask):
    """A method's second stage on the weights of its first (see the module docstring).

    - ``crt`` (Kang et al. 2020): backbone and its BatchNorm statistics frozen, the linear classifier
      re-initialised and trained with cross-entropy and class-balanced sampling;
    - ``lws`` (Kang et al. 2020): backbone and classifier frozen, one scale per class
      (:class:`longtail.heads.LearnableWeightScaling`, initialised to 1) trained likewise;
    - ``wb`` (Alshammari et al. 2022): backbone frozen, the classifier (not re-initialised) trained
      with the class-balanced softmax cross-entropy (``cb_beta``), weight decay
      ``stage2_weight_decay`` and, after every step (the paper's PGD; the official code projects once
      per epoch), each class vector projected onto the ball of radius
      ``min + maxnorm * (max - min)`` of the stage-1 norms (the official code's relative threshold);
      instance-balanced sampling.

    BatchNorm statistics stay frozen in every second stage (the backbone is in evaluation mode),
    as METHODS.md and the issue ask; the official decoupling and weight-balancing code leave the
    backbone in training mode, so its running statistics drift on the re-balanced batches.
    - no second stage: nothing is trained (``train.epochs`` 0); the post-hoc step and evaluation run.

    Args:
        stage_state: the first stage's final ``model`` weights.
        config: the second stage's configuration (see :func:`second_stage_config`).
    """

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        stage_state: Mapping[str, Tensor],
        params: Mapping[str, Any] | None = None,
    ):
        super().__init__(method, data, config, params=params)
        self.stage_state = dict(stage_state)

    def setup(self) -> Setup:
        model = self.build_model()
        model.load_state_dict(self.stage_state)
        kind = self.method.second_stage
        if kind is None:
            return Setup({"model": model})
        backbone = model.backbone
        head = model.head
        assert isinstance(backbone, nn.Module) and isinstance(head, nn.Linear)
        backbone.requires_grad_(False)
        frozen_parts: list[nn.Module] = [backbone]
        spec: OptimizerSpec
        if kind == "crt":
            head.reset_parameters()  # seeded: the trainer calls torch.manual_seed(seed) first
            spec = OptimizerSpec(list(head.parameters()))
        elif kind == "lws":
            head.requires_grad_(False)
            scaled = LearnableWeightScaling(head)
            model.head = scaled
            spec = OptimizerSpec([scaled.scales])
        else:  # wb
            weight = head.weight
            with torch.no_grad():  # once, at set-up: the radius from the stage-1 class vectors
                norms = weight.norm(dim=1)
                lo, hi = float(norms.min()), float(norms.max())
            radius = lo + float(self.params["maxnorm"]) * (hi - lo)

            def project() -> None:
                with torch.no_grad():
                    weight.copy_(torch.renorm(weight, p=2, dim=0, maxnorm=radius))

            spec = OptimizerSpec(
                list(head.parameters()),
                weight_decay=float(self.params["stage2_weight_decay"]),
                after_step=project,
            )
        return Setup({"model": model}, {"classifier": spec}, eval_modules=frozen_parts)

    def inference_model(self) -> nn.Module:
        """The classifier; LWS's head wrapped in its per-class scales."""
        model = self.build_model()
        if self.method.second_stage == "lws":
            head = model.head
            assert isinstance(head, nn.Linear)
            model.head = LearnableWeightScaling(head)
        return model

    def schedule(self) -> dict[str, int]:
        """Nothing: the first stage's schedule is in its own record (this stage defers nothing)."""
        return {}

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        kind = "class-balanced" if self.method.second_stage in ("crt", "lws") else "instance"
        return class_sampler(
            kind, self.data.train_y, self.config.train.epochs, epoch, seed, rank, world_size
        )

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        logits = model(batch.x)
        z = logits.float()
        if self.method.second_stage == "wb":
            with value_checks(False):
                loss = class_balanced_loss(
                    z,
                    batch.y,
                    class_counts=self._counts.to(z.device),
                    beta=float(self.params["cb_beta"]),
                    loss_type="softmax",
                )
        else:
            loss = F.cross_entropy(z, batch.y)
        return StepOutput(loss=loss, logits=logits.detach(), targets=batch.y)
