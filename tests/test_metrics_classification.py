"""Single-label metrics against scikit-learn and hand-written references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from longtail.metrics import (
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
    expected_calibration_error,
    per_class_accuracy,
    reliability_diagram_data,
    shot_accuracy,
    shot_groups,
)


def _data(
    n: int, c: int, seed: int, *, integer_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if integer_logits:  # many ties in the arg-max
        logits = torch.randint(0, 3, (n, c), generator=g).double()
    else:
        logits = torch.randn(n, c, generator=g)
    target = torch.randint(0, c, (n,), generator=g)
    return logits, target


def _pred(logits: torch.Tensor) -> np.ndarray:
    return np.argmax(logits.numpy(), axis=1)  # first maximal index, like torch.argmax


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("integer_logits", [False, True])
def test_against_sklearn(seed: int, integer_logits: bool) -> None:
    logits, target = _data(200, 7, seed, integer_logits=integer_logits)
    y, p = target.numpy(), _pred(logits)
    assert accuracy(logits, target) == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert balanced_accuracy(logits, target) == pytest.approx(
        balanced_accuracy_score(y, p), abs=1e-12
    )
    cm = confusion_matrix(logits, target)
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), sk_confusion_matrix(y, p, labels=np.arange(7)))
    recall = per_class_accuracy(logits, target).numpy()
    for c in range(7):
        assert recall[c] == pytest.approx(np.mean(p[y == c] == c), abs=1e-12)


def test_argmax_ties_pick_first_class() -> None:
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    cm = confusion_matrix(logits, torch.tensor([0, 1]))
    assert cm[0, 0] == 1 and cm[1, 1] == 1


def test_missing_classes_nan_and_sklearn() -> None:
    logits, target = _data(100, 6, 0)
    target = target % 3  # classes 3, 4, 5 absent from target (but may be predicted)
    recall = per_class_accuracy(logits, target)
    assert torch.isnan(recall[3:]).all() and not torch.isnan(recall[:3]).any()
    y, p = target.numpy(), _pred(logits)
    with pytest.warns(
        UserWarning, match="y_pred contains classes not in y_true"
    ):  # sklearn warns about predicted classes missing from y_true
        ref = balanced_accuracy_score(y, p)
    assert balanced_accuracy(logits, target) == pytest.approx(ref, abs=1e-12)


def test_balanced_accuracy_is_one_minus_balanced_error_on_perfect_and_hand_example() -> None:
    # class 0: 2/3 correct, class 1: 1/1, class 2: 0/2 -> (2/3 + 1 + 0) / 3
    logits = torch.eye(3)[[0, 0, 1, 1, 0, 1]]
    target = torch.tensor([0, 0, 0, 1, 2, 2])
    assert balanced_accuracy(logits, target) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert accuracy(logits, target) == pytest.approx(3 / 6)


def test_empty_input() -> None:
    logits, target = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    assert math.isnan(accuracy(logits, target))
    assert math.isnan(balanced_accuracy(logits, target))
    assert confusion_matrix(logits, target).sum() == 0
    assert math.isnan(expected_calibration_error(logits, target))


def test_closed_set_accuracy_is_accuracy() -> None:
    logits, target = _data(50, 4, 3)
    assert closed_set_accuracy(logits, target) == accuracy(logits, target)


# ---- many / medium / few -------------------------------------------------------------------------
def test_shot_groups_thresholds() -> None:
    counts = [500, 101, 100, 50, 20, 19, 1, 0]
    g = shot_groups(counts)
    assert g["many"].tolist() == [True, True, False, False, False, False, False, False]
    assert g["medium"].tolist() == [False, False, True, True, True, False, False, False]
    assert g["few"].tolist() == [False, False, False, False, False, True, True, True]


@pytest.mark.parametrize(
    ("c", "sizes"),
    [(1, (1, 0, 0)), (2, (1, 1, 0)), (9, (3, 3, 3)), (10, (4, 3, 3)), (11, (4, 4, 3))],
)
def test_shot_groups_terciles_sizes(c: int, sizes: tuple[int, int, int]) -> None:
    counts = torch.arange(c, 0, -1)
    g = shot_groups(counts, mode="terciles")
    assert tuple(int(g[k].sum()) for k in ("many", "medium", "few")) == sizes
    total = g["many"].long() + g["medium"].long() + g["few"].long()
    assert (total == 1).all()  # a partition


def test_shot_groups_terciles_order_and_ties() -> None:
    # unsorted counts; classes 1 and 4 tie at 50 and straddle the boundary by index
    counts = [10, 50, 90, 5, 50, 70]
    g = shot_groups(counts, mode="terciles")
    assert torch.nonzero(g["many"]).flatten().tolist() == [2, 5]
    assert torch.nonzero(g["medium"]).flatten().tolist() == [1, 4]
    assert torch.nonzero(g["few"]).flatten().tolist() == [0, 3]
    counts = [50, 50, 50, 50]  # all tied: by index
    g = shot_groups(counts, mode="terciles")
    assert torch.nonzero(g["many"]).flatten().tolist() == [0, 1]
    assert torch.nonzero(g["few"]).flatten().tolist() == [3]


def test_shot_accuracy_against_hand_reference() -> None:
    logits, target = _data(300, 10, 1)
    counts = np.array([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])  # CIFAR-10-LT IF 100
    out = shot_accuracy(logits, target, counts)
    y, p = target.numpy(), _pred(logits)
    rec = np.array([np.mean(p[y == c] == c) for c in range(10)])
    assert out["many"] == pytest.approx(rec[counts > 100].mean())
    assert out["medium"] == pytest.approx(rec[(counts >= 20) & (counts <= 100)].mean())
    assert math.isnan(out["few"])  # no class below 20
    out = shot_accuracy(logits, target, counts, mode="terciles")
    assert out["many"] == pytest.approx(rec[:4].mean())
    assert out["medium"] == pytest.approx(rec[4:7].mean())
    assert out["few"] == pytest.approx(rec[7:].mean())


def test_shot_accuracy_skips_classes_absent_from_target() -> None:
    logits = torch.eye(3)[[0, 1, 1]]
    target = torch.tensor([0, 1, 1])  # class 2 absent
    out = shot_accuracy(logits, target, [500, 50, 5])
    assert out == {"many": 1.0, "medium": 1.0, "few": out["few"]} and math.isnan(out["few"])


def test_balanced_accuracy_vs_torchmetrics_macro_accuracy() -> None:
    """torchmetrics' macro accuracy also averages a class absent from the target but predicted
    (recall 0); ours, like sklearn, averages the classes present in the target only."""
    from torchmetrics.functional.classification import multiclass_accuracy

    logits = torch.eye(3)[[0, 0, 1, 2]]  # predicts 0, 0, 1, 2
    target = torch.tensor([0, 0, 1, 1])  # class 2 absent, but predicted once
    assert balanced_accuracy(logits, target) == pytest.approx(0.75)  # (1 + 1/2) / 2
    assert BalancedAccuracy(3)(logits, target) == pytest.approx(0.75)
    macro = multiclass_accuracy(logits, target, num_classes=3, average="macro")
    assert float(macro) == pytest.approx(0.5)  # (1 + 1/2 + 0) / 3
    # without such a class the two agree
    logits, target = _data(200, 5, 0)
    macro = multiclass_accuracy(logits, target, num_classes=5, average="macro")
    assert balanced_accuracy(logits, target) == pytest.approx(float(macro), abs=1e-6)


# ---- accumulation ----------------------------------------------------------------------------------
def _batches(
    logits: torch.Tensor, target: torch.Tensor, sizes: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out, start = [], 0
    for s in sizes:
        out.append((logits[start : start + s], target[start : start + s]))
        start += s
    assert start == len(target)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_accumulated_equals_at_once(seed: int) -> None:
    c = 8
    logits, target = _data(150, c, seed, integer_logits=seed == 2)
    target[target == 3] = 4  # class 3 missing everywhere
    counts = [300, 150, 120, 90, 60, 30, 10, 2]
    metrics = {
        "cm": ConfusionMatrix(c),
        "acc": Accuracy(),
        "bacc": BalancedAccuracy(c),
        "pc": PerClassAccuracy(c),
        "shot": ShotAccuracy(counts),
        "shot3": ShotAccuracy(counts, mode="terciles"),
        "all": SingleLabelMetrics(c, counts, shot_mode="terciles"),
    }
    for lg, tg in _batches(logits, target, [1, 0, 40, 9, 100]):  # includes an empty batch
        for m in metrics.values():
            m.update(lg, tg)
    assert torch.equal(metrics["cm"].compute(), confusion_matrix(logits, target))
    assert metrics["acc"].compute() == pytest.approx(accuracy(logits, target))
    assert metrics["bacc"].compute() == pytest.approx(balanced_accuracy(logits, target))
    torch.testing.assert_close(
        metrics["pc"].compute(), per_class_accuracy(logits, target), equal_nan=True
    )
    assert metrics["shot"].compute() == pytest.approx(shot_accuracy(logits, target, counts))
    once = shot_accuracy(logits, target, counts, mode="terciles")
    assert metrics["shot3"].compute() == pytest.approx(once)
    res = metrics["all"].compute()
    assert list(res) == ["balanced_accuracy", "accuracy", "many", "medium", "few", "ece"]
    assert all(isinstance(v, float) for v in res.values())
    assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy(logits, target))
    assert res["accuracy"] == pytest.approx(accuracy(logits, target))
    for k in ("many", "medium", "few"):
        assert res[k] == pytest.approx(once[k])
    assert res["ece"] == pytest.approx(expected_calibration_error(logits, target))
    torch.testing.assert_close(
        metrics["all"].per_class(), per_class_accuracy(logits, target), equal_nan=True
    )
    assert torch.equal(metrics["all"].confusion(), confusion_matrix(logits, target))
    rd, rd_once = (
        metrics["all"].reliability_diagram_data(),
        reliability_diagram_data(logits, target),
    )
    for key in rd_once:
        torch.testing.assert_close(rd[key], rd_once[key], equal_nan=True)


def test_reset_and_compute_does_not_mutate() -> None:
    logits, target = _data(40, 5, 0)
    m = SingleLabelMetrics(5, [1] * 5)
    m.update(logits, target)
    first = m.compute()
    assert m.compute() == first  # compute is repeatable
    m.update(logits, target)  # update after compute continues
    assert m.compute()["accuracy"] == pytest.approx(first["accuracy"])
    m.reset()
    with pytest.warns(UserWarning, match="before the ``update`` method"):  # torchmetrics' warning
        res = m.compute()
    assert all(math.isnan(v) for v in res.values())
    assert m.confusion().sum() == 0


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 6),
    data=st.data(),
)
def test_property_matches_sklearn_and_batches(c: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 30))
    logits = torch.tensor(
        data.draw(
            st.lists(st.lists(st.integers(-2, 2), min_size=c, max_size=c), min_size=n, max_size=n)
        ),
        dtype=torch.float32,
    )
    target = torch.tensor(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    y, p = target.numpy(), _pred(logits)
    assert accuracy(logits, target) == pytest.approx(accuracy_score(y, p))
    present = np.unique(y)
    rec = [np.mean(p[y == k] == k) for k in present]
    bacc = balanced_accuracy(logits, target)
    assert bacc == pytest.approx(float(np.mean(rec)))
    assert 0.0 <= bacc <= 1.0
    split = data.draw(st.integers(0, n))
    m = BalancedAccuracy(c)
    m.update(logits[:split], target[:split])
    m.update(logits[split:], target[split:])
    assert m.compute() == pytest.approx(bacc)


# ---- bad input -------------------------------------------------------------------------------------
def test_bad_logits_ndim() -> None:
    with pytest.raises(ValueError, match="logits"):
        accuracy(torch.zeros(4), torch.zeros(4, dtype=torch.int64))


def test_bad_target_ndim() -> None:
    with pytest.raises(ValueError, match="target"):
        balanced_accuracy(torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.int64))


def test_bad_batch_mismatch() -> None:
    with pytest.raises(ValueError, match="target"):
        confusion_matrix(torch.zeros(4, 3), torch.zeros(5, dtype=torch.int64))


def test_bad_label_out_of_range() -> None:
    with pytest.raises(ValueError, match="target"):
        per_class_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_bad_negative_label() -> None:
    with pytest.raises(ValueError, match="target"):
        accuracy(torch.zeros(2, 3), torch.tensor([0, -1]))


def test_bad_nan_logits() -> None:
    with pytest.raises(ValueError, match="logits"):
        accuracy(torch.tensor([[0.0, math.nan]]), torch.tensor([0]))


def test_bad_float_target() -> None:
    with pytest.raises(TypeError, match="target"):
        accuracy(torch.zeros(2, 3), torch.zeros(2))


def test_bad_num_classes_mismatch() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        balanced_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), num_classes=4)


def test_bad_train_class_counts_length() -> None:
    with pytest.raises(ValueError, match="train_class_counts"):
        shot_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), [10, 20])


def test_bad_train_class_counts_length_class() -> None:
    with pytest.raises(ValueError, match="train_class_counts"):
        SingleLabelMetrics(3, [10, 20])


def test_bad_train_class_counts_negative() -> None:
    with pytest.raises(ValueError, match="train_class_counts"):
        shot_groups([10, -1, 3])


def test_bad_shot_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        shot_groups([10, 1, 3], mode="quartiles")  # type: ignore[arg-type]


def test_bad_thresholds_order() -> None:
    with pytest.raises(ValueError, match="few_threshold"):
        shot_groups([10, 1, 3], many_threshold=5, few_threshold=10)


def test_bad_num_classes_class() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_bad_update_label_out_of_range_class() -> None:
    m = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="target"):
        m.update(torch.zeros(1, 3), torch.tensor([3]))


def test_bad_update_width_class() -> None:
    m = SingleLabelMetrics(3, [1, 2, 3])
    with pytest.raises(ValueError, match="num_classes"):
        m.update(torch.zeros(1, 4), torch.tensor([0]))


def test_bad_n_bins_single_label() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        SingleLabelMetrics(3, [1, 2, 3], n_bins=0)


def test_infinite_logits_argmax_metrics_ok_but_ece_refuses() -> None:
    logits = torch.tensor([[math.inf, 0.0], [-math.inf, 0.0], [1.0, 0.0]])
    target = torch.tensor([0, 1, 1])
    # the arg-max is well defined, so the confusion-matrix metrics accept +-inf
    assert accuracy(logits, target) == pytest.approx(2 / 3)
    assert balanced_accuracy(logits, target) == pytest.approx(0.75)
    m = SingleLabelMetrics(2, [10, 5])
    with pytest.raises(ValueError, match="logits contains inf"):
        m.update(logits, target)
    assert int(m.confusion().sum()) == 0  # refused before any state changed
