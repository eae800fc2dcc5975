"""Multi-label classification: its task and its metrics (its data: :mod:`.data`).

:class:`MultiLabelTask` trains any multi-label :class:`~longtail.engine.methods.Method` (a loss and a
sampler: ``instance`` or ``rfs``) and evaluates (see :mod:`longtail.metrics.multilabel`):

- ``mAP``: the mean AP over the *scored* labels, those with a positive in the evaluated split (a
  label without one has no AP); ``details["scored_labels"]`` lists them.
- ``CF1`` / ``OF1`` at probability 0.5; CF1's per-label precision and recall average over the
  scored labels (``macro_over="positive"``), OF1 sums over every label.
- ``tail_mAP``: the mAP of the scored labels among the third of the labels with the fewest
  training positives (:func:`tail_labels`).
- ``CF1_tuned`` / ``OF1_tuned``, only when the run evaluates on a validation split
  (``data.validation_fraction``): at per-label thresholds chosen to maximise each label's F1
  (:func:`~longtail.metrics.f1_thresholds`), a label keeping 0.5 when the rows its threshold is
  chosen on hold fewer than :data:`THRESHOLD_MIN_POSITIVES` of its positives. The test set is
  never read (a validation run does not load it into the evaluation), and the reported values are
  not scored on the rows the thresholds were chosen on: the validation rows are split in two
  halves at random (seed ``data.subset_seed + 5``), each half is scored at the thresholds chosen on
  the other, and the counts of both halves are pooled (2-fold cross-fitting; :func:`tuned_prf`).
  ``details["thresholds"]`` holds the thresholds chosen on the whole validation split, the ones
  to apply to new data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from longtail.data import InstanceBalancedSampler, RepeatFactorSampler
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Method
from longtail.engine.models import build_configured_model
from longtail.engine.prediction import PredictionRule, rule_logits
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MethodTask,
    MetricSpec,
    Setup,
)
from longtail.metrics import MeanAveragePrecision, MultilabelPRF, f1_thresholds, multilabel_prf
from longtail.tracks.multi_label.config import MultiLabelConfig
from longtail.tracks.multi_label.data import build_multilabel_data, hide_labels

__all__ = [
    "MULTILABEL_METRICS",
    "THRESHOLD_MIN_POSITIVES",
    "MultiLabelTask",
    "build_multilabel_data",
    "check_multilabel_targets",
    "hide_labels",
    "tail_labels",
    "tuned_prf",
]

MULTILABEL_METRICS = (
    MetricSpec("mAP", "mAP"),
    MetricSpec("CF1", "CF1"),
    MetricSpec("OF1", "OF1"),
    MetricSpec("tail_mAP", "Tail mAP"),
    # validation runs only: at per-label thresholds chosen on validation (cross-fitted)
    MetricSpec("CF1_tuned", "CF1 tuned", optional=True),
    MetricSpec("OF1_tuned", "OF1 tuned", optional=True),
)

#: The fewest positives of a label among the rows its threshold is chosen on for it to get its
#: own threshold (otherwise it keeps 0.5): with fewer, the F1-best cut sits next to one or two
#: scores and says little about other data.
THRESHOLD_MIN_POSITIVES = 3


def tail_labels(counts: list[int]) -> list[int]:
    """The ``ceil(L / 3)`` labels with the fewest training positives (ties: the lower index first)."""
    k = math.ceil(len(counts) / 3)
    return sorted(sorted(range(len(counts)), key=lambda j: (counts[j], j))[:k])


def check_multilabel_targets(targets: Tensor, name: str, num_labels: int) -> None:
    """``targets`` must be an (N, num_labels) matrix with entries in {0, 1, -1} (hidden).

    Checked once, when a task is built (the losses run without value checks in the loop).

    Raises:
        ValueError: naming ``name``, the shape, or the first bad entry (row, column, value).
    """
    if targets.ndim != 2 or targets.shape[1] != num_labels:
        raise ValueError(
            f"{name}: expected an (N, {num_labels}) multi-label target matrix, got shape "
            f"{tuple(targets.shape)}"
        )
    bad = ~((targets == 0) | (targets == 1) | (targets == -1))
    if bool(bad.any()):
        row, col = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(
            f"{name}: entries must be 0, 1 or -1 (hidden), got {float(targets[row, col])!r} at "
            f"row {row}, label column {col}"
        )


def _nan_to_none(values: Iterable[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


def tuned_prf(
    scores: Tensor,
    targets: Tensor,
    *,
    seed: int,
    min_positives: int = THRESHOLD_MIN_POSITIVES,
) -> tuple[dict[str, float], Tensor]:
    """CP / CR / CF1 / OP / OR / OF1 at per-label thresholds chosen on the same (validation) rows,
    without scoring a row at thresholds chosen on it, and the thresholds to keep.

    The rows are split in two halves at random (``torch.randperm`` with a generator seeded with
    ``seed``); each half is scored at the :func:`~longtail.metrics.f1_thresholds` of the other
    (``min_positives``; other labels 0.5) and the two halves' decisions are scored together
    (CP / CR over the labels with a positive). The thresholds returned are chosen on all rows.

    Args:
        scores: (N, L) logits of the validation split; targets: (N, L) in {0, 1, -1}.
    """
    n = scores.shape[0]
    prob = torch.sigmoid(scores.detach().to(torch.float64))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).to(prob.device)
    halves = (perm[: n // 2], perm[n // 2 :])
    decisions = torch.zeros_like(prob)
    for fit, scored in (halves, halves[::-1]):
        if scored.numel() == 0:
            continue
        thr = f1_thresholds(prob[fit], targets[fit], min_positives=min_positives, from_logits=False)
        decisions[scored] = (prob[scored] >= thr).to(prob.dtype)
    values = multilabel_prf(
        decisions, targets, threshold=0.5, from_logits=False, macro_over="positive"
    )
    thresholds = f1_thresholds(prob, targets, min_positives=min_positives, from_logits=False)
    return values, thresholds


class MultiLabelTask(MethodTask):
    """Multi-label classification with a :class:`~longtail.engine.methods.Method` of task
    ``multi-label``: sigmoid outputs, one per label, trained with the method's loss (hidden
    entries ignored) and sampler (``instance``: a shuffle; ``rfs``: repeat-factor sampling).
    """

    metrics: ClassVar[tuple[MetricSpec, ...]] = MULTILABEL_METRICS

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
    ):
        if method.task != "multi-label":
            raise ValueError(f"method {method.name!r} is a {method.task} method, not multi-label")
        check_multilabel_targets(data.train_y, "train_y", data.num_classes)
        check_multilabel_targets(data.test_y, "test_y", data.num_classes)
        super().__init__(method, data, config, params=params, criterion=False)
        # a label without a training positive trains as all-negative (its count is 0)
        self.criterion = method.build_criterion(
            data.class_counts,
            total_epochs=max(config.train.epochs, 1),
            params=self.params,
            allow_zero_counts=True,
        )
        section: MultiLabelConfig = config.multi_label or MultiLabelConfig()
        self._sum_labels = section.label_reduction == "sum"

    def build_model(self) -> nn.Module:
        m = self.config.model
        return build_configured_model(
            m, self.data.input_shape, self.data.num_classes, head="linear"
        )

    def setup(self) -> Setup:
        return Setup({"model": self.build_model()})

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        common: dict[str, Any] = {"seed": seed, "num_replicas": world_size, "rank": rank}
        s: Any
        if self.method.sampler == "rfs":
            t = float(self.params["rfs_threshold"]) or 1.0 / self.data.num_classes
            s = RepeatFactorSampler(self.data.train_y, threshold=t, **common)
        elif self.method.sampler == "instance":
            # a plain shuffle: one "class" holding every example
            s = InstanceBalancedSampler(
                torch.zeros(len(self.data.train_y), dtype=torch.long), **common
            )
        else:  # pragma: no cover - compose() allows only these two
            raise ValueError(f"sampler: {self.method.sampler!r} is not a multi-label sampler")
        s.set_epoch(epoch)
        shard: Tensor = s.global_indices()[rank : s.total_size : world_size]
        return shard

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> Tensor:
        logits = model(batch.x)
        loss = self.criterion(logits, batch.y, epoch)  # the mean over the known entries
        if self._sum_labels:  # sum over a row's labels, mean over rows (no read back to the host)
            loss = loss * (batch.y >= 0).sum() / batch.y.shape[0]
        return loss

    def prediction_rule(self) -> PredictionRule:
        """A set of labels: ``sigmoid(logits) >= 0.5`` per label (a bundle may tune them)."""
        return PredictionRule("labels")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        was_training = model.training
        model.eval()
        num_labels = self.data.num_classes
        # states on the model's device (the batches' device), as the backend needs for the sync
        tensors = [*model.parameters(), *model.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        ap = MeanAveragePrecision(num_labels).to(device)
        prf = MultilabelPRF(num_labels, macro_over="positive").to(device)
        rule = self.prediction_rule()
        for b in splits["test"]:
            scores = rule_logits(rule, model, b.x)
            targets = b.y.long()
            ap.update(scores, targets)
            prf.update(scores, targets)
        model.train(was_training)
        per_label = ap.per_label()
        values = prf.compute()
        tail = tail_labels(self.data.class_counts)
        tail_ap = per_label[tail]
        tail_ap = tail_ap[~torch.isnan(tail_ap)]
        known = per_label[~torch.isnan(per_label)]
        metrics = {
            "mAP": float(known.mean()) if known.numel() else math.nan,
            "CF1": float(values["CF1"]),
            "OF1": float(values["OF1"]),
            "tail_mAP": float(tail_ap.mean()) if tail_ap.numel() else math.nan,
        }
        scored = torch.nonzero(~torch.isnan(per_label)).flatten().tolist()
        details: dict[str, Any] = {
            "per_label_ap": _nan_to_none(per_label.tolist()),
            "prf": {k: float(v) for k, v in values.items()},
            "tail_labels": tail,
            "scored_labels": scored,
        }
        if self.data.evaluated_on == "validation":
            scores, targets = ap.matrices()
            tuned, thresholds = tuned_prf(scores, targets, seed=self.config.data.subset_seed + 5)
            metrics["CF1_tuned"], metrics["OF1_tuned"] = tuned["CF1"], tuned["OF1"]
            details["prf_tuned"] = {k: float(v) for k, v in tuned.items()}
            details["thresholds"] = [float(t) for t in thresholds.tolist()]
        return Evaluation(metrics=metrics, details=details)
