"""Every metric class of longtail.metrics as a torchmetrics Metric: equal to its functional form and to
scikit-learn (or a reference written in tests/metric_cases.py), the same over uneven batches as at
once, ``forward`` per batch, states moved by ``.to``, and in a ``MetricCollection`` with torchmetrics'
own metrics. The two-process run is tests/test_metrics_distributed.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torchmetrics
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

import longtail.metrics
from longtail.metrics import (
    Accuracy,
    BalancedAccuracy,
    ConfusionMatrix,
    ExpectedCalibrationError,
    Metric,
    ShotAccuracy,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    expected_calibration_error,
    shot_accuracy,
)
from metric_cases import (
    CASE_IDS,
    CASES,
    COUNTS,
    N_BINS,
    Case,
    N,
    assert_same,
    batches,
    expected,
    result,
    single_label_data,
)

UNEVEN = [0, 1, 13, 0, 40, N - 54]  # includes empty batches, first and in the middle


def test_every_class_is_a_case_and_a_torchmetrics_metric() -> None:
    classes = {
        name
        for name in longtail.metrics.__all__
        if isinstance(getattr(longtail.metrics, name), type) and name != "Metric"
    }
    assert classes == set(CASE_IDS)
    for name in classes:
        cls = getattr(longtail.metrics, name)
        assert issubclass(cls, Metric) and issubclass(cls, torchmetrics.Metric), name


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_class_equals_functional(case: Case) -> None:
    inputs = case.data(0)
    m = case.make()
    m.update(*inputs)
    assert_same(result(m, case), expected(case, inputs), 1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_class_matches_sklearn(case: Case, seed: int) -> None:
    inputs = case.data(seed)
    m = case.make()
    m.update(*inputs)
    assert_same(m.compute(), case.reference(inputs), case.tol)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_uneven_batches_equal_at_once(case: Case) -> None:
    inputs = case.data(1)
    once = case.make()
    once.update(*inputs)
    want = result(once, case)
    m = case.make()
    for b in batches(inputs, UNEVEN):
        m.update(*b)
    assert_same(result(m, case), want, 1e-12)
    assert_same(result(m, case), want, 1e-12)  # repeatable (cached compute, the extras again)
    m.reset()  # reset, then the same batches in another split: the same value
    for b in batches(inputs, [N - 1, 0, 1]):
        m.update(*b)
    assert_same(result(m, case), want, 1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_update_after_compute_continues(case: Case) -> None:
    inputs = case.data(2)
    first, second = batches(inputs, [50, N - 50])
    m = case.make()
    m.update(*first)
    assert_same(m.compute(), case.functional(first), 1e-12)
    m.update(*second)
    assert_same(m.compute(), case.functional(inputs), 1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_returns_the_batch_value_and_accumulates(case: Case) -> None:
    inputs = case.data(2)
    m = case.make()
    for b in batches(inputs, [30, N - 30]):
        assert_same(m(*b), case.functional(b), 1e-12)
    assert_same(m.compute(), case.functional(inputs), 1e-12)


def _tensors(obj: Any) -> Iterator[tuple[str, Tensor]]:
    """Every tensor held by ``obj``'s attributes, through dicts, lists and tuples."""

    def walk(path: str, x: Any) -> Iterator[tuple[str, Tensor]]:
        if isinstance(x, Tensor):
            yield path, x
        elif isinstance(x, dict):
            for k, v in x.items():
                yield from walk(f"{path}[{k!r}]", v)
        elif isinstance(x, list | tuple):
            for i, v in enumerate(x):
                yield from walk(f"{path}[{i}]", v)

    for name, value in vars(obj).items():
        yield from walk(name, value)


def _off_device(metric: torch.nn.Module, device_type: str) -> list[str]:
    return [f"{p} on {t.device}" for p, t in _tensors(metric) if t.device.type != device_type]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_to_moves_every_state(case: Case) -> None:
    m = case.make()
    m.update(*case.data(0))
    m.compute()  # a cached result is held too
    states = m.metric_state
    assert states and all(
        (isinstance(v, Tensor) and v.device.type == "cpu") or (isinstance(v, list) and v)
        for v in states.values()
    )
    assert m.to("meta") is m
    assert _off_device(m, "meta") == []
    assert m.device.type == "meta"


def test_the_device_check_catches_an_unregistered_state() -> None:
    class PlainAttribute(Metric):  # a state kept as a plain attribute, as before torchmetrics
        def __init__(self) -> None:
            super().__init__()
            self.total = torch.zeros((), dtype=torch.int64)

        def update(self, x: Tensor) -> None:
            self.total = self.total + x.numel()

        def compute(self) -> float:
            return float(self.total)

    m = PlainAttribute()
    m.update(torch.zeros(3))
    m.to("meta")
    assert _off_device(m, "meta") == ["total on cpu"]


def test_metric_collection_of_ours_and_torchmetrics() -> None:
    c = 6
    logits, target = single_label_data(3)
    target[target == 4] = 3  # only classes 0, 1, 3 occur ...
    logits[:, [2, 4, 5]] = -1.0  # ... and are predicted: torchmetrics' macro average is ours then

    def collection(**kwargs: Any) -> MetricCollection:
        return MetricCollection(
            {
                "balanced_accuracy": BalancedAccuracy(c),
                "tm_macro_accuracy": MulticlassAccuracy(c, average="macro"),
                "accuracy": Accuracy(),
                "tm_accuracy": MulticlassAccuracy(c, average="micro"),
                "confusion": ConfusionMatrix(c),
                "tm_confusion": MulticlassConfusionMatrix(c),
                "shots": ShotAccuracy(COUNTS),  # a dict: flattened into many / medium / few
                "ece": ExpectedCalibrationError(N_BINS),
            },
            **kwargs,
        )

    for coll in (collection(), collection(compute_groups=False)):
        # (no empty batch here: torchmetrics' MulticlassAccuracy cannot reshape one; ours take it)
        for part in ([40, N - 40], [N]):  # the second pass after reset()
            for b in batches((logits, target), part):
                coll.update(*b)
            out = coll.compute()
            assert set(out) == {
                "balanced_accuracy",
                "tm_macro_accuracy",
                "accuracy",
                "tm_accuracy",
                "confusion",
                "tm_confusion",
                "many",
                "medium",
                "few",
                "ece",
            }
            assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy(logits, target))
            assert out["balanced_accuracy"] == pytest.approx(float(out["tm_macro_accuracy"]))
            assert out["accuracy"] == pytest.approx(accuracy(logits, target))
            assert out["accuracy"] == pytest.approx(float(out["tm_accuracy"]))
            assert torch.equal(out["confusion"], confusion_matrix(logits, target))
            assert torch.equal(out["confusion"], out["tm_confusion"])
            shots = shot_accuracy(logits, target, COUNTS)
            assert {k: out[k] for k in shots} == pytest.approx(shots, nan_ok=True)
            assert out["ece"] == pytest.approx(expected_calibration_error(logits, target, N_BINS))
            coll.reset()
            assert all(m.update_count == 0 for m in coll.values())
    # our confusion state is torchmetrics' own: the collection counts it once for both
    coll = collection()
    coll.update(logits, target)
    groups = [set(g) for g in coll.compute_groups.values()]
    assert any({"confusion", "tm_confusion"} <= g for g in groups), groups


def test_compute_before_update_warns_and_gives_nan() -> None:
    m = BalancedAccuracy(3)
    with pytest.warns(UserWarning, match="before the ``update`` method"):
        assert math.isnan(m.compute())


def test_constructors_take_torchmetrics_keywords() -> None:
    m = BalancedAccuracy(3, sync_on_compute=False, compute_with_cache=False)
    assert m.sync_on_compute is False and m.compute_with_cache is False
    with pytest.raises(ValueError, match="Unexpected keyword arguments"):
        Accuracy(sync=False)  # type: ignore[call-arg]


def test_repr_names_the_arguments() -> None:
    assert repr(ConfusionMatrix(4)) == "ConfusionMatrix(num_classes=4)"
    assert repr(ShotAccuracy([3, 2, 1], mode="terciles")) == (
        "ShotAccuracy(num_classes=3, mode='terciles')"
    )
