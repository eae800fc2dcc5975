"""Expected calibration error against a hand-written reference (Guo et al. 2017)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longtail.metrics import (
    ExpectedCalibrationError,
    expected_calibration_error,
    reliability_diagram_data,
)


def reference_ece(logits: np.ndarray, target: np.ndarray, n_bins: int) -> float:
    """The loop of Guo et al.'s reference code: bins (lo, hi], weighted |acc - conf|."""
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf = prob.max(axis=1)
    correct = (logits.argmax(axis=1) == target).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if lo == 0.0:
            in_bin |= conf == 0.0
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


@pytest.mark.parametrize("n_bins", [1, 5, 15, 100])
@pytest.mark.parametrize("seed", range(3))
def test_matches_reference(n_bins: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(500, 6, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, 6, (500,), generator=g)
    ref = reference_ece(logits.numpy(), target.numpy(), n_bins)
    assert expected_calibration_error(logits, target, n_bins=n_bins) == pytest.approx(
        ref, abs=1e-12
    )


def test_hand_example() -> None:
    # two classes; confidences 0.5 (exactly on an edge for 2 bins -> first bin) and sigmoid(2)
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([0, 0, 1, 1])
    p = 1 / (1 + math.exp(-2.0))
    # bin (0, .5]: one sample, correct (argmax ties -> class 0), conf .5 -> |1 - .5|
    # bin (.5, 1]: three samples, 2 correct, conf p -> |2/3 - p|
    expected = 0.25 * 0.5 + 0.75 * abs(2 / 3 - p)
    assert expected_calibration_error(logits, target, n_bins=2) == pytest.approx(expected)
    data = reliability_diagram_data(logits, target, n_bins=2)
    assert data["count"].tolist() == [1, 3]
    assert data["accuracy"].tolist() == pytest.approx([1.0, 2 / 3])
    assert data["confidence"].tolist() == pytest.approx([0.5, p])
    assert data["bin_lower"].tolist() == [0.0, 0.5]
    assert data["bin_upper"].tolist() == [0.5, 1.0]


def test_perfectly_confident_and_correct_is_zero() -> None:
    logits = torch.eye(4) * 1000
    assert expected_calibration_error(logits, torch.arange(4)) == pytest.approx(0.0)
    assert expected_calibration_error(logits, torch.tensor([1, 2, 3, 0])) == pytest.approx(1.0)


def test_reliability_consistent_with_ece_and_empty_bins_nan() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, generator=g)
    target = torch.randint(0, 3, (50,), generator=g)
    d = reliability_diagram_data(logits, target, n_bins=15)
    empty = d["count"] == 0
    assert empty.any()  # 3 classes: confidence >= 1/3, so the low bins are empty
    assert torch.isnan(d["accuracy"][empty]).all() and torch.isnan(d["confidence"][empty]).all()
    w = d["count"][~empty].double()
    ece = float((w * (d["accuracy"][~empty] - d["confidence"][~empty]).abs()).sum() / w.sum())
    assert ece == pytest.approx(expected_calibration_error(logits, target))


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_property_accumulated_equals_at_once(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 40))
    c = data.draw(st.integers(1, 5))
    n_bins = data.draw(st.integers(1, 20))
    seed = data.draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 4
    target = torch.randint(0, c, (n,), generator=g)
    split = data.draw(st.integers(0, n))
    m = ExpectedCalibrationError(n_bins)
    m.update(logits[:split], target[:split])
    m.update(logits[split:], target[split:])
    once = expected_calibration_error(logits, target, n_bins)
    if n == 0:
        assert math.isnan(m.compute()) and math.isnan(once)
    else:
        assert m.compute() == pytest.approx(once, abs=1e-12)
        assert 0.0 <= once <= 1.0
        assert once == pytest.approx(
            reference_ece(logits.double().numpy(), target.numpy(), n_bins), abs=1e-6
        )
    rd = m.reliability_diagram_data()
    assert int(rd["count"].sum()) == n


def test_bad_n_bins() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(torch.zeros(2, 3), torch.tensor([0, 1]), n_bins=0)


def test_bad_n_bins_class() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        ExpectedCalibrationError(n_bins=0)


def test_bad_nan_logits() -> None:
    with pytest.raises(ValueError, match="logits"):
        expected_calibration_error(torch.tensor([[math.nan, 0.0]]), torch.tensor([0]))


def test_bad_target_range() -> None:
    with pytest.raises(ValueError, match="target"):
        reliability_diagram_data(torch.zeros(2, 3), torch.tensor([0, 5]))


def test_bad_batch_mismatch() -> None:
    with pytest.raises(ValueError, match="target"):
        ExpectedCalibrationError().update(torch.zeros(2, 3), torch.tensor([0]))


def test_matches_torchmetrics_on_random_data() -> None:
    tm = pytest.importorskip("torchmetrics.functional.classification")
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(400, 5, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, 5, (400,), generator=g)
    ref = tm.multiclass_calibration_error(
        logits.softmax(1), target, num_classes=5, n_bins=15, norm="l1"
    )
    assert expected_calibration_error(logits, target) == pytest.approx(float(ref), abs=1e-6)


def test_differs_from_torchmetrics_where_its_bins_differ() -> None:
    """torchmetrics bins [lo, hi) and gives a confidence of exactly 1 a bin of its own; ours are
    Guo et al.'s (lo, hi]. A saturated softmax reaches 1.0, and the two ECEs then differ."""
    tm = pytest.importorskip("torchmetrics.functional.classification")
    # confidences 1.0 (wrong) and sigmoid(3) = 0.9526 twice (right): one bin (14/15, 1] here
    logits = torch.tensor([[50.0, 0.0], [3.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([1, 0, 0])
    p = 1 / (1 + math.exp(-3.0))
    ours = abs(2 / 3 - (1.0 + 2 * p) / 3)
    theirs = (1 / 3) * 1.0 + (2 / 3) * (1.0 - p)  # bins {1.0} and [14/15, 1)
    assert expected_calibration_error(logits, target) == pytest.approx(ours, abs=1e-12)
    assert expected_calibration_error(logits, target) == pytest.approx(
        reference_ece(logits.numpy(), target.numpy(), 15), abs=1e-12
    )
    got = tm.multiclass_calibration_error(logits.softmax(1), target, num_classes=2, norm="l1")
    assert float(got) == pytest.approx(theirs, abs=1e-6)
    # a confidence on an inner edge: 0.5 goes to (0, 0.5] here, to [0.5, 1) there
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([1, 0])
    q = 1 / (1 + math.exp(-2.0))
    assert expected_calibration_error(logits, target, n_bins=2) == pytest.approx(
        0.5 * 0.5 + 0.5 * (1 - q)
    )
    got = tm.multiclass_calibration_error(
        logits.softmax(1), target, num_classes=2, n_bins=2, norm="l1"
    )
    assert float(got) == pytest.approx(abs(0.5 - (0.5 + q) / 2), abs=1e-6)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_bad_infinite_logits(value: float) -> None:
    # softmax of a row holding +inf is NaN: the ECE would silently become NaN
    logits = torch.tensor([[value, 0.0], [1.0, 0.0]])
    target = torch.tensor([0, 0])
    with pytest.raises(ValueError, match="logits contains inf"):
        expected_calibration_error(logits, target)
    with pytest.raises(ValueError, match="logits contains inf"):
        ExpectedCalibrationError().update(logits, target)
    with pytest.raises(ValueError, match="logits contains inf"):
        reliability_diagram_data(logits, target)
