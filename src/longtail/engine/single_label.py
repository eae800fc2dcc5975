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
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Criterion, Method
from longtail.engine.models import build_model
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MetricSpec,
    OptimizerSpec,
    Setup,
    StepOutput,
    Task,
)

__all__ = [
    "SecondStageTask",
    "SingleLabelTask",
    "second_stage_config",
    "single_label_finish_task",
    "single_label_task",
]

SINGLE_LABEL_METRICS = (
    MetricSpec("balanced_accuracy", "Balanced acc."),
    MetricSpec("accuracy", "Accuracy"),
    MetricSpec("many", "Many"),
    MetricSpec("medium", "Medium"),
    MetricSpec("few", "Few"),
    MetricSpec("ece", "ECE", higher_is_better=False),
)


def _nan_to_none(values: Iterable[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


def prior_bias(num_classes: int) -> float:
    """``-log((1 - pi) / pi)`` with ``pi = 1 / C``: a sigmoid classifier's initial bias (Cui et al.)."""
    pi = 1.0 / num_classes
    return -math.log((1.0 - pi) / pi)


class SingleLabelTask(Task):
    """Single-label classification with a long-tail :class:`~longtail.engine.methods.Method`.

    Trains the method's first stage: the head (linear / cosine), the loss (with deferred
    re-weighting), the sampler and input mixing (mixup / remix); then the post-hoc step: logit
    adjustment of the test logits (``posthoc="logit-adjust"``) or tau-normalisation of the classifier
    rows after training (``posthoc="tau-norm"``). A sigmoid-based loss starts the classifier bias at
    the prior and excludes it from weight decay. The second stage, if any, is :class:`SecondStageTask`.
    """

    kind = "single-label"
    metrics: ClassVar[tuple[MetricSpec, ...]] = SINGLE_LABEL_METRICS

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
    ):
        self.method = method
        self.data = data
        self.config = config
        self.params = method.resolve_params(params)
        self.criterion: Criterion = method.build_criterion(
            data.class_counts, total_epochs=max(config.train.epochs, 1), params=self.params
        )
        self._counts = torch.as_tensor(data.class_counts, dtype=torch.float32)

    def build_model(self) -> nn.Module:
        m = self.config.model
        return build_model(
            m.arch,
            self.data.input_shape,
            self.data.num_classes,
            head=self.method.head,
            hidden=m.hidden,
            channels=m.channels,
            dropout=m.dropout,
            convs_per_stage=m.convs_per_stage,
        )

    def setup(self) -> Setup:
        model = self.build_model()
        wd_key = self.method.stage1_weight_decay_param
        wd = None if wd_key is None else float(self.params[wd_key])
        head = getattr(model, "head", None)
        prior = self.method.sigmoid and bool(self.params.get("prior_bias", True))
        if prior and isinstance(head, nn.Linear) and head.bias is not None:
            with torch.no_grad():
                head.bias.fill_(prior_bias(self.data.num_classes))
            others = [p for n, p in model.named_parameters() if n != "head.bias"]
            groups: list[dict[str, Any]] = [
                {"params": others},
                {"params": [head.bias], "weight_decay": 0.0},
            ]
            return Setup({"model": model}, {"default": OptimizerSpec(groups, weight_decay=wd)})
        if wd is not None:
            return Setup(
                {"model": model},
                {"default": OptimizerSpec(list(model.parameters()), weight_decay=wd)},
            )
        return Setup({"model": model})

    def training_data(self, data: DataBundle, seed: int) -> DataBundle:
        """SMOTE (``sampler="smote"``): the training set over-sampled once per seed; else ``data``."""
        if self.method.sampler != "smote":
            return data
        if data.lazy:
            raise ValueError(
                f"method {self.method.name!r}: SMOTE over-samples in-memory training tensors; "
                "lazy data (an image folder) is read batch by batch"
            )
        from longtail.data import smote_oversample

        present = [c for c in data.class_counts if c > 0]
        if min(present) < 2 < max(present):
            raise ValueError(
                f"method {self.method.name!r}: SMOTE interpolates between two examples of a class; "
                "a class has a single training example"
            )
        # fewer neighbours than asked when the smallest class is too small for them
        k = min(int(self.params["smote_k_neighbors"]), min(present) - 1)
        x, y = smote_oversample(data.train_x, data.train_y, k_neighbors=max(k, 1), seed=seed)
        counts = torch.bincount(y, minlength=data.num_classes).tolist()
        self.data = dataclasses.replace(data, train_x=x, train_y=y, class_counts=counts)
        # the loss sees the distribution it trains on (uniform after SMOTE)
        self.criterion = self.method.build_criterion(
            counts, total_epochs=max(self.config.train.epochs, 1), params=self.params
        )
        self._counts = torch.as_tensor(counts, dtype=torch.float32)
        return self.data

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        kind = self.method.sampler
        if kind == "smote":
            kind = "instance"
        elif kind == "drs":
            total = self.config.train.epochs
            start = int(float(self.params["drs_start_fraction"]) * total)
            kind = "class-balanced" if epoch >= min(start, max(total - 1, 0)) else "instance"
        return _sampler(
            kind,
            self.data.train_y,
            self.config.train.epochs,
            epoch,
            seed,
            rank,
            world_size,
        )

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        if self.method.mix is not None:
            return self._mixed_step(model, batch, epoch)
        logits = model(batch.x)
        loss = self.criterion(logits, batch.y, epoch)
        return StepOutput(loss=loss, logits=logits.detach(), targets=batch.y)

    def _mixed_step(self, model: nn.Module, batch: Batch, epoch: int) -> StepOutput:
        """Mixup / Remix: ``x = lam x_i + (1 - lam) x_j``; label weight ``lam`` (mixup) or Remix's
        minority-leaning ``lam_y``; loss ``mean_i [lam_y w_{y_i} CE(z_i, y_i) + (1 - lam_y) w_{y_j}
        CE(z_i, y_j)]`` with the epoch's DRW weights ``w`` (1 before DRW starts)."""
        x, y = batch.x, batch.y
        n = y.shape[0]
        alpha = float(self.params["mix_alpha"])
        # the global RNG is re-seeded every epoch by the trainer: reproducible and resumable
        a = torch.tensor(alpha)
        # validate_args=False: the distribution's argument checks are host reads
        lam = torch.distributions.Beta(a, a, validate_args=False).sample().to(x.device)
        perm = torch.randperm(n).to(x.device)
        x_mix = lam * x + (1 - lam) * x[perm]
        y_b = y[perm]
        logits = model(x_mix)
        z = logits.float()
        lam_y = lam.expand(n)
        if self.method.mix == "remix":
            counts = self._counts.to(z.device)
            ratio = counts[y] / counts[y_b]
            kappa, tau = float(self.params["remix_kappa"]), float(self.params["remix_tau"])
            lam_y = torch.where((ratio >= kappa) & (lam < tau), torch.zeros_like(lam_y), lam_y)
            lam_y = torch.where(
                (ratio <= 1 / kappa) & (1 - lam < tau), torch.ones_like(lam_y), lam_y
            )
        ce_a = F.cross_entropy(z, y, reduction="none")
        ce_b = F.cross_entropy(z, y_b, reduction="none")
        w = self.criterion.context(epoch, z.device).weight
        if w is not None:
            ce_a, ce_b = ce_a * w[y], ce_b * w[y_b]
        loss = (lam_y * ce_a + (1 - lam_y) * ce_b).mean()
        dominant = torch.where(lam_y >= 0.5, y, y_b)
        return StepOutput(loss=loss, logits=logits.detach(), targets=dominant)

    def predict_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Test-time logits, post-hoc adjusted when the method says so."""
        logits: Tensor = model(x).float()
        if self.method.head == "cosine" and "scale" in self.params:
            # cosine logits live in [-1, 1]; the loss's scale s makes their softmax meaningful
            # (argmax unchanged, calibration measured on the probabilities the model was trained for)
            logits = logits * self.params["scale"]
        if self.method.posthoc == "logit-adjust":
            from longtail.adjust import posthoc_logit_adjust

            adjusted: Tensor = posthoc_logit_adjust(
                logits, self.data.class_counts, tau=self.params["tau"]
            )
            return adjusted
        return logits

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        from longtail.metrics import SingleLabelMetrics

        was_training = model.training
        model.eval()
        # the metric's states live on the model's device (the batches' device), so a process with
        # an empty shard still synchronises them on the device the backend needs (NCCL: CUDA)
        tensors = [*model.parameters(), *model.buffers()]
        metric = SingleLabelMetrics(
            self.data.num_classes,
            self.data.group_counts,
            shot_mode=self.config.metrics.shot_mode,  # type: ignore[arg-type]
            n_bins=self.config.metrics.n_bins,
        ).to(tensors[0].device if tensors else "cpu")
        for b in splits["test"]:
            metric.update(self.predict_logits(model, b.x), b.y)
        values = metric.compute()
        per_class = metric.per_class()
        cm = metric.confusion()
        bins = metric.reliability_diagram_data()
        model.train(was_training)
        details = {
            "per_class": _nan_to_none(per_class.tolist()),
            "confusion": cm.tolist(),
            "reliability": {
                "confidence": _nan_to_none(bins["confidence"].tolist()),
                "accuracy": _nan_to_none(bins["accuracy"].tolist()),
                "count": [int(c) for c in bins["count"].tolist()],
            },
        }
        return Evaluation(metrics={k: float(v) for k, v in values.items()}, details=details)

    def postprocess(self, model: nn.Module) -> None:
        if self.method.posthoc != "tau-norm":
            return
        from longtail.adjust import tau_normalize

        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear):
            raise TypeError("tau-norm needs a model with a linear `head`")
        with torch.no_grad():
            head.weight.copy_(tau_normalize(head.weight, tau=self.params["tau"]))
            if head.bias is not None and self.params.get("drop_bias", True):
                head.bias.zero_()


def single_label_task(
    method: Method, data: DataBundle, config: Config, params: Mapping[str, Any] | None = None
) -> SingleLabelTask:
    """The task that trains ``method``'s first stage: :class:`SingleLabelTask`, or
    :class:`~longtail.engine.sla.SLATask` for a method with self-supervised label augmentation."""
    if method.sla is not None:
        from longtail.engine.sla import SLATask

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
    :class:`~longtail.engine.m2m.M2mTask` (``second_stage="m2m"``)."""
    if method.second_stage == "m2m":
        from longtail.engine.m2m import M2mTask

        return M2mTask(method, data, config, stage_state=stage_state, params=params)
    return SecondStageTask(method, data, config, stage_state=stage_state, params=params)


def _sampler(
    kind: str, labels: Tensor, total_epochs: int, epoch: int, seed: int, rank: int, world_size: int
) -> Tensor:
    from longtail import data as ltdata

    common: dict[str, Any] = {"seed": seed, "num_replicas": world_size, "rank": rank}
    s: Any
    if kind == "instance":
        s = ltdata.InstanceBalancedSampler(labels, **common)
    elif kind == "class-balanced":
        s = ltdata.ClassBalancedSampler(labels, **common)
    elif kind == "sqrt":
        s = ltdata.SquareRootSampler(labels, **common)
    elif kind == "progressive":
        s = ltdata.ProgressivelyBalancedSampler(labels, total_epochs=total_epochs, **common)
    else:  # pragma: no cover - guarded by the Method type
        raise ValueError(f"sampler: unknown kind {kind!r}")
    s.set_epoch(epoch)
    # the samplers' documented sharding: rank r keeps global_indices()[r::num_replicas]
    shard: Tensor = s.global_indices()[rank : s.total_size : world_size]
    return shard


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
            from longtail.heads import LearnableWeightScaling

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

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        kind = "class-balanced" if self.method.second_stage in ("crt", "lws") else "instance"
        return _sampler(
            kind, self.data.train_y, self.config.train.epochs, epoch, seed, rank, world_size
        )

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        from longtail.losses import class_balanced_loss, value_checks

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
