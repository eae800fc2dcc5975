"""One case per metric class of ``longtail.metrics``: how to build it, random data with ties and
missing classes, its functional form and an independent reference (scikit-learn where it has the
metric). Shared by tests/test_metrics_classes.py and the two-process test (whose spawned workers
import this module too)."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.neighbors import NearestNeighbors
from torch import Tensor

from longtail.metrics import (
    Accuracy,
    BalancedAccuracy,
    ConfusionMatrix,
    ExpectedCalibrationError,
    MeanAveragePrecision,
    Metric,
    MultilabelPRF,
    OpenSetMetrics,
    PerClassAccuracy,
    RecallAtK,
    ShotAccuracy,
    SingleLabelMetrics,
    accuracy,
    average_precision,
    balanced_accuracy,
    closed_set_accuracy,
    confusion_matrix,
    expected_calibration_error,
    mean_average_precision,
    multilabel_prf,
    open_set_aupr,
    open_set_auroc,
    oscr,
    per_class_accuracy,
    recall_at_k,
    reliability_diagram_data,
    shot_accuracy,
    shot_groups,
)

C, L, D = 6, 5, 3
N = 97
N_BINS = 10
KS = (1, 2, 4)
# thresholds: many = classes 0, 1; medium = 2, 3; few = 4, 5
COUNTS = [400, 150, 90, 40, 15, 3]

Inputs = tuple[Tensor, ...]


@dataclass(frozen=True)
class Case:
    """A metric class with its data, functional form and reference.

    ``data(seed)`` gives the ``update`` arguments for the whole data set (aligned along dim 0, so a
    batch is a row slice); ``functional`` and ``reference`` map them to the value ``compute()`` must
    return; ``extras`` are the other accessors (name -> (method, functional form)).
    """

    name: str
    make: Callable[[], Metric]
    data: Callable[[int], Inputs]
    functional: Callable[[Inputs], Any]
    reference: Callable[[Inputs], Any]
    tol: float = 1e-12
    extras: dict[str, tuple[Callable[[Any], Any], Callable[[Inputs], Any]]] = field(
        default_factory=dict
    )
    per_sample: bool = False  # cat states (per-sample), rather than sum states only


# ------------------------------------------------------------------------------------------- data
def single_label_data(seed: int) -> Inputs:
    """Integer-valued logits (ties in the arg-max and the confidence); classes 2 and 5 never occur in
    the target, and class 5 is predicted now and then (absent from the target but predicted)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 3, (N, C), generator=g).double()
    target = torch.tensor([0, 1, 3, 4])[torch.randint(0, 4, (N,), generator=g)]
    return logits, target


def multilabel_data(seed: int) -> Inputs:
    """Integer scores in [-2, 2] (ties), 15 % unknown targets (-1), label 0 without a positive."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(-2, 3, (N, L), generator=g).double()
    targets = (torch.rand(N, L, generator=g) < 0.4).long()
    targets[:, 0] = 0
    targets[torch.rand(N, L, generator=g) < 0.15] = -1
    return scores, targets


def open_set_data(seed: int) -> Inputs:
    """Integer logits (ties), about 30 % unknown samples (target -1), class 2 never a known target."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 4, (N, C), generator=g).double()
    target = torch.tensor([0, 1, 3, 4, 5])[torch.randint(0, 5, (N,), generator=g)]
    logits[torch.arange(N), target] += 1.0
    target[torch.rand(N, generator=g) < 0.3] = -1
    return logits, target


def retrieval_data(seed: int) -> Inputs:
    """Continuous embeddings (no distance ties, so the nearest neighbours are unique); labels in
    {0, ..., 5} (many shared labels) plus one label that occurs once (its query always misses)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(N, D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 6, (N,), generator=g)
    labels[7] = 99
    return emb, labels


# ---------------------------------------------------------------------------- references (numpy)
def _pred(logits: Tensor) -> np.ndarray:
    return np.argmax(logits.numpy(), axis=1)  # first maximal index, like torch.argmax


def sk_recall(d: Inputs) -> np.ndarray:
    """Per-class recall, NaN for classes absent from the target."""
    return np.asarray(
        recall_score(
            d[1].numpy(), _pred(d[0]), labels=np.arange(C), average=None, zero_division=np.nan
        ),
        dtype=float,
    )


def sk_balanced_accuracy(d: Inputs) -> float:
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": class 5
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(d[1].numpy(), _pred(d[0])))


def group_means(recall: np.ndarray, counts: list[int], mode: str) -> dict[str, float]:
    groups = shot_groups(counts, mode=mode)  # type: ignore[arg-type]
    out = {}
    for key in ("many", "medium", "few"):
        vals = recall[groups[key].numpy()]
        vals = vals[~np.isnan(vals)]
        out[key] = float(vals.mean()) if len(vals) else math.nan
    return out


def reference_ece(d: Inputs, n_bins: int = N_BINS) -> float:
    """Guo et al.'s loop: bins (lo, hi], weighted |accuracy - confidence| (scikit-learn has no ECE)."""
    logits, target = d[0].numpy(), d[1].numpy()
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf = prob.max(axis=1)
    correct = (logits.argmax(axis=1) == target).astype(float)
    ece = 0.0
    for lo, hi in itertools.pairwise(np.linspace(0.0, 1.0, n_bins + 1)):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece) if len(target) else math.nan


def sk_per_label_ap(d: Inputs) -> np.ndarray:
    scores, targets = d[0].numpy(), d[1].numpy()
    out = []
    for j in range(scores.shape[1]):
        known = targets[:, j] >= 0
        y = targets[known, j]
        out.append(average_precision_score(y, scores[known, j]) if y.sum() else math.nan)
    return np.asarray(out, dtype=float)


def sk_map(d: Inputs) -> float:
    ap = sk_per_label_ap(d)
    return float(np.nanmean(ap)) if not np.isnan(ap).all() else math.nan


def sk_prf(d: Inputs, threshold: float = 0.5) -> dict[str, float]:
    scores, targets = d
    pred = (torch.sigmoid(scores) >= threshold).long()
    ps, rs, tp, npred, npos = [], [], 0, 0, 0
    for j in range(scores.shape[1]):
        known = targets[:, j] >= 0
        y, p = targets[known, j].numpy(), pred[known, j].numpy()
        ps.append(precision_score(y, p, zero_division=0.0))
        rs.append(recall_score(y, p, zero_division=0.0))
        tp += int(((y == 1) & (p == 1)).sum())
        npred += int(p.sum())
        npos += int(y.sum())
    cp, cr = float(np.mean(ps)), float(np.mean(rs))
    op = tp / npred if npred else 0.0
    o_r = tp / npos if npos else 0.0
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0  # noqa: E731
    return {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": o_r, "OF1": f1(op, o_r)}


def reference_oscr(kl: np.ndarray, kt: np.ndarray, ul: np.ndarray) -> float:
    """Threshold sweep on the maximum logit, trapezoids between consecutive distinct thresholds."""
    if len(kl) == 0 or len(ul) == 0:
        return math.nan
    sk, su = kl.max(1), ul.max(1)
    correct = kl.argmax(1) == kt
    fpr, ccr = [0.0], [0.0]
    for theta in np.unique(np.concatenate([sk, su]))[::-1]:
        ccr.append(float(np.sum(correct & (sk >= theta))) / len(sk))
        fpr.append(float(np.sum(su >= theta)) / len(su))
    return float(np.trapezoid(ccr, fpr))


def _split_open(d: Inputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    logits, target = d
    unk = target < 0
    return logits[~unk], target[~unk], logits[unk], unk


def functional_open_set(d: Inputs) -> dict[str, float]:
    kl, kt, ul, unk = _split_open(d)
    unknown_scores = -d[0].max(dim=1).values
    aupr = open_set_aupr(unknown_scores, unk)
    return {
        "auroc": open_set_auroc(unknown_scores, unk),
        "aupr_in": aupr["aupr_in"],
        "aupr_out": aupr["aupr_out"],
        "oscr": oscr(kl, kt, ul),
        "closed_set_accuracy": closed_set_accuracy(kl, kt),
    }


def sk_open_set(d: Inputs) -> dict[str, float]:
    kl, kt, ul, unk = _split_open(d)
    y = unk.numpy().astype(int)
    s = -d[0].max(dim=1).values.numpy()
    return {
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(1 - y, -s)),
        "aupr_out": float(average_precision_score(y, s)),
        "oscr": reference_oscr(kl.numpy(), kt.numpy(), ul.numpy()),
        "closed_set_accuracy": float(accuracy_score(kt.numpy(), _pred(kl))),
    }


def sk_recall_at_k(d: Inputs) -> dict[int, float]:
    emb, labels = d[0].numpy(), d[1].numpy()
    # without X, kneighbors leaves each point out of its own neighbours
    nn_idx = NearestNeighbors(n_neighbors=max(KS)).fit(emb).kneighbors(return_distance=False)
    hit = labels[nn_idx] == labels[:, None]
    return {k: float(hit[:, :k].any(axis=1).mean()) for k in KS}


def single_label_functional(d: Inputs) -> dict[str, float]:
    logits, target = d
    shots = shot_accuracy(logits, target, COUNTS, mode="terciles")
    return {
        "balanced_accuracy": balanced_accuracy(logits, target),
        "accuracy": accuracy(logits, target),
        **shots,
        "ece": expected_calibration_error(logits, target, N_BINS),
    }


def single_label_reference(d: Inputs) -> dict[str, float]:
    return {
        "balanced_accuracy": sk_balanced_accuracy(d),
        "accuracy": float(accuracy_score(d[1].numpy(), _pred(d[0]))),
        **group_means(sk_recall(d), COUNTS, "terciles"),
        "ece": reference_ece(d),
    }


# ------------------------------------------------------------------------------------------ cases
CASES: list[Case] = [
    Case(
        "Accuracy",
        Accuracy,
        single_label_data,
        lambda d: accuracy(*d),
        lambda d: float(accuracy_score(d[1].numpy(), _pred(d[0]))),
    ),
    Case(
        "BalancedAccuracy",
        lambda: BalancedAccuracy(C),
        single_label_data,
        lambda d: balanced_accuracy(*d),
        sk_balanced_accuracy,
    ),
    Case(
        "ConfusionMatrix",
        lambda: ConfusionMatrix(C),
        single_label_data,
        lambda d: confusion_matrix(*d),
        lambda d: torch.from_numpy(
            sk_confusion_matrix(d[1].numpy(), _pred(d[0]), labels=np.arange(C))
        ),
    ),
    Case(
        "PerClassAccuracy",
        lambda: PerClassAccuracy(C),
        single_label_data,
        lambda d: per_class_accuracy(*d),
        lambda d: torch.from_numpy(sk_recall(d)),
    ),
    Case(
        "ShotAccuracy",
        lambda: ShotAccuracy(COUNTS),
        single_label_data,
        lambda d: shot_accuracy(*d, COUNTS),
        lambda d: group_means(sk_recall(d), COUNTS, "thresholds"),
    ),
    Case(
        "SingleLabelMetrics",
        lambda: SingleLabelMetrics(C, COUNTS, shot_mode="terciles", n_bins=N_BINS),
        single_label_data,
        single_label_functional,
        single_label_reference,
        extras={
            "per_class": (lambda m: m.per_class(), lambda d: per_class_accuracy(*d)),
            "confusion": (lambda m: m.confusion(), lambda d: confusion_matrix(*d)),
            "reliability": (
                lambda m: m.reliability_diagram_data(),
                lambda d: reliability_diagram_data(*d, n_bins=N_BINS),
            ),
        },
    ),
    Case(
        "ExpectedCalibrationError",
        lambda: ExpectedCalibrationError(N_BINS),
        single_label_data,
        lambda d: expected_calibration_error(*d, N_BINS),
        reference_ece,
        extras={
            "reliability": (
                lambda m: m.reliability_diagram_data(),
                lambda d: reliability_diagram_data(*d, n_bins=N_BINS),
            )
        },
    ),
    Case(
        "MeanAveragePrecision",
        MeanAveragePrecision,  # the number of labels is taken from the first batch
        multilabel_data,
        lambda d: mean_average_precision(*d),
        sk_map,
        tol=1e-6,  # torchmetrics counts in float32
        extras={"per_label": (lambda m: m.per_label(), lambda d: average_precision(*d))},
        per_sample=True,
    ),
    Case(
        "MultilabelPRF",
        lambda: MultilabelPRF(L),
        multilabel_data,
        lambda d: multilabel_prf(*d),
        sk_prf,
    ),
    Case(
        "OpenSetMetrics",
        lambda: OpenSetMetrics(C),
        open_set_data,
        functional_open_set,
        sk_open_set,
        tol=1e-6,  # torchmetrics counts in float32
        per_sample=True,
    ),
    Case(
        "RecallAtK",
        lambda: RecallAtK(KS),
        retrieval_data,
        lambda d: recall_at_k(*d, KS),
        sk_recall_at_k,
        per_sample=True,
    ),
]
CASE_IDS = [c.name for c in CASES]
BY_NAME = {c.name: c for c in CASES}


# ------------------------------------------------------------------------------------ comparison
def assert_same(got: Any, want: Any, tol: float, key: str = "") -> None:
    """Equal up to ``tol`` (absolute), NaN equal to NaN, the same keys and the same type of value."""
    if isinstance(want, Tensor):
        assert isinstance(got, Tensor), key
        assert got.dtype == want.dtype or want.is_floating_point(), (key, got.dtype, want.dtype)
        torch.testing.assert_close(
            got.cpu().to(want.dtype),
            want.cpu(),
            equal_nan=True,
            atol=tol,
            rtol=0,
            msg=lambda m: f"{key}: {m}",
        )
    elif isinstance(want, dict):
        assert isinstance(got, dict), key
        assert list(got) == list(want), (key, list(got), list(want))
        for k in want:
            assert_same(got[k], want[k], tol, f"{key}.{k}")
    else:
        assert isinstance(got, float), (key, type(got))
        if math.isnan(want):
            assert math.isnan(got), (key, got)
        else:
            assert got == pytest.approx(want, abs=tol, rel=0), key


def batches(inputs: Inputs, sizes: list[int]) -> list[Inputs]:
    """Row slices of the given sizes (which must add up to the number of rows)."""
    out, start = [], 0
    for s in sizes:
        out.append(tuple(t[start : start + s] for t in inputs))
        start += s
    assert start == len(inputs[0])
    return out


def result(metric: Metric, case: Case) -> dict[str, Any]:
    """``compute()`` and every extra accessor of ``metric``."""
    out = {"compute": metric.compute()}
    for name, (method, _) in case.extras.items():
        out[name] = method(metric)
    return out


def expected(case: Case, inputs: Inputs) -> dict[str, Any]:
    """The functional forms of what :func:`result` returns."""
    out = {"compute": case.functional(inputs)}
    for name, (_, functional) in case.extras.items():
        out[name] = functional(inputs)
    return out
