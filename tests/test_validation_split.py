"""``data.validation_fraction``: evaluate on a share of the training data held out, never the test set.

The held-out examples must come from the training subset only, leave it, keep every class in
training, be the same for every method and seed of a run, and be said in ``results.json`` and the
report; tasks whose evaluation the training data cannot stand in for refuse the key.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.datasets import (
    DataBundle,
    build_data,
    hold_out_validation,
    validation_indices,
)
from longtail.engine.runner import run_benchmark
from test_openset_engine import tiny_raw


def _bundle(y: torch.Tensor, **over: Any) -> DataBundle:
    n = len(y)
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)  # row i holds i
    num_classes = int(y.max()) + 1 if y.ndim == 1 else y.shape[1]
    counts = [int((y == c).sum()) for c in range(num_classes)] if y.ndim == 1 else [0] * num_classes
    fields: dict[str, Any] = dict(
        name="toy",
        train_x=x,
        train_y=y,
        test_x=torch.full((4, 3), -1.0),
        test_y=torch.zeros(4, dtype=torch.long),
        class_names=[str(c) for c in range(num_classes)],
        class_counts=counts,
        group_counts=counts,
        imbalance_factor=None,
    )
    fields.update(over)
    return DataBundle(**fields)


# ------------------------------------------------------------------------ the split


def test_validation_indices_are_a_stratified_partition() -> None:
    y = torch.tensor([0] * 50 + [1] * 10 + [2] * 2 + [3])
    keep, held = validation_indices(y, 0.2, seed=0)
    assert torch.equal(torch.cat([keep, held]).sort().values, torch.arange(len(y)))
    assert set(keep.tolist()).isdisjoint(held.tolist())
    # per class: round(0.2 n), at least one held and one kept when n >= 2; a single example stays
    assert [int((y[held] == c).sum()) for c in range(4)] == [10, 2, 1, 0]
    assert [int((y[keep] == c).sum()) for c in range(4)] == [40, 8, 1, 1]
    again_keep, again_held = validation_indices(y, 0.2, seed=0)
    assert torch.equal(held, again_held) and torch.equal(keep, again_keep)
    assert not torch.equal(held, validation_indices(y, 0.2, seed=1)[1])


def test_validation_indices_multilabel_rows() -> None:
    y = (torch.rand(40, 5, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    keep, held = validation_indices(y, 0.25, seed=3)
    assert len(held) == 10 and len(keep) == 30
    assert torch.equal(torch.cat([keep, held]).sort().values, torch.arange(40))


def test_hold_out_validation_multilabel_counts_the_kept_positives() -> None:
    y = (torch.rand(40, 4, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    y[:, 3] = 0.0
    y[:2, 3] = 1.0  # a rare label: 2 positives
    bundle = _bundle(y, class_counts=[int(c) for c in y.sum(0)])
    for seed in range(6):
        keep, _ = validation_indices(y, 0.25, seed)
        kept = [int(c) for c in (y[keep] == 1).sum(0)]
        if min(kept) == 0:
            with pytest.raises(ValueError, match=r"data\.validation_fraction.*without training"):
                hold_out_validation(bundle, 0.25, seed)
        else:
            assert hold_out_validation(bundle, 0.25, seed).class_counts == kept


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_validation_indices_reject_a_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"data\.validation_fraction"):
        validation_indices(torch.tensor([0, 0, 1, 1]), fraction, seed=0)
    with pytest.raises(ValueError, match=r"data\.validation_fraction"):
        validation_indices(torch.zeros(4, 2), fraction, seed=0)


def test_hold_out_validation_moves_training_rows_to_the_test_split() -> None:
    y = torch.tensor([0] * 20 + [1] * 10 + [2] * 5)
    bundle = _bundle(y)
    out = hold_out_validation(bundle, 0.2, seed=0)
    assert out.evaluated_on == "validation" and bundle.evaluated_on == "test"
    # every evaluated row is a training row of the input (row i holds the value i), none is kept
    held = out.test_x[:, 0].long()
    kept = out.train_x[:, 0].long()
    assert set(held.tolist()).isdisjoint(kept.tolist())
    assert sorted(held.tolist() + kept.tolist()) == list(range(len(y)))
    assert torch.equal(out.test_y, y[held]) and torch.equal(out.train_y, y[kept])
    assert out.class_counts == [16, 8, 4]
    assert out.group_counts == [20, 10, 5]  # many / medium / few stay the same classes
    assert (out.test_x >= 0).all()  # nothing of the real test set
    assert hold_out_validation(out, 0.2, seed=0) is out  # already held out: unchanged


def test_hold_out_validation_refuses_extra_evaluation_splits() -> None:
    y = torch.tensor([0] * 6 + [1] * 6)
    bundle = _bundle(y, extra_splits={"unknown": (torch.zeros(2, 3), torch.full((2,), -1))})
    with pytest.raises(ValueError, match=r"data\.validation_fraction.*'unknown'"):
        hold_out_validation(bundle, 0.2, seed=0)


def test_hold_out_validation_of_a_lazy_dataset() -> None:
    from torch.utils.data import TensorDataset

    y = torch.tensor([0] * 10 + [1] * 10)
    xs = torch.arange(20, dtype=torch.float32).unsqueeze(1)
    bundle = _bundle(
        y,
        train_x=torch.empty(0, 1),
        train_dataset=TensorDataset(xs, y),
        eval_datasets={"test": TensorDataset(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))},
    )
    out = hold_out_validation(bundle, 0.3, seed=0)
    val = out.eval_datasets["test"]
    train = out.train_dataset
    assert train is not None
    seen = [int(val[i][0]) for i in range(len(val))]
    kept = [int(train[i][0]) for i in range(len(train))]
    assert len(seen) == 6 and sorted(seen + kept) == list(range(20))
    assert [int(val[i][1]) for i in range(len(val))] == out.test_y.tolist()


# ------------------------------------------------------------------------ runs and config


def test_digits_run_evaluates_on_the_validation_split(tmp_path: Path) -> None:
    raw = {
        "name": "val",
        "methods": ["erm"],
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10, "validation_fraction": 0.25},
        "train": {"epochs": 1, "batch_size": 32, "warmup_epochs": 0},
    }
    cfg = config_from_dict(raw)
    results = run_benchmark(cfg, tmp_path / "run", progress=False, echo=None)
    full = build_data(cfg.data)
    assert results["evaluated_on"] == "validation"
    assert results["num_train"] + results["num_test"] == len(full.train_y)
    assert results["num_test"] == sum(math.floor(0.25 * c + 0.5) for c in full.class_counts)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "evaluated on a validation split, not the test set" in report
    plain = config_from_dict({**raw, "data": {**raw["data"], "validation_fraction": None}})
    other = run_benchmark(plain, tmp_path / "plain", progress=False, echo=None)
    assert other["evaluated_on"] == "test" and other["num_test"] == len(full.test_y)
    assert "validation split" not in (tmp_path / "plain" / "report.md").read_text()


def test_open_set_validation_holds_out_known_and_unknown_training_images(tmp_path: Path) -> None:
    from data_fixtures import write_idx_folder
    from longtail.tracks.open_set.task import build_open_set_data

    # every training image has a dark corner pixel, every test image a bright one: the split
    # evaluated must hold only training images
    rng = np.random.default_rng(0)
    for split, n, corner in (("train", 20, 0), ("test", 5, 255)):
        images = rng.integers(0, 200, size=(10 * n, 28, 28)).astype(np.uint8)
        images[:, 27, 27] = corner
        write_idx_folder(tmp_path / "idx", images, np.repeat(np.arange(10), n), split=split)
    raw = tiny_raw(tmp_path / "idx", **{"data.validation_fraction": 0.25})
    bundle = build_open_set_data(config_from_dict(raw), 0)
    assert bundle.evaluated_on == "validation"
    assert bundle.class_counts == [6] * 6  # 8 per known class, 2 of them held out
    assert len(bundle.test_y) == 12
    ux, uy = bundle.extra_splits["unknown"]
    assert len(uy) == 4 * 2 and (uy == -1).all()  # as many per unknown class as per known one
    dark = bundle.train_x[0, 0, 27, 27]
    assert torch.equal(bundle.train_x[:, 0, 27, 27], dark.expand(len(bundle.train_x)))
    assert (bundle.test_x[:, 0, 27, 27] == dark).all() and (ux[:, 0, 27, 27] == dark).all()
    plain = build_open_set_data(config_from_dict(tiny_raw(tmp_path / "idx")), 0)
    assert plain.evaluated_on == "test"
    assert (plain.extra_splits["unknown"][0][:, 0, 27, 27] > plain.train_x[0, 0, 27, 27]).all()


def test_multilabel_table_run_on_a_validation_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 60
    y = (rng.random((n, 3)) < [0.5, 0.3, 0.2]).astype(int)
    y[:6] = 1
    x = rng.normal(size=(n, 4)) + 1.5 * np.pad(y, ((0, 0), (0, 1)))
    path = tmp_path / "ml.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "sky", "sea", "sand"])
        for i in range(n):
            w.writerow([f"{v:.4f}" for v in x[i]] + [str(v) for v in y[i]])
    raw = {
        "name": "val",
        "task": "multi-label",
        "methods": ["bce"],
        "seeds": [0],
        "data": {
            "dataset": "table",
            "path": str(path),
            "label_columns": ["sky", "sea", "sand"],
            "imbalance_factor": None,
            "test_fraction": 0.25,
            "validation_fraction": 0.2,
            "hide_fraction": 0.2,
        },
        "model": {"arch": "mlp"},
        "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0},
    }
    results = run_benchmark(config_from_dict(raw), tmp_path / "run", progress=False, echo=None)
    assert results["evaluated_on"] == "validation"
    assert results["num_train"] == 36 and results["num_test"] == 9  # 45 training rows, 20% held
    # held out before the labels are hidden: complete validation labels, hidden training entries
    from longtail.tracks.multi_label.task import build_multilabel_data

    bundle = build_multilabel_data(config_from_dict(raw).data)
    assert bundle.evaluated_on == "validation"
    assert set(bundle.test_y.unique().tolist()) == {0.0, 1.0}
    assert (bundle.train_y == -1).any()
    assert bundle.class_counts == [int(c) for c in (bundle.train_y == 1).sum(0)]
    assert "validation split, not the test set" in (tmp_path / "run" / "report.md").read_text()


def test_config_refuses_validation_for_metric_learning() -> None:
    raw = yaml.safe_load(
        (Path(__file__).parents[1] / "configs/metric_fashion_mnist.yaml").read_text()
    )
    raw["data"]["validation_fraction"] = 0.2
    with pytest.raises(ConfigError, match=r"data\.validation_fraction"):
        config_from_dict(raw)


@pytest.mark.parametrize("value", [0, 1, 1.5, "half"])
def test_config_rejects_a_bad_validation_fraction(value: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.validation_fraction"):
        config_from_dict({"data": {"dataset": "digits", "validation_fraction": value}})


def test_config_refuses_validation_with_a_balanced_reference_or_a_teacher_checkpoint() -> None:
    with pytest.raises(ConfigError, match=r"data\.balanced_reference"):
        config_from_dict(
            {"data": {"dataset": "digits", "validation_fraction": 0.2, "balanced_reference": True}}
        )
    raw = yaml.safe_load(
        (Path(__file__).parents[1] / "configs/distill_fashion_mnist_lt.yaml").read_text()
    )
    raw["data"]["validation_fraction"] = 0.2
    config_from_dict(raw)  # a teacher trained as a stage of the run: fine
    raw["distill"]["teacher"]["checkpoint"] = "teacher.pt"
    with pytest.raises(ConfigError, match=r"distill\.teacher\.checkpoint"):
        config_from_dict(raw)


def test_fingerprints_of_runs_without_the_key_are_unchanged() -> None:
    """Older run folders resume: an unset key is not in the config dict (nor the stage blob);
    a set one is, so a stage trained without the hold-out is never reused with it."""
    from longtail.engine.config import config_to_dict
    from longtail.engine.runner.stages import _stage_blob

    plain = config_from_dict({"data": {"dataset": "digits"}})
    held = config_from_dict({"data": {"dataset": "digits", "validation_fraction": 0.2}})
    assert "validation_fraction" not in config_to_dict(plain)["data"]
    assert config_to_dict(held)["data"]["validation_fraction"] == 0.2
    assert _stage_blob(plain) != _stage_blob(held)
    assert config_from_dict(config_to_dict(plain)) == plain


def test_validation_seed_holds_out_another_part_of_the_same_subset() -> None:
    """``data.validation_seed`` draws another validation split of the same long-tailed subset;
    unset, the split is the one every earlier run used (``subset_seed + 3``), and the key is absent
    from the config's dict, so the fingerprints of stored runs hold."""
    from longtail.engine.config import config_to_dict
    from longtail.engine.runner.runs import Runs

    base = {"name": "v", "methods": ["erm"], "seeds": [0]}
    data = {"dataset": "digits", "imbalance_factor": 10, "validation_fraction": 0.25}

    def split(**extra: Any) -> DataBundle:
        cfg = config_from_dict({**base, "data": {**data, **extra}})
        return Runs(cfg, Path("unused"), resume=False, tick=None).data("long-tailed", 0)

    default, same, other = split(), split(validation_seed=3), split(validation_seed=11)

    def rows(b: DataBundle) -> set[bytes]:
        return {r.numpy().tobytes() for r in torch.cat([b.train_x, b.test_x])}

    assert torch.equal(default.test_x, same.test_x)  # subset_seed 0 + 3
    assert not torch.equal(default.test_x, other.test_x)  # another held-out part ...
    assert rows(default) == rows(other)  # ... of the same training subset
    assert default.class_counts == other.class_counts  # the same share of every class
    cfg = config_from_dict({**base, "data": data})
    assert "validation_seed" not in config_to_dict(cfg)["data"]
    assert (
        config_to_dict(config_from_dict({**base, "data": {**data, "validation_seed": 11}}))["data"][
            "validation_seed"
        ]
        == 11
    )


def test_validation_seed_without_a_validation_split_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"data\.validation_seed.*validation_fraction"):
        config_from_dict({"name": "v", "data": {"dataset": "digits", "validation_seed": 4}})
