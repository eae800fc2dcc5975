"""The classifier task: train a :class:`~longtail.engine.methods.Method`'s first stage on labelled data.

:class:`ClassifierTask` trains a method's first stage (its loss with deferred re-weighting, sampler,
head and input mixing; SMOTE's training data) and applies its post-hoc step, and evaluates with
:class:`longtail.metrics.SingleLabelMetrics` (balanced accuracy, accuracy, many / medium / few, ECE),
grouping classes by ``data.group_counts``. Tracks build on it (the single-label track's second
stages, SLA and M2m; the distillation track's teacher and students) without importing each other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail import data as ltdata
from longtail.adjust import tau_normalize
from longtail.data import smote_oversample
from longtail.engine import distributed as D
from longtail.engine.augment import augment_batch
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Method
from longtail.engine.models import build_configured_model
from longtail.engine.prediction import PredictionRule, class_counts_tuple, rule_logits
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MethodTask,
    MetricSpec,
    OptimizerSpec,
    Setup,
    StepOutput,
    nan_to_none,
)
from longtail.metrics import SingleLabelMetrics

__all__ = [
    "CLASSIFIER_METRICS",
    "ClassifierTask",
    "class_sampler",
    "drs_start_epoch",
    "prior_bias",
]

CLASSIFIER_METRICS = (
    MetricSpec("balanced_accuracy", "Balanced acc."),
    MetricSpec("accuracy", "Accuracy"),
    MetricSpec("many", "Many"),
    MetricSpec("medium", "Medium"),
    MetricSpec("few", "Few"),
    MetricSpec("ece", "ECE", higher_is_better=False),
)


def prior_bias(num_classes: int) -> float:
    """``-log((1 - pi) / pi)`` with ``pi = 1 / C``: a sigmoid classifier's initial bias (Cui et al.)."""
    pi = 1.0 / num_classes
    return -math.log((1.0 - pi) / pi)


class ClassifierTask(MethodTask):
    """Single-label classification with a long-tail :class:`~longtail.engine.methods.Method`.

    Trains the method's first stage: the head (linear / cosine), the loss (with deferred
    re-weighting), the sampler and input mixing (mixup / remix); then the post-hoc step: logit
    adjustment of the test logits (``posthoc="logit-adjust"``) or tau-normalisation of the classifier
    rows after training (``posthoc="tau-norm"``). A sigmoid-based loss starts the classifier bias at
    the prior and excludes it from weight decay. The second stage, if any, is :class:`SecondStageTask`.
    """

    metrics: ClassVar[tuple[MetricSpec, ...]] = CLASSIFIER_METRICS

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
    ):
        super().__init__(method, data, config, params=params)
        self._counts = torch.as_tensor(data.class_counts, dtype=torch.float32)
        self._metric_cache: tuple[Any, SingleLabelMetrics] | None = None

    def build_model(self) -> nn.Module:
        m = self.config.model
        return build_configured_model(
            m, self.data.input_shape, self.data.num_classes, head=self.method.head
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
        """SMOTE (``sampler="smote"``): the training set over-sampled once per seed; else ``data``.
        CMO (``mix="cmo"``) refuses data that are not images."""
        if self.method.mix == "cmo" and not data.is_image:
            raise ValueError(
                f"method {self.method.name!r} needs images ({self.method.needs_images}); the "
                f"inputs have shape {tuple(data.train_x.shape[1:])}, not (channels, height, width)"
            )
        if self.method.sampler != "smote":
            return data
        if data.lazy:
            raise ValueError(
                f"method {self.method.name!r}: SMOTE over-samples in-memory training tensors; "
                "lazy data (an image folder) is read batch by batch"
            )
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
            start = drs_start_epoch(self.params["drs_start_fraction"], self.config.train.epochs)
            kind = "class-balanced" if epoch >= start else "instance"
        return class_sampler(
            kind,
            self.data.train_y,
            self.config.train.epochs,
            epoch,
            seed,
            rank,
            world_size,
            q=float(self.params["sampler_q"]) if kind == "power" else None,
        )

    def schedule(self) -> dict[str, int]:
        """When the deferred parts of the training start, as this task applies them
        (``details["schedule"]``): ``epochs``, ``drw_start_epoch`` (deferred re-weighting) and
        ``drs_start_epoch`` (deferred re-sampling), 0-based; empty when the method defers nothing."""
        out: dict[str, int] = {}
        criterion = getattr(self, "criterion", None)
        drw = None if criterion is None else criterion.drw_start_epoch
        if drw is not None:
            out["drw_start_epoch"] = drw
        if self.method.sampler == "drs":
            total = self.config.train.epochs
            out["drs_start_epoch"] = drs_start_epoch(self.params["drs_start_fraction"], total)
        return {"epochs": self.config.train.epochs, **out} if out else {}

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        if self.method.mix == "cmo":
            return self._cmo_step(model, batch, epoch)
        if self.method.mix is not None:
            return self._mixed_step(model, batch, epoch)
        return self._plain_step(model, batch, epoch)

    def _plain_step(self, model: nn.Module, batch: Batch, epoch: int) -> StepOutput:
        logits = model(batch.x)
        loss = self.criterion(logits, batch.y, epoch)
        return StepOutput(loss=loss, logits=logits.detach(), targets=batch.y)

    def cmo_epochs(self) -> tuple[int, int]:
        """CMO's window ``[start, stop)`` of 0-based epochs: ``start = round(cmo_start_fraction E)``,
        ``stop = E - round(cmo_end_fraction E)`` (the official code pastes on epochs 4..196 of
        200: its ``start_data_aug < epoch < epochs - end_data_aug`` with 3 and 3)."""
        total = self.config.train.epochs
        start = round(float(self.params["cmo_start_fraction"]) * total)
        return start, total - round(float(self.params["cmo_end_fraction"]) * total)

    def _cmo_step(self, model: nn.Module, batch: Batch, epoch: int) -> StepOutput:
        """CMO (Park et al., CVPR 2022): with probability ``cmo_prob`` per batch (inside
        :meth:`cmo_epochs`), a box of an image drawn with weight ``n_c^(-cmo_weight_power)`` (the
        minority-weighted sampler, augmented like the batch) is pasted onto every image of the
        batch, at the same place: one ``lam ~ Beta(a, a)`` and one box per batch, the box's side
        ``floor(sqrt(1 - lam) H)``, its centre uniform, clipped at the border (official
        ``rand_bbox``); then ``lam`` is the background's exact area fraction and the loss ``mean_i
        [lam w_{y_i} CE(z_i + s, y_i) + (1 - lam) w_{y'_i} CE(z_i + s, y'_i)]`` (as
        :meth:`_mixed_step`; ``y'`` the pasted labels). A batch that is not pasted onto has an
        empty box: ``lam = 1``, the loss without mixing. Nothing is read back to the host."""
        x, y = batch.x, batch.y
        n = y.shape[0]
        start, stop = self.cmo_epochs()
        if n == 0 or not start <= epoch < stop:
            return self._plain_step(model, batch, epoch)
        # the global RNG is re-seeded every epoch by the trainer: reproducible and resumable
        pasted = torch.rand(()) < float(self.params["cmo_prob"])
        x_fg, y_fg = self._cmo_foreground(n, x.device)
        a = torch.tensor(float(self.params["mix_alpha"]))
        lam = torch.distributions.Beta(a, a, validate_args=False).sample().double()
        h, w = x.shape[-2], x.shape[-1]
        side = torch.sqrt(1.0 - lam)
        ch, cw = torch.floor(h * side).long(), torch.floor(w * side).long()
        cy, cx = torch.randint(h, ()), torch.randint(w, ())
        y0, y1 = (cy - ch // 2).clamp(0, h), (cy + ch // 2).clamp(0, h)
        x0, x1 = (cx - cw // 2).clamp(0, w), (cx + cw // 2).clamp(0, w)
        rows = torch.arange(h)
        cols = torch.arange(w)
        box = ((rows >= y0) & (rows < y1)).view(h, 1) & ((cols >= x0) & (cols < x1)).view(1, w)
        box = (box & pasted).to(x.device)
        x = torch.where(box, x_fg.to(x.dtype), x)
        lam_y = (1.0 - box.sum() / (h * w)).float().expand(n)
        logits = model(x)
        return self._mixed_loss(logits, y, y_fg, lam_y, epoch)

    def _cmo_foreground(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``n`` training images and labels drawn with replacement with weight
        ``n_c^(-cmo_weight_power)`` each, augmented as the training batches are. Every process
        draws the same ``n x world_size`` (the global RNG is seeded alike) and keeps its share."""
        data = self.data
        # the training counts (after SMOTE, its counts): n_c^(-p) per class, then per image
        per_class = (
            self._counts.double().clamp(min=1.0).pow(-float(self.params["cmo_weight_power"]))
        )
        weights = per_class[data.train_y]
        world, rank = D.world_size(), D.rank()
        idx = torch.multinomial(weights, n * world, replacement=True)[rank * n : (rank + 1) * n]
        if data.train_dataset is not None:
            x_fg = torch.stack([data.train_dataset[i][0] for i in idx.tolist()])
        else:
            x_fg = data.train_x[idx]
        cfg = self.config.train
        if cfg.augment:
            x_fg = augment_batch(x_fg, padding=cfg.crop_padding, flip=cfg.flip)
        return x_fg.to(device), data.train_y[idx].to(device)

    def _mixed_step(self, model: nn.Module, batch: Batch, epoch: int) -> StepOutput:
        """Mixup / Remix: ``x = lam x_i + (1 - lam) x_j``; label weight ``lam`` (mixup) or Remix's
        minority-leaning ``lam_y``; loss ``mean_i [lam_y w_{y_i} CE(z_i + s, y_i) + (1 - lam_y)
        w_{y_j} CE(z_i + s, y_j)]`` with the epoch's DRW weights ``w`` (1 before DRW starts) and
        the loss's logit shift ``s`` (0 for cross-entropy, ``tau log(prior)`` for logit
        adjustment, ``log(prior)`` for balanced softmax; :data:`~longtail.engine.methods.LogitShift`)."""
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
        lam_y = lam.expand(n)
        if self.method.mix == "remix":
            counts = self._counts.to(lam_y.device)
            ratio = counts[y] / counts[y_b]
            kappa, tau = float(self.params["remix_kappa"]), float(self.params["remix_tau"])
            lam_y = torch.where((ratio >= kappa) & (lam < tau), torch.zeros_like(lam_y), lam_y)
            lam_y = torch.where(
                (ratio <= 1 / kappa) & (1 - lam < tau), torch.ones_like(lam_y), lam_y
            )
        return self._mixed_loss(logits, y, y_b, lam_y, epoch)

    def _mixed_loss(
        self, logits: Tensor, y: Tensor, y_b: Tensor, lam_y: Tensor, epoch: int
    ) -> StepOutput:
        """``mean_i [lam_y w_{y_i} CE(z_i + s, y_i) + (1 - lam_y) w_{y_b,i} CE(z_i + s, y_b,i)]``
        (see :meth:`_mixed_step`); the targets of the running accuracy are the dominant labels."""
        z = logits.float()
        ctx = self.criterion.context(epoch, z.device)
        assert self.method.logit_shift is not None  # Method checks it when mix is set
        shift = self.method.logit_shift(ctx)
        zs = z if shift is None else z + shift.to(z.dtype)
        ce_a = F.cross_entropy(zs, y, reduction="none")
        ce_b = F.cross_entropy(zs, y_b, reduction="none")
        w = ctx.weight
        if w is not None:
            ce_a, ce_b = ce_a * w[y], ce_b * w[y_b]
        loss = (lam_y * ce_a + (1 - lam_y) * ce_b).mean()
        dominant = torch.where(lam_y >= 0.5, y, y_b)
        return StepOutput(loss=loss, logits=logits.detach(), targets=dominant)

    def prediction_rule(self) -> PredictionRule:
        """Argmax of the logits; a cosine head's logits times the loss's scale ``s`` (they live
        in ``[-1, 1]``; the scale makes their softmax the probabilities the model was trained
        for); post-hoc logit adjustment with the training counts when the method says so."""
        cosine = self.method.head == "cosine" and "scale" in self.params
        posthoc = self.method.posthoc == "logit-adjust"
        return PredictionRule(
            "class",
            logit_scale=float(self.params["scale"]) if cosine else None,
            posthoc_tau=float(self.params["tau"]) if posthoc else None,
            class_counts=class_counts_tuple(self.data.class_counts),
        )

    def predict_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Test-time logits by :meth:`prediction_rule` (post-hoc adjusted when the method says so)."""
        return rule_logits(self.prediction_rule(), model, x)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        was_training = model.training
        model.eval()
        # the metric's states live on the model's device (the batches' device), so a process with
        # an empty shard still synchronises them on the device the backend needs (NCCL: CUDA)
        tensors = [*model.parameters(), *model.buffers()]
        metric = self._eval_metric(tensors[0].device if tensors else torch.device("cpu"))
        for b in splits["test"]:
            metric.update(self.predict_logits(model, b.x), b.y)
        values = metric.compute()
        per_class = metric.per_class()
        cm = metric.confusion()
        bins = metric.reliability_diagram_data()
        model.train(was_training)
        details = {
            "per_class": nan_to_none(per_class.tolist()),
            "confusion": cm.tolist(),
            "reliability": {
                "confidence": nan_to_none(bins["confidence"].tolist()),
                "accuracy": nan_to_none(bins["accuracy"].tolist()),
                "count": [int(c) for c in bins["count"].tolist()],
            },
        }
        schedule = self.schedule()
        if schedule:
            details["schedule"] = schedule
        return Evaluation(metrics={k: float(v) for k, v in values.items()}, details=details)

    def _eval_metric(self, device: torch.device) -> SingleLabelMetrics:
        """The evaluation's metric object, emptied: built once per task (and device) and reset
        before every evaluation (building one costs about a millisecond; a run evaluates after
        every epoch). Rebuilt when the data's classes or group counts change."""
        key = (device, self.data.num_classes, tuple(self.data.group_counts))
        cached: tuple[Any, SingleLabelMetrics] | None = getattr(self, "_metric_cache", None)
        if cached is not None and cached[0] == key:  # (None also before __init__ set it)
            cached[1].reset()
            return cached[1]
        metric = SingleLabelMetrics(
            self.data.num_classes,
            self.data.group_counts,
            shot_mode=self.config.metrics.shot_mode,  # type: ignore[arg-type]
            n_bins=self.config.metrics.n_bins,
        ).to(device)
        self._metric_cache = (key, metric)
        return metric

    def postprocess(self, model: nn.Module) -> None:
        if self.method.posthoc != "tau-norm":
            return
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear):
            raise TypeError("tau-norm needs a model with a linear `head`")
        with torch.no_grad():
            head.weight.copy_(tau_normalize(head.weight, tau=self.params["tau"]))
            if head.bias is not None and self.params.get("drop_bias", True):
                head.bias.zero_()


def drs_start_epoch(fraction: float, total_epochs: int) -> int:
    """The first (0-based) epoch of deferred re-sampling: ``int(fraction * total_epochs)``, at most
    the last epoch (so the class-balanced epochs always come; epoch 0 for a one-epoch run)."""
    return min(int(float(fraction) * total_epochs), max(total_epochs - 1, 0))


def class_sampler(
    kind: str,
    labels: Tensor,
    total_epochs: int,
    epoch: int,
    seed: int,
    rank: int,
    world_size: int,
    *,
    q: float | None = None,
) -> Tensor:
    """This rank's indices of ``epoch`` for sampler ``kind`` (``power``: class-aware with
    exponent ``q``, which ``sqrt`` and ``class-balanced`` fix at 1/2 and 0)."""
    common: dict[str, Any] = {"seed": seed, "num_replicas": world_size, "rank": rank}
    s: Any
    if kind == "instance":
        s = ltdata.InstanceBalancedSampler(labels, **common)
    elif kind == "class-balanced":
        s = ltdata.ClassBalancedSampler(labels, **common)
    elif kind == "sqrt":
        s = ltdata.SquareRootSampler(labels, **common)
    elif kind == "power":
        if q is None:
            raise ValueError("sampler 'power' needs the exponent q")
        s = ltdata.ClassAwareSampler(labels, q=q, **common)
    elif kind == "progressive":
        s = ltdata.ProgressivelyBalancedSampler(labels, total_epochs=total_epochs, **common)
    else:  # pragma: no cover - guarded by the Method type
        raise ValueError(f"sampler: unknown kind {kind!r}")
    s.set_epoch(epoch)
    # the samplers' documented sharding: rank r keeps global_indices()[r::num_replicas]
    shard: Tensor = s.global_indices()[rank : s.total_size : world_size]
    return shard
