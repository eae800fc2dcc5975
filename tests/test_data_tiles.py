"""Tests of longtail.data.make_tile_images and long_tailed_label_probs (multi-label tiles)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import longtail.data.tiles
from longtail.data import long_tailed_label_probs, make_tile_images


def _items(
    num_classes: int = 4, per_class: int = 3, size: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct, never all-zero uint8 items ``(M, size, size)`` and their labels (ascending order
    is scrambled so that class members are not contiguous)."""
    rng = np.random.default_rng(seed)
    m = num_classes * per_class
    images = rng.integers(1, 256, size=(m, size, size), dtype=np.uint8)
    assert len({img.tobytes() for img in images}) == m
    labels = np.tile(np.arange(num_classes), per_class)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _tile_classes(
    x: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, grid: int
) -> np.ndarray:
    """Recover each tile's class from the pixels: -1 for an all-zero tile, else the class of the
    (unique) source image equal to it."""
    h, w = images.shape[1:]
    lookup = {img.numpy().tobytes(): int(c) for img, c in zip(images, labels, strict=True)}
    out = np.full((len(x), grid * grid), -2)
    for n in range(len(x)):
        for t in range(grid * grid):
            r, c = divmod(t, grid)
            tile = x[n, r * h : (r + 1) * h, c * w : (c + 1) * w]
            out[n, t] = -1 if int(tile.max()) == 0 else lookup[tile.numpy().tobytes()]
    assert (out >= -1).all()  # every non-blank tile is one of the source images
    return out


def _reference(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_images: int,
    label_probs: list[float],
    blank_prob: float,
    grid: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The construction as the docstring states it, written independently with loops."""
    tiles = grid * grid
    g = torch.Generator().manual_seed(seed)
    blank = torch.rand((num_images, tiles), generator=g, dtype=torch.float64) < blank_prob
    p = torch.as_tensor(label_probs, dtype=torch.float64)
    cls = torch.multinomial(p, num_images * tiles, replacement=True, generator=g)
    cls = cls.view(num_images, tiles)
    u = torch.rand((num_images, tiles), generator=g, dtype=torch.float64)
    h, w = images.shape[1:]
    x = torch.zeros((num_images, grid * h, grid * w), dtype=torch.uint8)
    y = torch.zeros((num_images, len(p)), dtype=torch.float32)
    for n in range(num_images):
        for t in range(tiles):
            if blank[n, t]:
                continue
            c = int(cls[n, t])
            members = [i for i in range(len(labels)) if int(labels[i]) == c]
            pick = members[min(math.floor(float(u[n, t]) * len(members)), len(members) - 1)]
            r, col = divmod(t, grid)
            x[n, r * h : (r + 1) * h, col * w : (col + 1) * w] = images[pick]
            y[n, c] = 1.0
    return x, y


def test_shapes_and_dtypes() -> None:
    images, labels = _items(size=5)
    x, y = make_tile_images(images, labels, num_images=7, label_probs=[0.25] * 4, grid=3)
    assert x.shape == (7, 15, 15) and x.dtype == torch.uint8 and x.is_contiguous()
    assert y.shape == (7, 4) and y.dtype == torch.float32
    assert set(y.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(("grid", "blank_prob", "seed"), [(2, 0.25, 0), (3, 0.5, 5), (1, 0.0, 2)])
def test_matches_the_documented_construction(grid: int, blank_prob: float, seed: int) -> None:
    images, labels = _items(num_classes=5, per_class=4)
    probs = [0.4, 0.3, 0.0, 0.2, 0.1]
    kwargs = {"num_images": 12, "label_probs": probs, "blank_prob": blank_prob, "grid": grid}
    x, y = make_tile_images(images, labels, seed=seed, **kwargs)  # type: ignore[arg-type]
    ref_x, ref_y = _reference(images, labels, seed=seed, **kwargs)  # type: ignore[arg-type]
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    assert y[:, 2].sum() == 0  # probability 0: never shown


def test_labels_are_the_classes_shown_in_the_pixels() -> None:
    images, labels = _items(num_classes=6, per_class=5, size=4)
    probs = long_tailed_label_probs(6, 10.0)
    x, y = make_tile_images(images, labels, num_images=200, label_probs=probs, blank_prob=0.3)
    shown = _tile_classes(x, images, labels, grid=2)
    expected = np.zeros((200, 6), dtype=np.float32)
    for n, row in enumerate(shown):
        for c in row[row >= 0]:
            expected[n, c] = 1.0
    np.testing.assert_array_equal(y.numpy(), expected)
    blank_rate = float((shown == -1).mean())
    assert abs(blank_rate - 0.3) < 0.06  # 800 tiles
    # items are used with replacement across tiles
    assert (shown >= 0).sum() > len(images)


def test_deterministic_per_seed() -> None:
    images, labels = _items()
    kwargs = {"num_images": 30, "label_probs": [0.1, 0.2, 0.3, 0.4]}
    torch.manual_seed(0)
    a = make_tile_images(images, labels, seed=3, **kwargs)  # type: ignore[arg-type]
    torch.manual_seed(1)  # the global RNG plays no part
    b = make_tile_images(images, labels, seed=3, **kwargs)  # type: ignore[arg-type]
    c = make_tile_images(images, labels, seed=4, **kwargs)  # type: ignore[arg-type]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_label_tensor_and_list_probs_agree() -> None:
    images, labels = _items()
    probs = [0.1, 0.2, 0.3, 0.4]
    a = make_tile_images(images, labels.int(), num_images=5, label_probs=probs)
    b = make_tile_images(
        images, labels, num_images=5, label_probs=torch.tensor(probs, dtype=torch.float32)
    )
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(("grid", "blank_prob"), [(2, 0.25), (3, 0.6)])
def test_positive_rate_matches_formula(grid: int, blank_prob: float) -> None:
    images, labels = _items(num_classes=10, per_class=2, size=2)
    probs = long_tailed_label_probs(10, 50.0)
    n = 20000
    _, y = make_tile_images(
        images, labels, num_images=n, label_probs=probs, blank_prob=blank_prob, grid=grid, seed=1
    )
    expected = 1 - (1 - (1 - blank_prob) * probs) ** (grid * grid)
    rate = y.double().mean(0)
    # binomial standard error <= 0.5 / sqrt(n) = 0.0035
    np.testing.assert_allclose(rate.numpy(), expected.numpy(), atol=0.015)
    assert bool((rate[:-1] >= rate[1:] - 0.02).all())  # head to tail


def test_blank_prob_one_gives_empty_images() -> None:
    images, labels = _items()
    x, y = make_tile_images(images, labels, num_images=9, label_probs=[1, 0, 0, 0], blank_prob=1)
    assert x.shape == (9, 6, 6) and int(x.max()) == 0
    assert y.shape == (9, 4) and int(y.sum()) == 0


def test_blank_prob_zero_fills_every_tile() -> None:
    images, labels = _items()
    x, y = make_tile_images(images, labels, num_images=20, label_probs=[0, 0, 1, 0], blank_prob=0)
    shown = _tile_classes(x, images, labels, grid=2)
    assert (shown == 2).all()
    assert y[:, 2].eq(1).all() and y.sum() == 20


def test_long_tailed_label_probs() -> None:
    p = long_tailed_label_probs(10, 100.0)
    assert p.dtype == torch.float64 and p.shape == (10,)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-15)
    assert float(p[0] / p[-1]) == pytest.approx(100.0)
    ratios = p[:-1] / p[1:]
    assert torch.allclose(ratios, torch.full((9,), 100.0 ** (1 / 9), dtype=torch.float64))
    assert torch.allclose(
        long_tailed_label_probs(4, 1), torch.full((4,), 0.25, dtype=torch.float64)
    )
    assert long_tailed_label_probs(1, 10.0).tolist() == [1.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10.0), r"num_classes: expected an int >= 1, got 0"),
        ((2.0, 10.0), r"num_classes: expected an int >= 1, got 2\.0"),
        ((True, 10.0), r"num_classes: expected an int >= 1, got True"),
        ((3, 0.5), r"imbalance_factor: expected a finite number >= 1, got 0\.5"),
        ((3, math.inf), r"imbalance_factor: expected a finite number >= 1, got inf"),
        ((3, math.nan), r"imbalance_factor: expected a finite number >= 1, got nan"),
        ((3, "10"), r"imbalance_factor: expected a finite number >= 1, got '10'"),
    ],
)
def test_long_tailed_label_probs_errors(args: tuple[object, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        long_tailed_label_probs(*args)  # type: ignore[arg-type]


IMAGES, LABELS = _items()
GOOD: dict[str, object] = {"num_images": 3, "label_probs": [0.25] * 4}


@pytest.mark.parametrize(
    ("images", "labels", "kwargs", "error", "message"),
    [
        (IMAGES.float(), LABELS, {}, TypeError, r"images: expected a uint8 tensor .* torch\.float32"),
        (IMAGES.numpy(), LABELS, {}, TypeError, r"images: expected a uint8 tensor .* ndarray"),
        (IMAGES[:, 0], LABELS, {}, ValueError, r"images: expected a non-empty \(M, H, W\) .* \(12, 3\)"),
        (IMAGES[:0], LABELS[:0], {}, ValueError, r"images: expected a non-empty .* \(0, 3, 3\)"),
        (IMAGES, LABELS.float(), {}, TypeError, r"labels: expected an integer tensor .*float32"),
        (IMAGES, LABELS[:5], {}, ValueError, r"labels: expected shape \(12,\) .* got \(5,\)"),
        (IMAGES, LABELS + 1, {}, ValueError, r"labels: class ids must be in \[0, 4\) .* got 4 at index 3"),
        (IMAGES, LABELS - 1, {}, ValueError, r"labels: class ids .* got -1 at index 0"),
        (IMAGES, LABELS, {"label_probs": [0.5, 0.6, -0.1, 0]}, ValueError, r"label_probs: .* >= 0, got -0\.1 for class 2"),
        (IMAGES, LABELS, {"label_probs": [0.5, math.nan, 0, 0]}, ValueError, r"label_probs: .* got nan for class 1"),
        (IMAGES, LABELS, {"label_probs": [0.3] * 4}, ValueError, r"label_probs: .* sum to 1 \(within 1e-6\), got 1\.2"),
        (IMAGES, LABELS, {"label_probs": [[0.5, 0.5]]}, ValueError, r"label_probs: expected a non-empty 1-D .* \(1, 2\)"),
        (IMAGES, LABELS, {"label_probs": []}, ValueError, r"label_probs: expected a non-empty 1-D .* \(0,\)"),
        (IMAGES, LABELS, {"label_probs": [True, False]}, TypeError, r"label_probs: expected real numbers"),
        (IMAGES, LABELS, {"label_probs": "abc"}, TypeError, r"label_probs: expected K probabilities, got str"),
        (IMAGES, LABELS, {"label_probs": [0.2] * 5}, ValueError, r"label_probs: class 4 has probability 0\.2 but no images"),
        (IMAGES, LABELS, {"num_images": 0}, ValueError, r"num_images: expected an int >= 1, got 0"),
        (IMAGES, LABELS, {"num_images": 2.0}, ValueError, r"num_images: expected an int >= 1, got 2\.0"),
        (IMAGES, LABELS, {"blank_prob": 1.5}, ValueError, r"blank_prob: expected a number in \[0, 1\], got 1\.5"),
        (IMAGES, LABELS, {"blank_prob": -0.1}, ValueError, r"blank_prob: .* got -0\.1"),
        (IMAGES, LABELS, {"blank_prob": math.nan}, ValueError, r"blank_prob: .* got nan"),
        (IMAGES, LABELS, {"grid": 0}, ValueError, r"grid: expected an int >= 1, got 0"),
        (IMAGES, LABELS, {"seed": 1.0}, ValueError, r"seed: expected an int, got 1\.0"),
    ],
)  # fmt: skip
def test_validation_errors(
    images: object, labels: object, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make_tile_images(images, labels, **{**GOOD, **kwargs})  # type: ignore[arg-type]


def test_zero_probability_class_may_have_no_images() -> None:
    _, y = make_tile_images(IMAGES, LABELS, num_images=4, label_probs=[0.25] * 4 + [0.0])
    assert y.shape == (4, 5) and y[:, 4].sum() == 0


def test_docstring_examples() -> None:
    result = doctest.testmod(longtail.data.tiles)
    assert result.failed == 0 and result.attempted >= 3
