"""The engine's data preparation: long-tailed train subset, balanced test set, balanced reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_fixtures import write_idx_folder
from longtail.cli import main
from longtail.engine.config import DataConfig, load_config
from longtail.engine.datasets import build_data


def _exp_counts(n_max: int, imbalance: float, c: int) -> list[int]:
    return [int(n_max * imbalance ** (-k / (c - 1))) for k in range(c)]


def _fake_idx(folder: Path, per_class: int = 40, test_per_class: int = 5) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(10), n).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 28, 28)).astype(np.uint8)
        write_idx_folder(folder, images, labels, split=split, gz=True)


def test_digits_split_is_balanced_and_long_tailed() -> None:
    data = build_data(DataConfig(dataset="digits", imbalance_factor=10, test_fraction=0.5))
    test_counts = torch.bincount(data.test_y, minlength=10).tolist()
    assert len(set(test_counts)) == 1  # balanced test set
    n_max = data.class_counts[0]
    assert data.class_counts == _exp_counts(n_max, 10, 10)
    assert data.group_counts == data.class_counts
    assert data.input_shape == (64,)
    # test = the same number per class; train = a subset of the rest
    n_test = int(0.5 * 174)  # the smallest digits class has 174 images
    assert test_counts == [n_test] * 10
    assert len(data.train_y) + len(data.test_y) <= 1797


def test_digits_subset_depends_on_subset_seed_only() -> None:
    a = build_data(DataConfig(dataset="digits", subset_seed=0))
    b = build_data(DataConfig(dataset="digits", subset_seed=0))
    c = build_data(DataConfig(dataset="digits", subset_seed=1))
    assert torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.train_x, c.train_x)


def test_balanced_reference_has_the_same_size() -> None:
    cfg = DataConfig(dataset="digits", imbalance_factor=10)
    lt = build_data(cfg)
    bal = build_data(cfg, balanced=True)
    per = sum(lt.class_counts) // 10
    assert bal.class_counts == [per] * 10
    assert bal.group_counts == lt.class_counts
    assert torch.equal(bal.test_y, lt.test_y)


def test_idx_images_are_normalised_channels_first(tmp_path: Path) -> None:
    _fake_idx(tmp_path / "fm")
    data = build_data(DataConfig(dataset="idx", data_dir=str(tmp_path / "fm"), imbalance_factor=4))
    assert data.input_shape == (1, 28, 28)
    assert data.is_image
    assert data.class_counts == _exp_counts(40, 4, 10)
    assert torch.bincount(data.test_y).tolist() == [5] * 10
    assert abs(float(data.train_x.mean())) < 1e-4
    assert float(data.train_x.std()) == pytest.approx(1.0, abs=1e-3)


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data_dir"):
        build_data(DataConfig(dataset="idx", data_dir=str(tmp_path / "nope")))


def test_train_on_idx_images_with_the_cnn(tmp_path: Path) -> None:
    _fake_idx(tmp_path / "fm")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "fake_fm",
                "methods": ["la-loss"],
                "seeds": [0],
                "data": {"dataset": "idx", "imbalance_factor": 4},
                "model": {"arch": "cnn", "channels": [4, 8]},
                "train": {"epochs": 1, "batch_size": 32, "augment": True, "crop_padding": 2},
            }
        )
    )
    out = tmp_path / "run"
    args = ["train", str(cfg), "--data-dir", str(tmp_path / "fm"), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["class_counts"] == _exp_counts(40, 4, 10)
    assert results["dataset"] == "idx"


@pytest.mark.slow
def test_fashion_mnist_lt_config_builds_the_cifar_lt_profile(data_dir: Path) -> None:
    cfg = load_config("fashion_mnist_lt", {"data.data_dir": str(data_dir / "fashion-mnist")})
    data = build_data(cfg.data)
    assert data.class_counts == _exp_counts(6000, 100, 10)
    assert data.class_counts[-1] == 60
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    assert data.input_shape == (1, 28, 28)
