"""Data-level methods: SMOTE over-sampling (imbalanced-learn) and deferred re-sampling (DRS)."""

from __future__ import annotations

import pytest
import torch

from longtail import data as ltdata
from longtail.data import smote_oversample
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import SingleLabelTask
from test_engine_fixtures import tiny_config, tiny_vectors


def _blobs(counts: list[int], dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, dim, generator=g) + 5 * k for k, n in enumerate(counts)]
    ys = [torch.full((n,), k, dtype=torch.long) for k, n in enumerate(counts)]
    return torch.cat(xs), torch.cat(ys)


def _on_a_segment(p: torch.Tensor, pts: torch.Tensor) -> bool:
    """Whether ``p`` lies on the segment between two of ``pts`` (up to float error)."""
    a = pts[:, None, :]
    d = pts[None, :, :] - a  # (n, n, D)
    u = ((p - a) * d).sum(-1) / d.pow(2).sum(-1).clamp_min(1e-12)
    u = u.clamp(0, 1)
    gap = (a + u[..., None] * d - p).norm(dim=-1)
    return bool(gap.min() < 1e-4)


def test_smote_balances_keeps_originals_and_interpolates_within_a_class() -> None:
    x, y = _blobs([30, 10, 7])
    xs, ys = smote_oversample(x, y, k_neighbors=3, seed=1)
    assert torch.bincount(ys).tolist() == [30, 30, 30]
    assert torch.equal(xs[: len(x)], x) and torch.equal(ys[: len(y)], y)
    for p, c in zip(xs[len(x) :], ys[len(y) :], strict=True):
        assert _on_a_segment(p, x[y == c]), "a synthetic point is not between two same-class points"
    again = smote_oversample(x, y, k_neighbors=3, seed=1)
    assert torch.equal(again[0], xs)
    assert not torch.equal(smote_oversample(x, y, k_neighbors=3, seed=2)[0], xs)


def test_smote_keeps_image_shape_and_dtype() -> None:
    x, y = _blobs([12, 6], dim=2 * 3 * 3)
    xs, ys = smote_oversample(x.reshape(-1, 2, 3, 3).double(), y, k_neighbors=2)
    assert xs.shape == (24, 2, 3, 3) and xs.dtype == torch.float64 and ys.dtype == torch.int64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_neighbors": 0}, "k_neighbors"),
        ({"k_neighbors": 6}, "class 2 has 6"),
        ({"k_neighbors": True}, "k_neighbors"),
    ],
)
def test_smote_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    x, y = _blobs([30, 10, 6])
    with pytest.raises(ValueError, match=match):
        smote_oversample(x, y, **kwargs)  # type: ignore[arg-type]


def test_smote_bad_tensors() -> None:
    x, y = _blobs([5, 3])
    with pytest.raises(TypeError, match="int64"):
        smote_oversample(x, y.int())
    with pytest.raises(ValueError, match=r"x must be \(N"):
        smote_oversample(x, y[:-1])
    with pytest.raises(ValueError, match="empty"):
        smote_oversample(x[:0], y[:0])


def test_smote_method_trains_on_the_oversampled_set() -> None:
    data = tiny_vectors()  # counts 24, 12, 6, 3: k drops to 2 for the 3-example class
    task = SingleLabelTask(METHODS["smote"], data, tiny_config())
    new = task.training_data(data, seed=0)
    assert new.class_counts == [24, 24, 24, 24]
    assert torch.equal(new.test_x, data.test_x)
    order = task.sampler(0, seed=0, rank=0, world_size=1)
    assert len(order) == 96 and int(order.max()) == 95
    # the loss sees the training distribution it is given (uniform after SMOTE)
    assert task.criterion.counts_list == [24, 24, 24, 24]


def test_drs_switches_to_class_balanced_at_its_start_epoch() -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=10)
    task = SingleLabelTask(METHODS["drs"], data, cfg, params={"drs_start_fraction": 0.5})
    for epoch, kind in ((0, ltdata.InstanceBalancedSampler), (4, ltdata.InstanceBalancedSampler)):
        ref = kind(data.train_y, seed=3)
        ref.set_epoch(epoch)
        assert torch.equal(task.sampler(epoch, seed=3, rank=0, world_size=1), ref.global_indices())
    for epoch in (5, 9):
        ref = ltdata.ClassBalancedSampler(data.train_y, seed=3)
        ref.set_epoch(epoch)
        assert torch.equal(task.sampler(epoch, seed=3, rank=0, world_size=1), ref.global_indices())
