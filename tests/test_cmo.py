"""CMO (Park et al., CVPR 2022): minority images' boxes pasted onto the batch (``mix: cmo``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from longtail.engine import distributed as D
from longtail.engine.methods import recipe_from_dict
from longtail.engine.tasks import Batch
from longtail.tracks.single_label.task import SingleLabelTask
from test_engine_fixtures import tiny_config, tiny_images, tiny_vectors

COUNTS = (40, 12, 4)


def _task(
    params: dict[str, Any] | None = None, *, loss: str = "la", drw: bool = False, **train: Any
) -> SingleLabelTask:
    recipe: dict[str, Any] = {"loss": loss, "mix": "cmo", "drw": drw}
    method = recipe_from_dict("cmo-test", recipe, "single-label")
    data = tiny_images(counts=COUNTS, size=8)
    return SingleLabelTask(method, data, tiny_config(**train), params=params)


def _reference_loss(
    task: SingleLabelTask, model: torch.nn.Module, batch: Batch, epoch: int, seed: int
) -> torch.Tensor:
    """The official step written out again: one uniform draw against ``cmo_prob``; the pasted
    images drawn with weight n_c^(-p); lam ~ Beta(a, a); rand_bbox's box; lam recomputed from the
    box; lam CE(z + tau log prior, y) + (1 - lam) CE(z + tau log prior, y') with DRW weights."""
    p = task.params
    data = task.data
    x, y = batch.x, batch.y
    n = len(y)
    torch.manual_seed(seed)
    r = float(torch.rand(()))
    if r >= p["cmo_prob"]:
        z = model(x)
        shift = p["tau"] * torch.log(torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS))
        w = task.criterion.context(epoch, z.device).weight
        per = F.cross_entropy(z + shift, y, reduction="none")
        # the logit-adjusted loss's "mean" divides the weighted sum by the number of samples
        return (per if w is None else per * w[y]).mean()
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    weights = torch.tensor([counts[int(c)] ** -p["cmo_weight_power"] for c in data.train_y])
    idx = torch.multinomial(weights, n, replacement=True)
    fg, y_fg = data.train_x[idx], data.train_y[idx]
    a = torch.tensor(float(p["mix_alpha"]))
    lam = float(torch.distributions.Beta(a, a).sample())
    size = x.shape[-1]
    cut = int(size * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(size, ())), int(torch.randint(size, ()))
    r0, r1 = sorted((max(cy - cut // 2, 0), min(cy + cut // 2, size)))
    c0, c1 = sorted((max(cx - cut // 2, 0), min(cx + cut // 2, size)))
    mixed = x.clone()
    for i in range(n):
        for row in range(r0, r1):
            for col in range(c0, c1):
                mixed[i, :, row, col] = fg[i, :, row, col]
    lam = 1 - (r1 - r0) * (c1 - c0) / (size * size)
    z = model(mixed)
    prior = torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS)
    logp = F.log_softmax(z + p["tau"] * torch.log(prior), dim=1)
    w = task.criterion.context(epoch, z.device).weight
    total = torch.zeros(())
    for i in range(n):
        wa = 1.0 if w is None else float(w[y[i]])
        wb = 1.0 if w is None else float(w[y_fg[i]])
        total = total - lam * wa * logp[i, y[i]] - (1 - lam) * wb * logp[i, y_fg[i]]
    return total / n


@pytest.mark.parametrize("drw", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_cmo_step_matches_the_official_step_written_again(drw: bool, seed: int) -> None:
    params = {"tau": 0.5, "cmo_prob": 0.7, "cmo_weight_power": 1.0, "mix_alpha": 1.0}
    if drw:
        params["drw_start_fraction"] = 0.5
    task = _task(params, drw=drw, epochs=10, augment=False)
    torch.manual_seed(0)
    model = task.build_model()
    data = task.data
    batch = Batch(data.train_x[::2], data.train_y[::2], torch.arange(0, len(data.train_y), 2))
    epoch = 8  # inside the window, and after DRW started
    torch.manual_seed(seed)
    got = task.training_step(model, batch, epoch, 0).loss
    want = _reference_loss(task, model, batch, epoch, seed)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_cmo_window_follows_the_official_epochs() -> None:
    """The official code pastes when ``3 < epoch < 200 - 3`` (0-based): epochs 4..196."""
    assert _task(epochs=200).cmo_epochs() == (4, 197)
    assert _task({"cmo_start_fraction": 0.0, "cmo_end_fraction": 0.0}, epochs=12).cmo_epochs() == (
        0,
        12,
    )


@pytest.mark.parametrize("epoch", [0, 11])
def test_outside_the_window_a_batch_trains_as_without_mixing(epoch: int) -> None:
    task = _task({"cmo_prob": 1.0, "cmo_start_fraction": 0.1, "cmo_end_fraction": 0.1}, epochs=12)
    plain = SingleLabelTask(
        recipe_from_dict("la", {"loss": "la"}, "single-label"), task.data, task.config
    )
    torch.manual_seed(0)
    model = task.build_model()
    data = task.data
    batch = Batch(data.train_x, data.train_y, torch.arange(len(data.train_y)))
    got = task.training_step(model, batch, epoch, 0)
    want = plain.training_step(model, batch, epoch, 0)
    torch.testing.assert_close(got.loss, want.loss)
    # inside the window with probability 1 every batch is pasted onto
    torch.manual_seed(3)
    inside = task.training_step(model, batch, 5, 0).loss
    assert not torch.allclose(inside, want.loss)


@pytest.mark.parametrize(("power", "expected"), [(1.0, "uniform"), (0.0, "counts")])
def test_pasted_images_are_drawn_with_weight_n_c_to_the_minus_power(
    power: float, expected: str
) -> None:
    task = _task({"cmo_weight_power": power}, augment=False)
    torch.manual_seed(0)
    x_fg, y_fg = task._cmo_foreground(30_000, torch.device("cpu"))
    freq = torch.bincount(y_fg, minlength=3).double() / len(y_fg)
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    want = torch.full((3,), 1 / 3) if expected == "uniform" else counts / counts.sum()
    torch.testing.assert_close(freq, want.double(), atol=0.015, rtol=0)
    # each pasted image is a training image of its label (no augmentation here)
    train = task.data.train_x.flatten(1)
    for i in range(0, 30_000, 997):
        hits = (train == x_fg[i].flatten()).all(dim=1).nonzero().flatten()
        assert len(hits) == 1 and int(task.data.train_y[hits[0]]) == int(y_fg[i])


def test_pasted_images_are_augmented_like_the_batches() -> None:
    """With ``train.augment`` the pasted images are cropped and flipped, as the trainer does to the
    batch; the same draw without augmentation gives the stored images."""
    on = _task(augment=True, crop_padding=2, flip=True)
    off = _task(augment=False)
    torch.manual_seed(0)
    x_on, y_on = on._cmo_foreground(64, torch.device("cpu"))
    torch.manual_seed(0)
    x_off, y_off = off._cmo_foreground(64, torch.device("cpu"))
    assert torch.equal(y_on, y_off)
    assert not torch.equal(x_on, x_off)


def test_each_process_pastes_its_own_share_of_one_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    task = _task(augment=False)
    torch.manual_seed(0)
    _, whole = task._cmo_foreground(10, torch.device("cpu"))
    monkeypatch.setattr(D, "world_size", lambda: 2)
    shares = []
    for r in (0, 1):
        monkeypatch.setattr(D, "rank", lambda r=r: r)
        torch.manual_seed(0)
        # the 2 x 5 draw of two processes is the one 10-draw of one process
        shares.append(task._cmo_foreground(5, torch.device("cpu"))[1])
    assert torch.equal(torch.cat(shares), whole)


def test_lazy_data_paste_the_same_images_as_in_memory_data() -> None:
    import dataclasses

    task = _task(augment=False)
    data = task.data
    items = [(data.train_x[i], int(data.train_y[i])) for i in range(len(data.train_y))]
    lazy = dataclasses.replace(data, train_x=data.train_x[:0], train_dataset=items)
    task_lazy = SingleLabelTask(task.method, lazy, task.config, params=task.params)
    torch.manual_seed(0)
    want = task._cmo_foreground(16, torch.device("cpu"))
    torch.manual_seed(0)
    got = task_lazy._cmo_foreground(16, torch.device("cpu"))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_cmo_refuses_data_that_are_not_images() -> None:
    method = recipe_from_dict("c", {"loss": "ce", "mix": "cmo"}, "single-label")
    task = SingleLabelTask(method, tiny_vectors(), tiny_config())
    with pytest.raises(ValueError, match=r"CMO pastes a box.*\(8,\)"):
        task.training_data(tiny_vectors(), 0)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"cmo_prob": 0.0}, "cmo_prob"),
        ({"cmo_prob": 1.5}, "cmo_prob"),
        ({"cmo_weight_power": -1}, "cmo_weight_power"),
        ({"cmo_end_fraction": 2}, "cmo_end_fraction"),
    ],
)
def test_bad_cmo_parameters_are_refused_naming_the_key(params: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        recipe_from_dict("c", {"loss": "ce", "mix": "cmo", "params": params}, "single-label")


def test_cmo_needs_a_cross_entropy_form_loss() -> None:
    with pytest.raises(ValueError, match=r"recipes\.c\.mix.*cmo"):
        recipe_from_dict("c", {"loss": "focal", "mix": "cmo"}, "single-label")


def test_an_empty_batch_trains_as_without_mixing() -> None:
    task = _task({"cmo_prob": 1.0, "cmo_start_fraction": 0.0})
    torch.manual_seed(0)
    model = task.build_model()
    x = task.data.train_x[:0]
    out = task.training_step(model, Batch(x, task.data.train_y[:0], torch.arange(0)), 0, 0)
    assert out.logits is not None and out.logits.shape == (0, 3)


def test_longtail_methods_lists_cmo_among_the_mixing_kinds() -> None:
    """The composition help is built from the kinds' one definition (method.py), not a copy."""
    from typing import get_args

    from longtail.engine.kinds import TASK_KINDS
    from longtail.engine.methods.method import MixKind, StageKind

    help_text = TASK_KINDS["single-label"].recipe_help()
    assert "mix {" + ", ".join(get_args(MixKind)) + "}" in help_text
    assert "cmo" in get_args(MixKind)
    assert "second_stage {" + ", ".join(get_args(StageKind)) + "}" in help_text
