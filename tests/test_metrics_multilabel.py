"""Multi-label metrics against scikit-learn (average precision, precision / recall)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_score, recall_score

from longtail.metrics import (
    MeanAveragePrecision,
    MultilabelPRF,
    average_precision,
    mean_average_precision,
    multilabel_prf,
)


def _data(
    n: int, n_labels: int, seed: int, *, ties: bool, unknown: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if ties:
        scores = torch.randint(
            -2, 3, (n, n_labels), generator=g
        ).double()  # 5 distinct values: many ties
    else:
        scores = torch.randn(n, n_labels, generator=g, dtype=torch.float64)
    targets = (torch.rand(n, n_labels, generator=g) < 0.3).long()
    if unknown:
        targets[torch.rand(n, n_labels, generator=g) < unknown] = -1
    return scores, targets


def _sk_ap(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    out = []
    for j in range(scores.shape[1]):
        known = targets[:, j] >= 0
        y = targets[known, j].numpy()
        if y.sum() == 0:
            out.append(math.nan)
        else:
            out.append(float(average_precision_score(y, scores[known, j].numpy())))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("unknown", [0.0, 0.2])
def test_ap_against_sklearn(seed: int, ties: bool, unknown: float) -> None:
    scores, targets = _data(60, 8, seed, ties=ties, unknown=unknown)
    targets[:, 0] = torch.where(targets[:, 0] == 1, 0, targets[:, 0])  # label 0: no positive
    ref = _sk_ap(scores, targets)
    got = average_precision(scores, targets).tolist()
    assert math.isnan(got[0]) and math.isnan(ref[0])
    np.testing.assert_allclose(got[1:], ref[1:], atol=1e-6)  # torchmetrics counts in float32
    assert mean_average_precision(scores, targets) == pytest.approx(float(np.nanmean(ref)))


def test_ap_hand_example_with_ties() -> None:
    # scores 3, 2, 2, 1 with labels 1, 1, 0, 1: thresholds 3 (P=1, R=1/3), 2 (P=2/3, R=2/3), 1 (P=3/4, R=1)
    scores = torch.tensor([[3.0], [2.0], [2.0], [1.0]])
    targets = torch.tensor([[1], [1], [0], [1]])
    expected = (1 / 3) * 1 + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 4)
    assert mean_average_precision(scores, targets) == pytest.approx(expected)


def test_map_no_positive_anywhere_is_nan() -> None:
    assert math.isnan(mean_average_precision(torch.randn(5, 3), torch.zeros(5, 3)))


def test_unknown_entries_ignored_equals_dropping_them() -> None:
    scores, targets = _data(40, 3, 1, ties=False, unknown=0.3)
    for j in range(3):
        known = targets[:, j] >= 0
        one = mean_average_precision(scores[known, j : j + 1], targets[known, j : j + 1])
        assert average_precision(scores, targets)[j].item() == pytest.approx(one, nan_ok=True)


def _sk_prf(scores: torch.Tensor, targets: torch.Tensor, threshold: float) -> dict[str, float]:
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
    op, o_r = tp / npred, tp / npos
    return {
        "CP": cp,
        "CR": cr,
        "CF1": 2 * cp * cr / (cp + cr),
        "OP": op,
        "OR": o_r,
        "OF1": 2 * op * o_r / (op + o_r),
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
@pytest.mark.parametrize("unknown", [0.0, 0.25])
def test_prf_against_sklearn(seed: int, threshold: float, unknown: float) -> None:
    scores, targets = _data(80, 6, seed, ties=True, unknown=unknown)
    got = multilabel_prf(scores, targets, threshold=threshold)
    ref = _sk_prf(scores, targets, threshold)
    assert got == pytest.approx(ref)
    if unknown == 0.0:  # without unknowns, sklearn's multilabel macro / micro give the same
        pred = (torch.sigmoid(scores) >= threshold).long().numpy()
        y = targets.numpy()
        assert got["CP"] == pytest.approx(
            precision_score(y, pred, average="macro", zero_division=0.0)
        )
        assert got["CR"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0.0))
        assert got["OP"] == pytest.approx(
            precision_score(y, pred, average="micro", zero_division=0.0)
        )
        assert got["OR"] == pytest.approx(recall_score(y, pred, average="micro", zero_division=0.0))


def test_prf_from_probabilities_and_threshold_inclusive() -> None:
    probs = torch.tensor([[0.5, 0.49], [0.9, 0.1]])
    targets = torch.tensor([[1, 1], [0, 0]])
    out = multilabel_prf(probs, targets, from_logits=False)
    # predictions: [[1, 0], [1, 0]] -> label 0: TP 1, FP 1; label 1: FN 1
    assert out["CP"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["CR"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["OP"] == pytest.approx(0.5)
    assert out["OR"] == pytest.approx(0.5)
    assert out["CF1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    # logits 0 is probability 0.5: predicted at threshold 0.5
    assert multilabel_prf(torch.zeros(1, 1), torch.ones(1, 1))["OR"] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_property_accumulated_equals_at_once(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 30))
    n_labels = data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 10_000))
    scores, targets = _data(n, n_labels, seed, ties=data.draw(st.booleans()), unknown=0.2)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    bounds = [0, *cuts, n]
    m_ap, m_prf = MeanAveragePrecision(n_labels), MultilabelPRF(n_labels)
    for a, b in itertools.pairwise(bounds):
        m_ap.update(scores[a:b], targets[a:b])
        m_prf.update(scores[a:b], targets[a:b])
    once = mean_average_precision(scores, targets)
    assert m_ap.compute() == pytest.approx(once, nan_ok=True)
    ref = _sk_ap(scores, targets)
    if not all(math.isnan(v) for v in ref):
        assert once == pytest.approx(float(np.nanmean(ref)))
    torch.testing.assert_close(m_ap.per_label(), average_precision(scores, targets), equal_nan=True)
    assert m_prf.compute() == pytest.approx(multilabel_prf(scores, targets))
    assert all(0.0 <= v <= 1.0 for v in m_prf.compute().values())


def test_empty_class_states() -> None:
    with pytest.warns(UserWarning, match="before the ``update`` method"):  # torchmetrics' warning
        assert math.isnan(MeanAveragePrecision().compute())
    assert MeanAveragePrecision().per_label().shape == (0,)
    assert torch.isnan(MeanAveragePrecision(3).per_label()).all()
    with pytest.warns(UserWarning, match="before the ``update`` method"):
        out = MultilabelPRF(3).compute()
    assert out == dict.fromkeys(("CP", "CR", "CF1", "OP", "OR", "OF1"), 0.0)


def test_ap_of_large_scores_is_not_tied_by_a_sigmoid() -> None:
    """torchmetrics applies a sigmoid to scores outside [0, 1]; above ~37 it is 1.0 in float64, so
    distinct logits would tie. The metrics hand torchmetrics the dense ranks instead."""
    from torchmetrics.functional.classification import multilabel_average_precision

    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(80, 3, generator=g) < 0.4).long()
    scores = 40.0 + 20.0 * torch.rand(80, 3, generator=g, dtype=torch.float64) + 15.0 * targets
    ref = _sk_ap(scores, targets)
    np.testing.assert_allclose(average_precision(scores, targets).numpy(), ref, atol=1e-6)
    raw = multilabel_average_precision(scores, targets, num_labels=3, average=None)
    assert min(ref) > 0.8 and float(raw.max()) < 0.6  # the sigmoid's ties: AP = prevalence


def test_accumulated_ap_ranks_a_batch_inside_0_1_with_the_others() -> None:
    """Scores are stored as given and ranked together in compute(); torchmetrics' accumulating
    MultilabelAveragePrecision decides per batch whether to apply the sigmoid."""
    from torchmetrics.classification import MultilabelAveragePrecision

    # label 0 as described below; label 1 (torchmetrics needs two labels) all 0.5, positive
    scores = torch.tensor([[0.5, 0.5], [0.3, 0.5], [2.0, 0.5]], dtype=torch.float64)
    targets = torch.tensor([[1, 1], [0, 1], [0, 1]])
    ours = MeanAveragePrecision(2)
    theirs = MultilabelAveragePrecision(num_labels=2, average=None)
    for part in (slice(0, 1), slice(1, 3)):  # the first batch lies in [0, 1], the second does not
        ours.update(scores[part], targets[part])
        theirs.update(scores[part], targets[part])
    # order 2.0 (negative), 0.5 (positive), 0.3 (negative): AP = 1/2
    assert ours.per_label().tolist() == pytest.approx([0.5, 1.0])
    assert average_precision_score([1, 0, 0], [0.5, 0.3, 2.0]) == pytest.approx(0.5)
    # there 0.3 became sigmoid(0.3) = 0.57 > 0.5: AP = 1/3
    assert theirs.compute().tolist() == pytest.approx([1 / 3, 1.0])


def test_bad_scores_ndim() -> None:
    with pytest.raises(ValueError, match="scores"):
        mean_average_precision(torch.zeros(4), torch.zeros(4))


def test_bad_targets_shape() -> None:
    with pytest.raises(ValueError, match="targets"):
        mean_average_precision(torch.zeros(4, 3), torch.zeros(4, 2))


def test_bad_targets_value() -> None:
    with pytest.raises(ValueError, match="targets"):
        multilabel_prf(torch.zeros(2, 2), torch.tensor([[0, 2], [1, 0]]))


def test_bad_nan_scores() -> None:
    with pytest.raises(ValueError, match="scores"):
        mean_average_precision(torch.tensor([[math.nan]]), torch.ones(1, 1))


def test_bad_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        multilabel_prf(torch.zeros(2, 2), torch.zeros(2, 2), threshold=1.5)


def test_bad_num_labels_mismatch() -> None:
    with pytest.raises(ValueError, match="num_labels"):
        MultilabelPRF(3).update(torch.zeros(2, 2), torch.zeros(2, 2))


def test_bad_width_change_without_num_labels() -> None:
    m = MeanAveragePrecision()
    m.update(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="scores has 2 columns but earlier batches had 3"):
        m.update(torch.zeros(2, 2), torch.zeros(2, 2))


def test_bad_num_labels_value() -> None:
    with pytest.raises(ValueError, match="num_labels"):
        MeanAveragePrecision(num_labels=0)
