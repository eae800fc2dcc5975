"""Feature vectors scaled by their kind (``data.feature_scaling``) and the linear model
(``model.arch: linear``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from data_fixtures import require
from longtail.cli import main
from longtail.data import load_mulan
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.datasets import (
    build_data,
    choose_feature_scaling,
    scale_features,
    standardise_features,
)
from longtail.engine.models import Classifier, FlatInput, build_model
from longtail.engine.report.prose import scaling_phrase
from longtail.engine.trainer import Trainer
from longtail.heads import CosineClassifier
from longtail.tracks.multi_label import MULTILABEL_METHODS
from longtail.tracks.multi_label.task import MultiLabelTask, build_multilabel_data
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import SingleLabelTask
from test_engine_fixtures import write_mulan


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _binary_sparse(n: int = 200, d: int = 30) -> torch.Tensor:
    """Bag-of-words-like 0/1 matrix, about 5% ones, every column with at least one 1."""
    x = (torch.rand(n, d, generator=_gen(1)) < 0.05).float()
    x[torch.arange(d) % n, torch.arange(d)] = 1.0
    return x


# ------------------------------------------------------------------ the auto rule


def test_auto_rule_picks_maxabs_for_sparse_or_binary_non_negative_features() -> None:
    binary_sparse = _binary_sparse()
    counts = torch.poisson(torch.full((200, 30), 0.3), generator=_gen(2))  # word counts 0, 1, 2..
    dense_binary = (torch.rand(200, 10, generator=_gen(3)) < 0.7).float()
    assert float((counts == 0).float().mean()) > 0.5 and float(counts.max()) >= 2
    assert float((dense_binary == 0).float().mean()) < 0.5
    assert choose_feature_scaling(binary_sparse) == "maxabs"
    assert choose_feature_scaling(counts) == "maxabs"
    assert choose_feature_scaling(dense_binary) == "maxabs"
    # missing values are ignored by the rule
    with_nan = binary_sparse.clone()
    with_nan[0, :5] = float("nan")
    assert choose_feature_scaling(with_nan) == "maxabs"


def test_auto_rule_picks_standard_for_dense_real_negative_and_mixed_features() -> None:
    dense_real = torch.rand(200, 10, generator=_gen(4))  # in [0, 1), like scene
    dense_counts = torch.randint(1, 80, (200, 5), generator=_gen(5)).float()  # ages, no zeros
    real_signed = torch.randn(200, 10, generator=_gen(6))
    mixed = torch.cat([_binary_sparse(200, 20), torch.randn(200, 2, generator=_gen(7))], dim=1)
    assert float((mixed == 0).float().mean()) > 0.5  # mostly zeros, but with negative values
    for x in (dense_real, dense_counts, real_signed, mixed):
        assert choose_feature_scaling(x) == "standard"
    assert choose_feature_scaling(torch.full((3, 2), float("nan"))) == "standard"
    # the boundary: exactly half the entries zero counts as sparse, just under half does not
    half = torch.tensor([[0.0, 0.5], [0.5, 0.0]])
    assert choose_feature_scaling(half) == "maxabs"
    assert choose_feature_scaling(torch.tensor([[0.0, 0.5, 0.2], [0.5, 0.3, 0.0]])) == "standard"


# ------------------------------------------------------------------ the scalings


def test_maxabs_divides_by_the_training_max_and_keeps_zeros() -> None:
    x_train = torch.tensor([[0.0, 2.0, 0.0, 3.0], [4.0, 0.0, 0.0, 3.0], [1.0, -5.0, 0.0, 3.0]])
    x_test = torch.tensor([[8.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 6.0]])
    train, test, scaling, _ = scale_features(x_train, x_test, "maxabs")
    assert scaling == "maxabs"
    ref = x_train.numpy() / np.array([4.0, 5.0, 1.0, 3.0])  # column 2: all zero, divided by 1
    assert np.array_equal(train.numpy(), ref.astype(np.float32))
    assert np.array_equal(test.numpy(), (x_test.numpy() / [4.0, 5.0, 1.0, 3.0]).astype(np.float32))
    assert torch.equal(train == 0, x_train == 0) and torch.equal(test == 0, x_test == 0)
    assert float(train.abs().max()) == 1.0  # every training value in [-1, 1]
    assert float(test[0, 0]) == 2.0  # a test value beyond the training max is not clipped
    assert torch.isfinite(train).all() and torch.isfinite(test).all()
    assert train.dtype == torch.float32 and train.is_contiguous() and test.is_contiguous()


def test_none_is_the_identity_and_standard_is_todays_standardisation() -> None:
    x_train = torch.randn(50, 6, generator=_gen(8))
    x_test = torch.randn(20, 6, generator=_gen(9))
    train, test, scaling, _ = scale_features(x_train, x_test, "none")
    assert scaling == "none" and torch.equal(train, x_train) and torch.equal(test, x_test)
    ref_train, ref_test = standardise_features(x_train, x_test)
    std = scale_features(x_train, x_test, "standard")
    assert torch.equal(std.train, ref_train) and torch.equal(std.test, ref_test)
    # independent reference: numpy's mean and sample std of the training rows
    mean, sd = x_train.double().numpy().mean(0), x_train.double().numpy().std(0, ddof=1)
    assert np.allclose(std.test.numpy(), (x_test.double().numpy() - mean) / sd, atol=1e-5)
    # auto on dense signed data is exactly `standard`
    auto = scale_features(x_train, x_test)
    assert auto.scaling == "standard" and torch.equal(auto.train, ref_train)


def test_missing_values_become_the_training_mean_under_every_scaling() -> None:
    nan = float("nan")
    x_train = torch.tensor([[0.0, 2.0], [4.0, nan], [2.0, 6.0]])
    x_test = torch.tensor([[nan, 1.0]])
    for scaling, fill in (("maxabs", (2.0 / 4.0, 4.0 / 6.0)), ("none", (2.0, 4.0))):
        train, test, _, _ = scale_features(x_train, x_test, scaling)
        assert torch.allclose(test[0, 0], torch.tensor(fill[0]))
        assert torch.allclose(train[1, 1], torch.tensor(fill[1]))
    train, test, _, _ = scale_features(x_train, x_test, "standard")
    assert float(test[0, 0]) == 0.0 and float(train[1, 1]) == 0.0


@pytest.mark.parametrize("scaling", ["auto", "standard", "maxabs", "none"])
def test_the_scale_is_fitted_on_the_training_rows_only(scaling: str) -> None:
    x_train = _binary_sparse(60, 8) * 3.0
    x_test = torch.rand(10, 8, generator=_gen(10))
    other_test = -50.0 * torch.rand(25, 8, generator=_gen(11))  # negative, other scale and size
    a = scale_features(x_train, x_test, scaling)
    b = scale_features(x_train, other_test, scaling)
    assert a.scaling == b.scaling != "auto"
    assert torch.equal(a.train, b.train)
    # each test row is scaled by the same per-feature map: append a row and nothing else changes
    c = scale_features(x_train, torch.cat([x_test, other_test[:1]]), scaling)
    assert torch.equal(c.test[:-1], a.test)


def test_an_unknown_scaling_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"^data\.feature_scaling: .*'minmax'"):
        scale_features(torch.zeros(2, 2), torch.zeros(1, 2), "minmax")


def test_real_sets_auto_keeps_scene_and_yeast_bit_for_bit_and_picks_maxabs_for_enron() -> None:
    for name, expected in (("scene", "standard"), ("yeast", "standard"), ("enron", "maxabs")):
        train, test = load_mulan(require(f"multilabel/{name}"))
        auto = scale_features(train.data, test.data)
        assert auto.scaling == expected, name
        if expected == "standard":
            ref_train, ref_test = standardise_features(train.data, test.data)
            assert torch.equal(auto.train, ref_train) and torch.equal(auto.test, ref_test)
        else:  # binary bag-of-words: the scaled values are the 0/1 values themselves
            assert torch.equal(auto.train, train.data)


# ------------------------------------------------------------------ through the engine


def _ml_config(folder: Path, **data: Any) -> dict[str, Any]:
    return {
        "name": "fs",
        "task": "multi-label",
        "methods": ["bce"],
        "seeds": [0],
        "data": {"dataset": "mulan", "data_dir": str(folder), "imbalance_factor": None, **data},
        "model": {"arch": "linear"},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "num_threads": 1},
    }


def test_mulan_scaling_is_configurable_and_recorded(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    train, test = load_mulan(folder)
    for scaling, expected in (("auto", "standard"), ("maxabs", "maxabs"), ("none", "none")):
        bundle = build_multilabel_data(
            config_from_dict(_ml_config(folder, feature_scaling=scaling)).data
        )
        ref = scale_features(train.data, test.data, expected)
        assert bundle.feature_scaling == expected
        assert torch.equal(bundle.train_x, ref.train) and torch.equal(bundle.test_x, ref.test)


def test_table_scaling_single_and_multi_label(tmp_path: Path) -> None:
    g = np.random.default_rng(0)
    n = 60
    words = (g.random((n, 6)) < 0.1).astype(float)  # sparse binary features
    words[:, 0] = 0.0  # a constant-zero column stays 0 and finite
    label = np.where(words[:, 1] + g.random(n) > 0.9, "a", "b")
    path = tmp_path / "t.npz"
    np.savez(path, **{f"w{j}": words[:, j] for j in range(6)}, label=label, tag=words[:, 2])
    single = config_from_dict(
        {
            "data": {
                "dataset": "table",
                "path": str(path),
                "label_column": "label",
                "imbalance_factor": None,
            }
        }
    ).data
    bundle = build_data(single)
    assert bundle.feature_scaling == "maxabs"
    assert set(torch.unique(bundle.train_x).tolist()) <= {0.0, 1.0}
    assert torch.equal(bundle.train_x[:, 0], torch.zeros(len(bundle.train_x)))
    raw = config_from_dict(
        {
            "data": {
                "dataset": "table",
                "path": str(path),
                "label_column": "label",
                "imbalance_factor": None,
                "feature_scaling": "standard",
            }
        }
    ).data
    standard = build_data(raw)
    assert standard.feature_scaling == "standard"
    assert torch.allclose(standard.train_x[:, 1].mean(), torch.tensor(0.0), atol=1e-6)
    multi_path = tmp_path / "multi.npz"
    np.savez(multi_path, **{f"w{j}": words[:, j] for j in range(6)}, tag=words[:, 2])
    multi = _ml_config(tmp_path)
    multi["data"] = {
        "dataset": "table",
        "path": str(multi_path),
        "label_columns": ["tag"],
        "imbalance_factor": None,
    }
    ml = build_multilabel_data(config_from_dict(multi).data)
    assert ml.feature_scaling == "maxabs"
    assert torch.isfinite(ml.train_x).all()


def test_bench_records_the_scaling_in_results_and_report(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    cfg = tmp_path / "fs.yaml"
    cfg.write_text(yaml.safe_dump(_ml_config(folder, feature_scaling="maxabs")))
    out = tmp_path / "run"
    assert main(["bench", str(cfg), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["feature_scaling"] == "maxabs"
    report = (out / "report.md").read_text()
    assert "features divided by their training max |x| (not centred) " in report
    assert "(`data.feature_scaling: maxabs`)" in report
    assert "Model `linear`" in report


def test_scaling_phrase() -> None:
    auto = {"data": {"feature_scaling": "auto"}}
    assert scaling_phrase({"feature_scaling": "standard"}, auto) == (
        ", features standardised with the training mean and std "
        "(`data.feature_scaling: auto` chose `standard`)"
    )
    assert scaling_phrase({"feature_scaling": "none"}, {"data": {"feature_scaling": "none"}}) == (
        ", features used as loaded (`data.feature_scaling: none`)"
    )
    assert scaling_phrase({"feature_scaling": None}, auto) == ""
    assert scaling_phrase({}, {}) == ""


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    with pytest.raises(ConfigError, match=r"data\.feature_scaling"):
        config_from_dict(_ml_config(folder, feature_scaling="minmax"))
    # only the formats of feature vectors read it
    with pytest.raises(ConfigError, match=r"'data\.feature_scaling': only used by dataset"):
        config_from_dict({"data": {"dataset": "digits", "feature_scaling": "maxabs"}})
    with pytest.raises(ConfigError, match=r"model\.arch"):
        config_from_dict({"model": {"arch": "logistic"}})


# ------------------------------------------------------------------ the linear model


def test_linear_arch_is_the_head_on_the_flattened_input() -> None:
    torch.manual_seed(0)
    model = build_model("linear", (7,), 3)
    assert isinstance(model, Classifier) and isinstance(model.backbone, FlatInput)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 7
    assert sum(p.numel() for p in model.parameters()) == 7 * 3 + 3
    x = torch.randn(4, 7)
    expected = x @ model.head.weight.T + model.head.bias
    assert torch.allclose(model(x), expected)
    images = build_model("linear", (1, 4, 4), 5)
    assert images(torch.randn(2, 1, 4, 4)).shape == (2, 5)
    assert images.backbone.feature_dim == 16  # type: ignore[union-attr]
    cosine = build_model("linear", (7,), 3, head="cosine")
    assert isinstance(cosine.head, CosineClassifier)
    w = cosine.head.weight  # type: ignore[union-attr]
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    assert torch.allclose(cosine(x) / cos, (cosine(x) / cos)[0, 0].expand(4, 3), atol=1e-4)


def test_linear_arch_trains_multi_label_and_single_label_methods(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    cfg = config_from_dict(_ml_config(folder))
    data = build_multilabel_data(cfg.data)
    for name in ("bce", "cb-bce", "asl"):
        task = MultiLabelTask(MULTILABEL_METHODS[name], data, cfg)
        before = [p.detach().clone() for p in task.build_model().parameters()]
        result = Trainer(task, data, cfg, seed=0).fit()
        assert result is not None and 0.0 < result.metrics["mAP"] <= 1.0
        trained = list(result.model_state.values())
        assert [t.shape for t in trained] == [(4, 5), (4,)]
        assert not torch.equal(trained[0], before[0])
    single = config_from_dict(
        {
            "data": {"imbalance_factor": 5},
            "model": {"arch": "linear"},
            "train": {"epochs": 1, "batch_size": 64, "num_threads": 1},
        }
    )
    bundle = build_data(single.data)
    for name in ("erm", "ldam-drw", "la-loss"):
        result = Trainer(
            SingleLabelTask(METHODS[name], bundle, single), bundle, single, seed=0
        ).fit()
        assert result is not None and result.metrics["accuracy"] > 0.2, name
