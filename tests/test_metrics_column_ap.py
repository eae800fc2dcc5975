"""Tests of longtail.metrics._ranking.column_average_precision: every label's AP at once.

References: torchmetrics' per-label loop (``multilabel_average_precision`` on the dense ranks of the
scores, the labels with a positive: the values must be the same to the last bit) and
``sklearn.metrics.average_precision_score`` (float64; torchmetrics counts in float32).
"""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import Tensor
from torchmetrics.functional.classification import multilabel_average_precision

from data_fixtures import require
from longtail.data import load_mulan
from longtail.metrics._ranking import column_average_precision, dense_ranks


def _torchmetrics_ap(scores: Tensor, targets: Tensor) -> Tensor:
    """(L,) float64: torchmetrics' per-label AP of the labels with a positive, NaN elsewhere."""
    out = torch.full((scores.shape[1],), math.nan, dtype=torch.float64)
    labels = torch.nonzero((targets == 1).any(dim=0)).flatten()
    if labels.numel():
        ap = multilabel_average_precision(
            dense_ranks(scores[:, labels]),
            targets[:, labels],
            num_labels=labels.numel(),
            average=None,
            ignore_index=-1,
            validate_args=False,
        )
        out[labels] = ap.to(torch.float64).reshape(-1)
    return out


def _sklearn_ap(scores: Tensor, targets: Tensor) -> list[float]:
    out = []
    for j in range(scores.shape[1]):
        known = targets[:, j] >= 0
        y, s = targets[known, j].numpy(), scores[known, j].double().numpy()
        out.append(float(average_precision_score(y, s)) if (y == 1).any() else math.nan)
    return out


def _check(scores: Tensor, targets: Tensor, **kw: int) -> Tensor:
    got = column_average_precision(scores, targets, **kw)
    want = _torchmetrics_ap(scores, targets)
    assert got.dtype == torch.float64 and got.shape == (scores.shape[1],)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(got.nan_to_num(-7.0), want.nan_to_num(-7.0))  # bit for bit
    for g, s in zip(got.tolist(), _sklearn_ap(scores, targets), strict=True):
        assert (math.isnan(g) and math.isnan(s)) or abs(g - s) < 1e-6
    return got


@pytest.mark.parametrize("name", ["yeast", "scene"])
def test_real_labels_same_as_torchmetrics(name: str) -> None:
    """Scores of a least-squares linear model fitted on the training split, on the test split's
    labels: as is, rounded (ties), and with a third of the entries unknown."""
    train, test = load_mulan(require(f"multilabel/{name}"))
    x = torch.cat([train.data, torch.ones(len(train.data), 1)], 1).double()
    w = torch.linalg.lstsq(x, train.targets.double()).solution
    scores = torch.cat([test.data, torch.ones(len(test.data), 1)], 1).double() @ w
    targets = test.targets.long()
    _check(scores, targets)
    _check((scores * 4).round(), targets, chunk_entries=len(scores) * 2)  # ties; 2 labels a block
    hidden = targets.clone()
    hidden[torch.rand(targets.shape, generator=torch.Generator().manual_seed(0)) < 1 / 3] = -1
    _check(scores.float(), hidden)


@pytest.mark.parametrize("chunk", [1, 50, 1 << 18])
def test_ties_unknowns_and_blocks(chunk: int) -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 6, (60, 9), generator=g).double()  # many ties
    targets = (torch.rand(60, 9, generator=g) < 0.3).long()
    targets[torch.rand(60, 9, generator=g) < 0.25] = -1
    targets[:, 2] = 0  # no positive: NaN
    targets[:, 4] = -1  # nothing known: NaN
    targets[:, 5] = torch.where(targets[:, 5] >= 0, 1, -1)  # every known entry positive: AP 1
    scores[:, 6] = 3.0  # one threshold: AP = the share of positives among the known entries
    got = _check(scores, targets, chunk_entries=chunk)
    assert math.isnan(got[2]) and math.isnan(got[4]) and got[5] == 1.0
    col = targets[:, 6][targets[:, 6] >= 0]
    assert got[6] == pytest.approx(float((col == 1).double().mean()), abs=1e-7)


def test_hand_example_and_edges() -> None:
    # label 0: positives ranked 1st and 3rd -> (1 + 2/3) / 2; label 1: tie of a positive and a
    # negative at the top, then a positive -> 1/2 * 1/2 + 1/2 * 2/3
    scores = torch.tensor([[0.9, 0.5], [0.8, 0.5], [0.1, 0.2]])
    targets = torch.tensor([[1, 1], [0, 0], [1, 1]])
    got = _check(scores, targets)
    assert got.tolist() == pytest.approx([5 / 6, 0.25 + 1 / 3], abs=1e-7)
    assert column_average_precision(torch.zeros(0, 3), torch.zeros(0, 3)).isnan().all()
    one = column_average_precision(torch.tensor([[0.3, 0.3]]), torch.tensor([[1, 0]]))
    assert one[0] == 1.0 and math.isnan(one[1])
