"""Open-set metrics against scikit-learn (ROC AUC, average precision) and hand-written OSCR references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from longtail.metrics import (
    OpenSetMetrics,
    accuracy,
    open_set_aupr,
    open_set_auroc,
    oscr,
)


def _scores(n: int, seed: int, *, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    is_unknown = torch.rand(n, generator=g) < 0.4
    if ties:
        s = torch.randint(0, 4, (n,), generator=g).double() + is_unknown.double()
    else:
        s = torch.randn(n, generator=g, dtype=torch.float64) + is_unknown.double()
    return s, is_unknown


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_aupr_against_sklearn(seed: int, ties: bool) -> None:
    s, unk = _scores(120, seed, ties=ties)
    y = unk.numpy().astype(int)
    # torchmetrics counts in float32: agreement to 1e-6, not 1e-12
    assert open_set_auroc(s, unk) == pytest.approx(roc_auc_score(y, s.numpy()), abs=1e-6)
    aupr = open_set_aupr(s, unk)
    assert aupr["aupr_out"] == pytest.approx(average_precision_score(y, s.numpy()), abs=1e-6)
    assert aupr["aupr_in"] == pytest.approx(average_precision_score(1 - y, -s.numpy()), abs=1e-6)
    # 0/1 integer flags are accepted too
    assert open_set_auroc(s, unk.long()) == open_set_auroc(s, unk)


def test_auroc_one_group_is_nan() -> None:
    s = torch.randn(5)
    assert math.isnan(open_set_auroc(s, torch.zeros(5, dtype=torch.bool)))
    assert math.isnan(open_set_auroc(s, torch.ones(5, dtype=torch.bool)))
    assert math.isnan(open_set_aupr(s, torch.zeros(5, dtype=torch.bool))["aupr_out"])
    assert math.isnan(open_set_aupr(s, torch.ones(5, dtype=torch.bool))["aupr_in"])
    assert math.isnan(open_set_auroc(torch.zeros(0), torch.zeros(0, dtype=torch.bool)))


def test_large_scores_are_not_tied_by_a_sigmoid() -> None:
    """Scores like -max logit of a confident model lie far outside [0, 1]; torchmetrics' sigmoid
    would make them equal (1.0 above ~37). The ranks are passed instead."""
    from torchmetrics.functional.classification import binary_auroc

    g = torch.Generator().manual_seed(0)
    unk = torch.rand(100, generator=g) < 0.4
    s = 50.0 + 10.0 * torch.rand(100, generator=g, dtype=torch.float64) + 2.0 * unk
    y = unk.numpy().astype(int)
    assert open_set_auroc(s, unk) == pytest.approx(roc_auc_score(y, s.numpy()), abs=1e-6)
    assert open_set_aupr(s, unk)["aupr_out"] == pytest.approx(
        average_precision_score(y, s.numpy()), abs=1e-6
    )
    assert float(binary_auroc(s, unk.long())) == pytest.approx(0.5)  # everything tied at 1.0


# ---- OSCR ---------------------------------------------------------------------------------------------
def reference_oscr(
    known_logits: np.ndarray, target: np.ndarray, unknown_logits: np.ndarray
) -> float:
    """Threshold sweep: accept if max logit >= theta, trapezoids between consecutive distinct thresholds."""
    sk, su = known_logits.max(1), unknown_logits.max(1)
    correct = known_logits.argmax(1) == target
    fpr, ccr = [0.0], [0.0]
    for theta in np.unique(np.concatenate([sk, su]))[::-1]:
        ccr.append(float(np.sum(correct & (sk >= theta))) / len(sk))
        fpr.append(float(np.sum(su >= theta)) / len(su))
    return float(np.trapezoid(ccr, fpr))


def arpl_style_oscr(
    known_logits: np.ndarray, target: np.ndarray, unknown_logits: np.ndarray
) -> float:
    """The loop of ARPL's compute_oscr, re-written: CC counts strictly above index k, FP at or above."""
    x1, x2 = known_logits.max(1), unknown_logits.max(1)
    correct = (known_logits.argmax(1) == target).astype(float)
    k_target = np.concatenate([correct, np.zeros(len(x2))])
    u_target = np.concatenate([np.zeros(len(x1)), np.ones(len(x2))])
    predict = np.concatenate([x1, x2])
    n = len(predict)
    order = np.argsort(predict, kind="stable")
    sk, su = k_target[order], u_target[order]
    ccr, fpr = np.zeros(n + 2), np.zeros(n + 2)
    for k in range(n - 1):
        ccr[k] = sk[k + 1 :].sum() / len(x1)
        fpr[k] = su[k:].sum() / len(x2)
    ccr[n + 1] = fpr[n + 1] = 1.0
    pts = sorted(zip(fpr, ccr, strict=True), reverse=True)
    return float(sum((a[0] - b[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(pts)))


def _open_data(seed: int, *, ties: bool, nk: int = 80, nu: int = 50, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (nk,), generator=g)
    if ties:
        kl = torch.randint(0, 4, (nk, c), generator=g).double()
        kl[torch.arange(nk), target] += 1
        ul = torch.randint(0, 4, (nu, c), generator=g).double()
    else:
        kl = torch.randn(nk, c, generator=g, dtype=torch.float64)
        kl[torch.arange(nk), target] += 1.5
        ul = torch.randn(nu, c, generator=g, dtype=torch.float64)
    return kl, target, ul


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_oscr_against_threshold_sweep(seed: int, ties: bool) -> None:
    kl, target, ul = _open_data(seed, ties=ties)
    ref = reference_oscr(kl.numpy(), target.numpy(), ul.numpy())
    got = oscr(kl, target, ul)
    assert got == pytest.approx(ref, abs=1e-12)
    assert 0.0 <= got <= accuracy(kl, target) + 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_oscr_vs_arpl_code_on_tie_free_data(seed: int) -> None:
    """Ours exceeds ARPL's loop by exactly 0.5 / (Nk Nu) per unknown followed by a correct known."""
    kl, target, ul = _open_data(seed, ties=False)
    arpl = arpl_style_oscr(kl.numpy(), target.numpy(), ul.numpy())
    sk, su = kl.max(1).values.numpy(), ul.max(1).values.numpy()
    correct = (kl.argmax(1) == target).numpy()
    is_u = np.concatenate([np.zeros(len(sk), bool), np.ones(len(su), bool)])
    is_c = np.concatenate([correct, np.zeros(len(su), bool)])
    order = np.argsort(np.concatenate([sk, su]))
    adjacent = int(np.sum(is_u[order][:-1] & is_c[order][1:]))
    got = oscr(kl, target, ul)
    assert got - arpl == pytest.approx(0.5 * adjacent / (len(sk) * len(su)), abs=1e-12)


def test_oscr_hand_example() -> None:
    # known: scores 3 (correct), 2 (wrong), 1 (correct); unknown: 2.5, 0
    kl = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    target = torch.tensor([0, 0, 0])
    ul = torch.tensor([[2.5, 0.0], [0.0, 0.0]])
    # correct knowns above each unknown: 2.5 -> {3}: 1; 0 -> {3, 1}: 2  => (1 + 2) / (3 * 2)
    assert oscr(kl, target, ul) == pytest.approx(0.5)
    assert math.isnan(oscr(kl, target, torch.zeros(0, 2)))


def test_oscr_softmax_option() -> None:
    kl, target, ul = _open_data(0, ties=False)
    ref = reference_oscr(kl.softmax(1).numpy(), target.numpy(), ul.softmax(1).numpy())
    assert oscr(kl, target, ul, softmax=True) == pytest.approx(ref, abs=1e-12)


# ---- class -------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000), ties=st.booleans(), cuts=st.lists(st.integers(0, 130), max_size=3)
)
def test_property_class_equals_functional(seed: int, ties: bool, cuts: list[int]) -> None:
    kl, target, ul = _open_data(seed, ties=ties)
    logits = torch.cat([kl, ul])
    tgt = torch.cat([target, torch.full((len(ul),), -1)])
    perm = torch.randperm(len(tgt), generator=torch.Generator().manual_seed(seed))
    logits, tgt = logits[perm], tgt[perm]
    m = OpenSetMetrics(5)
    bounds = [0, *sorted(cuts), len(tgt)]
    for a, b in itertools.pairwise(bounds):
        m.update(logits[a:b], tgt[a:b])
    res = m.compute()
    assert list(res) == ["auroc", "aupr_in", "aupr_out", "oscr", "closed_set_accuracy"]
    unk_scores = -logits.max(1).values
    is_unknown = tgt < 0
    assert res["auroc"] == pytest.approx(open_set_auroc(unk_scores, is_unknown))
    assert res["auroc"] == pytest.approx(
        roc_auc_score(is_unknown.numpy(), unk_scores.numpy()), abs=1e-6
    )
    aupr = open_set_aupr(unk_scores, is_unknown)
    assert res["aupr_in"] == pytest.approx(aupr["aupr_in"])
    assert res["aupr_out"] == pytest.approx(aupr["aupr_out"])
    assert res["oscr"] == pytest.approx(oscr(kl, target, ul))
    assert res["closed_set_accuracy"] == pytest.approx(accuracy(kl, target))


def test_class_custom_unknown_scores() -> None:
    kl, target, ul = _open_data(1, ties=False)
    logits = torch.cat([kl, ul])
    tgt = torch.cat([target, torch.full((len(ul),), -1)])
    custom = torch.randn(len(tgt), dtype=torch.float64)
    m = OpenSetMetrics(5)
    m.update(logits, tgt, unknown_scores=custom)
    res = m.compute()
    assert res["auroc"] == pytest.approx(roc_auc_score((tgt < 0).numpy(), custom.numpy()), abs=1e-6)
    m.reset()
    with pytest.warns(UserWarning, match="before the ``update`` method"):  # torchmetrics' warning
        assert all(math.isnan(v) for v in m.compute().values())


# ---- bad input ---------------------------------------------------------------------------------------
def test_bad_unknown_scores_ndim() -> None:
    with pytest.raises(ValueError, match="unknown_scores"):
        open_set_auroc(torch.zeros(3, 1), torch.zeros(3, dtype=torch.bool))


def test_bad_is_unknown_length() -> None:
    with pytest.raises(ValueError, match="is_unknown"):
        open_set_aupr(torch.zeros(3), torch.zeros(4, dtype=torch.bool))


def test_bad_is_unknown_values() -> None:
    with pytest.raises(ValueError, match="is_unknown"):
        open_set_auroc(torch.zeros(3), torch.tensor([0, 1, 2]))


def test_bad_nan_scores() -> None:
    with pytest.raises(ValueError, match="unknown_scores"):
        open_set_auroc(torch.tensor([0.0, math.nan]), torch.tensor([0, 1]))


def test_bad_oscr_known_target_range() -> None:
    with pytest.raises(ValueError, match="known_target"):
        oscr(torch.zeros(2, 3), torch.tensor([0, 3]), torch.zeros(1, 3))


def test_bad_oscr_unknown_logits_width() -> None:
    with pytest.raises(ValueError, match="unknown_logits"):
        oscr(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(1, 4))


def test_bad_class_target_range() -> None:
    with pytest.raises(ValueError, match="target"):
        OpenSetMetrics(3).update(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_bad_class_logits_width() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        OpenSetMetrics(3).update(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_infinite_logits_with_softmax_refused() -> None:
    known = torch.tensor([[math.inf, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    unknown = torch.tensor([[0.5, 0.5]])
    with pytest.raises(ValueError, match="known_logits contains inf"):
        oscr(known, target, unknown, softmax=True)
    with pytest.raises(ValueError, match="unknown_logits contains inf"):
        oscr(unknown.repeat(2, 1), target, known, softmax=True)
    with pytest.raises(ValueError, match="logits contains inf"):
        OpenSetMetrics(2, softmax=True).update(known, target)
    # on the maximum logit itself +inf is a valid (extreme) score: all known samples above unknowns
    assert oscr(known, target, unknown) == pytest.approx(1.0)
    m = OpenSetMetrics(2)
    m.update(torch.cat([known, unknown]), torch.tensor([0, 1, -1]))
    assert m.compute()["auroc"] == pytest.approx(1.0)
