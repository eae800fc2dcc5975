"""Metrics for long-tailed, multi-label, open-set and retrieval evaluation.

Every metric exists as a function of whole tensors and as an accumulating class (``update`` per batch,
``compute``, ``reset``). The classes are ``torchmetrics.Metric`` subclasses (:class:`Metric`): their
states follow ``.to(device)``, are summed (counts) or gathered (per-sample scores) across processes by
torchmetrics when ``torch.distributed`` is initialised, and the classes join a
``torchmetrics.MetricCollection``. torchmetrics computes the confusion matrix, the areas under the
ROC and precision-recall curves and the multi-label average precision; the rest (many / medium /
few-shot, balanced accuracy with scikit-learn's convention, ECE with Guo et al.'s bins, OSCR, the
ML-GCN precision / recall / F1, Recall@K) is computed here. All values are fractions in [0, 1];
undefined values are NaN. See ``docs/metrics.md`` for the definitions and conventions.
"""

from __future__ import annotations

from longtail.metrics._base import Metric
from longtail.metrics.calibration import (
    ExpectedCalibrationError,
    expected_calibration_error,
    reliability_diagram_data,
)
from longtail.metrics.classification import (
    Accuracy,
    BalancedAccuracy,
    ConfusionMatrix,
    PerClassAccuracy,
    ShotAccuracy,
    SingleLabelMetrics,
    accuracy,
    balanced_accuracy,
    closed_set_accuracy,
    confusion_matrix,
    per_class_accuracy,
    shot_accuracy,
    shot_groups,
)
from longtail.metrics.multilabel import (
    MeanAveragePrecision,
    MultilabelPRF,
    average_precision,
    f1_thresholds,
    mean_average_precision,
    multilabel_prf,
    scored_labels,
)
from longtail.metrics.open_set import OpenSetMetrics, open_set_aupr, open_set_auroc, oscr
from longtail.metrics.retrieval import RecallAtK, recall_at_k

__all__ = [
    "Accuracy",
    "BalancedAccuracy",
    "ConfusionMatrix",
    "ExpectedCalibrationError",
    "MeanAveragePrecision",
    "Metric",
    "MultilabelPRF",
    "OpenSetMetrics",
    "PerClassAccuracy",
    "RecallAtK",
    "ShotAccuracy",
    "SingleLabelMetrics",
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "closed_set_accuracy",
    "confusion_matrix",
    "expected_calibration_error",
    "f1_thresholds",
    "mean_average_precision",
    "multilabel_prf",
    "open_set_aupr",
    "open_set_auroc",
    "oscr",
    "per_class_accuracy",
    "recall_at_k",
    "reliability_diagram_data",
    "scored_labels",
    "shot_accuracy",
    "shot_groups",
]
