"""The ``fashion-pairs`` data set (100 side-by-side pair classes) and ``data.class_order: random``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import REPO_ROOT, write_idx_folder
from longtail.data import load_idx, long_tailed_counts, make_pair_images
from longtail.engine.config import ConfigError, DataConfig, load_config
from longtail.engine.datasets import build_data, class_order_permutation
from longtail.engine.models import build_model

FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _fake_idx(
    folder: Path, per_class: int = 12, test_per_class: int = 5, classes: int = 10
) -> None:
    """Random 28x28 uint8 images (all distinct), ``per_class`` / ``test_per_class`` per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes), n).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 28, 28)).astype(np.uint8)
        write_idx_folder(folder, images, labels, split=split, gz=True)


def _pairs_cfg(folder: Path, **kw: object) -> DataConfig:
    base: dict[str, object] = {
        "dataset": "fashion-pairs",
        "data_dir": str(folder),
        "imbalance_factor": 4,
        "max_per_class": 8,
        "pair_test_per_class": 3,
    }
    return DataConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fm")
    _fake_idx(folder)
    return folder


def _standardised(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation: invariant to the (positive) affine normalisation of build_data."""
    flat = x.reshape(len(x), -1).double()
    return (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True)


def _halves_match(
    x: torch.Tensor, y: torch.Tensor, raw_x: torch.Tensor, raw_y: torch.Tensor
) -> None:
    """Left half of every image is an image of class y // 10, right half one of class y % 10."""
    ref = _standardised(raw_x)
    for half, cls in ((x[..., :28], y // 10), (x[..., 28:], y % 10)):
        got = _standardised(half)
        dist = torch.cdist(got, ref)  # (n, n_raw)
        nearest = dist.argmin(1)
        # every half is one of the raw images (distance ~0; to any other image ~40)
        assert float(dist.min(1).values.max()) < 1e-3
        assert torch.equal(raw_y[nearest], cls)


# ------------------------------------------------------------------------------ make_pair_images
def test_make_pair_images_halves_labels_and_no_reuse() -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (30, 4, 5), generator=gen, dtype=torch.uint8)
    labels = torch.arange(3).repeat(10)
    state = torch.get_rng_state()
    px, py = make_pair_images(images, labels, per_class=6, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert px.shape == (9 * 6, 4, 10) and px.dtype == torch.uint8
    assert py.dtype == torch.int64
    assert py.tolist() == [c for c in range(9) for _ in range(6)]
    lookup = {images[i].numpy().tobytes(): (i, int(labels[i])) for i in range(len(images))}
    for c in range(9):
        a, b = divmod(c, 3)
        rows = px[py == c]
        left = [lookup[r[:, :5].contiguous().numpy().tobytes()] for r in rows]
        right = [lookup[r[:, 5:].contiguous().numpy().tobytes()] for r in rows]
        assert {lab for _, lab in left} == {a} and {lab for _, lab in right} == {b}
        assert len({i for i, _ in left}) == 6 and len({i for i, _ in right}) == 6  # no reuse
    again = make_pair_images(images, labels, per_class=6, seed=3)
    assert torch.equal(again[0], px) and torch.equal(again[1], py)
    assert not torch.equal(make_pair_images(images, labels, per_class=6, seed=4)[0], px)


def test_make_pair_images_channels_and_reuse_beyond_the_class_size() -> None:
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 3, 3)
    labels = torch.tensor([0, 0, 1, 1])
    px, py = make_pair_images(images, labels, per_class=5, seed=0)
    assert px.shape == (20, 2, 3, 6) and px.dtype == torch.float32
    left = px[py == 1][:, 0, 0, 0]  # class (0, 1): left items are images 0 / 1, each 2 or 3 times
    assert sorted(torch.bincount(left.long(), minlength=2).tolist()) == [2, 3]
    assert set(px[py == 1][:, 0, 0, 3].tolist()) == {2.0, 3.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": torch.zeros(4, 2)}, "images"),
        ({"images": [[0]]}, "images"),
        ({"images": torch.zeros(0, 2, 2), "labels": torch.zeros(0, dtype=torch.long)}, "images"),
        ({"labels": torch.zeros(4, 1, dtype=torch.long)}, "labels"),
        ({"labels": torch.zeros(4)}, "labels"),
        ({"labels": torch.tensor([0, 1, 0])}, "labels"),
        ({"labels": torch.tensor([0, 1, -1, 1])}, "labels"),
        ({"labels": torch.tensor([0, 2, 0, 2])}, r"labels: classes \[1\]"),
        ({"per_class": 0}, "per_class"),
        ({"per_class": True}, "per_class"),
        ({"per_class": 1.5}, "per_class"),
        ({"seed": "0"}, "seed"),
        ({"seed": 1.0}, "seed"),
    ],
)
def test_make_pair_images_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "images": torch.zeros(4, 2, 2, dtype=torch.uint8),
        "labels": torch.tensor([0, 1, 0, 1]),
        "per_class": 2,
        "seed": 0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_pair_images(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- build_data: pairs
def test_pairs_bundle_shapes_labels_names_and_counts(fm: Path) -> None:
    data = build_data(_pairs_cfg(fm))
    assert data.name == "fashion-pairs"
    assert data.input_shape == (1, 28, 56) and data.is_image
    assert data.num_classes == 100
    assert data.class_names[1] == "T-shirt/top|Trouser"
    assert data.class_names == [f"{a}|{b}" for a in FASHION for b in FASHION]
    assert data.class_counts == long_tailed_counts(8, 100, 4)
    assert data.group_counts == data.class_counts
    assert torch.bincount(data.test_y, minlength=100).tolist() == [3] * 100  # balanced
    assert abs(float(data.train_x.mean())) < 1e-4


def test_pairs_halves_come_from_classes_a_and_b(fm: Path) -> None:
    data = build_data(_pairs_cfg(fm))
    train, test = load_idx(fm, "train"), load_idx(fm, "test")
    _halves_match(data.train_x[:, 0], data.train_y, train.data, train.targets)
    _halves_match(data.test_x[:, 0], data.test_y, test.data, test.targets)


def test_pairs_are_deterministic_for_a_subset_seed(fm: Path) -> None:
    a, b = build_data(_pairs_cfg(fm)), build_data(_pairs_cfg(fm))
    c = build_data(_pairs_cfg(fm, subset_seed=1))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.test_x, c.test_x)
    assert a.class_counts == c.class_counts


def test_pairs_balanced_reference(fm: Path) -> None:
    lt = build_data(_pairs_cfg(fm))
    bal = build_data(_pairs_cfg(fm), balanced=True)
    assert bal.class_counts == [sum(lt.class_counts) // 100] * 100
    assert bal.group_counts == lt.class_counts


def test_pairs_need_ten_item_classes(tmp_path: Path) -> None:
    _fake_idx(tmp_path / "three", classes=3)
    with pytest.raises(ValueError, match=r"data\.data_dir: fashion-pairs needs the 10"):
        build_data(_pairs_cfg(tmp_path / "three"))


def test_the_cnn_takes_28x56_pairs(fm: Path) -> None:
    data = build_data(_pairs_cfg(fm))
    model = build_model("cnn", data.input_shape, data.num_classes, channels=(4, 8))
    assert model(data.train_x[:5]).shape == (5, 100)
    auto = build_model("auto", data.input_shape, data.num_classes, channels=(4, 8))
    assert auto(data.test_x[:2]).shape == (2, 100)


# ------------------------------------------------------------------------------------- config
def test_fashion_pairs_config() -> None:
    cfg = load_config(REPO_ROOT / "configs" / "fashion_pairs_lt.yaml")
    assert cfg.data.dataset == "fashion-pairs"
    assert cfg.data.imbalance_factor == 100 and cfg.data.max_per_class == 600
    assert cfg.data.pair_test_per_class == 100 and cfg.data.balanced_reference
    assert {"erm", "cb-focal", "cb-focal-zero-bias"} <= set(cfg.methods)
    # the fix of the many-class cb-focal collapse, and the same loss without it
    assert cfg.recipes["cb-focal-zero-bias"]["params"] == {"prior_bias": False}
    assert cfg.seeds == [0, 1, 2]
    assert cfg.model.arch == "cnn" and cfg.train.epochs == 12
    assert cfg.train.augment and not cfg.train.flip
    counts = long_tailed_counts(600, 100, 100)
    text = (REPO_ROOT / "configs" / "fashion_pairs_lt.yaml").read_text(encoding="utf-8")
    assert f"{sum(counts):,} in all" in text
    for k in range(0, 100, 20):
        assert f"ranks {k:2d}-{k + 19}: " + " ".join(map(str, counts[k : k + 20])) in text


def test_config_checks() -> None:
    path = REPO_ROOT / "configs" / "fashion_pairs_lt.yaml"
    with pytest.raises(ConfigError, match=r"train\.flip"):
        load_config(path, {"train.flip": True})
    assert load_config(path, {"train.flip": True, "train.augment": False}).train.flip
    with pytest.raises(ConfigError, match=r"data\.class_order"):
        load_config(path, {"data.class_order": "shuffled"})
    with pytest.raises(ConfigError, match=r"data\.pair_test_per_class"):
        load_config(path, {"data.pair_test_per_class": 0})
    with pytest.raises(ConfigError, match=r"data\.data_dir"):
        load_config(None, {"data.dataset": "fashion-pairs"})
    assert load_config(None).data.class_order == "fixed"


# --------------------------------------------------------------------------- class_order: random
def _digits(**kw: object) -> DataConfig:
    return DataConfig(dataset="digits", imbalance_factor=10, **kw)  # type: ignore[arg-type]


def test_fixed_order_is_unchanged_and_ignores_the_seed() -> None:
    plain = build_data(_digits())
    assert plain.class_counts == long_tailed_counts(plain.class_counts[0], 10, 10)
    for seed in (0, 7):
        seeded = build_data(_digits(class_order="fixed"), seed=seed)
        assert torch.equal(seeded.train_x, plain.train_x)
        assert torch.equal(seeded.train_y, plain.train_y)
        assert seeded.class_counts == plain.class_counts


def test_random_order_permutes_the_counts_per_training_seed() -> None:
    fixed = build_data(_digits())
    runs = {s: build_data(_digits(class_order="random"), seed=s) for s in range(4)}
    heads = set()
    for s, data in runs.items():
        order = class_order_permutation(10, s, 0)
        assert sorted(data.class_counts, reverse=True) == fixed.class_counts
        assert [data.class_counts[c] for c in order] == fixed.class_counts
        assert data.group_counts == data.class_counts
        assert data.class_names == fixed.class_names
        assert torch.equal(data.test_y, fixed.test_y)
        heads.add(max(range(10), key=data.class_counts.__getitem__))
    assert len(heads) > 1  # different seeds, different head classes
    again = build_data(_digits(class_order="random"), seed=2)
    assert torch.equal(again.train_x, runs[2].train_x)
    assert torch.equal(again.train_y, runs[2].train_y)
    other = build_data(_digits(class_order="random", subset_seed=1), seed=2)
    assert other.class_counts != runs[2].class_counts


def test_random_order_balanced_reference_and_errors() -> None:
    fixed_bal = build_data(_digits(), balanced=True)
    rnd = build_data(_digits(class_order="random"), seed=1)
    rnd_bal = build_data(_digits(class_order="random"), balanced=True, seed=1)
    assert torch.equal(rnd_bal.train_x, fixed_bal.train_x)
    assert rnd_bal.class_counts == fixed_bal.class_counts
    assert rnd_bal.group_counts == rnd.class_counts
    with pytest.raises(ValueError, match=r"data\.class_order"):
        build_data(_digits(class_order="random"))
    with pytest.raises(ValueError, match=r"data\.class_order"):
        build_data(dataclasses.replace(_digits(), class_order="sorted"), seed=0)
    with pytest.raises(ValueError, match="seed"):
        build_data(_digits(class_order="random"), seed=-1)
    with pytest.raises(ValueError, match="num_classes"):
        class_order_permutation(0, 0, 0)


def test_random_order_on_pairs(fm: Path) -> None:
    fixed = build_data(_pairs_cfg(fm))
    a = build_data(_pairs_cfg(fm, class_order="random"), seed=0)
    b = build_data(_pairs_cfg(fm, class_order="random"), seed=1)
    assert sorted(a.class_counts, reverse=True) == fixed.class_counts
    assert a.class_counts != b.class_counts
    assert a.class_counts.index(8) != b.class_counts.index(8)  # n_max = 8: the head class
    assert torch.equal(a.test_y, fixed.test_y)  # same test set (normalised with other stats)


@pytest.mark.slow
def test_fashion_pairs_on_the_real_data(data_dir: Path) -> None:
    folder = data_dir / "fashion-mnist"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    cfg = load_config(
        REPO_ROOT / "configs" / "fashion_pairs_lt.yaml", {"data.data_dir": str(folder)}
    )
    data = build_data(cfg.data)
    assert data.class_counts == long_tailed_counts(600, 100, 100)
    assert sum(data.class_counts) == 13026 and data.class_counts[-1] == 6
    assert torch.bincount(data.test_y).tolist() == [100] * 100
    assert data.input_shape == (1, 28, 56)
