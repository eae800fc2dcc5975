"""Self-supervised label augmentation (SLA, Lee et al., ICML 2020) as a single-label task.

A method with ``sla`` set (``compose(..., sla=...)``, a recipe's ``sla:`` key) trains on the ``M``
transformed copies of every batch (:func:`longtail.sla.sla_expand`: 4 rotations, 6 RGB channel
permutations or their 24 products, ``sla_family``), with the method's own loss, sampler and head:

- ``joint`` (the method ``sla``): one head over the ``N * M`` (class, transformation) pairs, the
  method's loss on the joint labels ``y * M + j`` (a loss that needs class counts sees the joint
  counts ``n_y``, the same for each ``j``; e.g. the logit-adjusted loss then adds
  ``log(n_y / (M n))``, the class prior up to a constant). ``inference``:

  - ``si``: the identity copy's block of joint logits (one forward pass);
  - ``ag``: for every class the mean over ``j`` of the joint logit ``(i, j)`` on ``t_j(x)`` (``M``
    forward passes, :func:`longtail.sla.sla_aggregate_logits`);
  - ``sd``: a second, ``N``-way head on the same features trained with cross-entropy plus
    ``T^2 KL(softmax(aggregated / T) || softmax(head / T))``, ``T = 1``, on the identity copies
    (:func:`longtail.sla.sla_self_distillation_loss`); it predicts alone (one forward pass).

- ``mt`` (multi-task baseline): an ``N``-way class head trained with the method's loss on every copy,
  plus an ``M``-way transformation head trained with cross-entropy; predicts with the class head.
- ``da`` (data-augmentation baseline): an ``N``-way head, every copy labelled with its class.

The extra heads are extra output columns of the model's one linear (or cosine) head: columns
``[0, N*M)`` joint, ``[N*M, N*M + N)`` the self-distillation head; for ``mt`` ``[0, N)`` the class
head and ``[N, N + M)`` the transformation head. A linear layer with stacked outputs is exactly
separate linear heads on shared features, and one forward pass keeps DDP's gradient hooks simple.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.engine.classifier import ClassifierTask as SingleLabelTask
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Method
from longtail.engine.models import build_configured_model
from longtail.engine.prediction import PredictionRule, class_counts_tuple, rule_logits
from longtail.engine.tasks import Batch, StepOutput
from longtail.losses import value_checks
from longtail.sla import (
    sla_aggregate_logits,
    sla_expand,
    sla_num_transforms,
    sla_self_distillation_loss,
)

__all__ = ["SLATask"]


class SLATask(SingleLabelTask):
    """A single-label method trained with self-supervised label augmentation (module docstring)."""

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
    ):
        super().__init__(method, data, config, params=params)
        if method.sla is None:
            raise ValueError(f"method {method.name!r} has no sla component")
        self.sla_kind = method.sla
        self.family: Any = self.params["sla_family"]
        self.inference = str(self.params.get("inference", "si"))
        self.m = sla_num_transforms(self.family)
        self.n = data.num_classes
        key = f"method_params.{method.name}.sla_family"
        shape = tuple(data.input_shape)
        if not data.is_image or len(shape) != 3:
            raise ValueError(f"{key}: SLA transforms images (C, H, W); the data is {shape}")
        if self.family in ("rotation", "product") and shape[1] != shape[2]:
            raise ValueError(f"{key}: rotations need square images, got H x W {shape[1:]}")
        if self.family in ("channel_permutation", "product") and shape[0] != 3:
            raise ValueError(
                f"{key}: channel permutations need RGB images, got {shape[0]} channel(s)"
            )
        if self.sla_kind == "joint":
            joint_counts = torch.as_tensor(data.class_counts).repeat_interleave(self.m)
            self.criterion = method.build_criterion(
                joint_counts.tolist(),
                total_epochs=max(config.train.epochs, 1),
                params=self.params,
            )

    @property
    def num_outputs(self) -> int:
        """Columns of the model's head (see the module docstring)."""
        if self.sla_kind == "joint":
            return self.n * self.m + (self.n if self.inference == "sd" else 0)
        if self.sla_kind == "mt":
            return self.n + self.m
        return self.n

    def build_model(self) -> nn.Module:
        m = self.config.model
        return build_configured_model(
            m, self.data.input_shape, self.num_outputs, head=self.method.head
        )

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        n, m = self.n, self.m
        x_all, joint_y = sla_expand(batch.x, batch.y, self.family)
        out = model(x_all)
        z = out.float()
        if self.sla_kind == "joint":
            zj = z[:, : n * m]
            loss = self.criterion(zj, joint_y, epoch)
            shown = zj[::m, ::m]  # identity copies, identity block: single inference
            if self.inference == "sd":
                h = z[::m, n * m :]
                with value_checks(False):
                    loss = loss + sla_self_distillation_loss(
                        h, sla_aggregate_logits(zj, m), batch.y
                    )
        elif self.sla_kind == "mt":
            y_all = torch.div(joint_y, m, rounding_mode="floor")
            loss = self.criterion(z[:, :n], y_all, epoch) + F.cross_entropy(
                z[:, n:], torch.remainder(joint_y, m)
            )
            shown = z[::m, :n]
        else:
            y_all = torch.div(joint_y, m, rounding_mode="floor")
            loss = self.criterion(z, y_all, epoch)
            shown = z[::m]
        return StepOutput(loss=loss, logits=shown.detach(), targets=batch.y)

    def prediction_rule(self) -> PredictionRule:
        """Class logits ``(B, N)`` by the method's inference (module docstring): the aggregated
        logits of the transformed copies (``ag``), the distilled head (``sd``) or the identity
        block (``si``); a cosine head's logits times its scale."""
        cosine = self.method.head == "cosine" and "scale" in self.params
        return PredictionRule(
            "class",
            logit_scale=float(self.params["scale"]) if cosine else None,
            class_counts=class_counts_tuple(self.data.class_counts),
            sla={
                "kind": self.sla_kind,
                "family": self.family,
                "inference": self.inference,
                "num_classes": self.n,
            },
        )

    def predict_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Class logits ``(B, N)`` by :meth:`prediction_rule`."""
        return rule_logits(self.prediction_rule(), model, x)
