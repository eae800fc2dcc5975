"""Scaling of the loaded tensors with statistics of the training subset only.

:func:`standardise_images` is the default of :attr:`~longtail.engine.datasets.DataFormat.standardise`
(images to ``[0, 1]``, then per-channel mean and std; feature vectors such as the bundled digits are
used as loaded). Feature vectors of the formats that read ``data.feature_scaling`` (tables,
``.mat`` files, Mulan sets) are scaled by :func:`scale_features`:

- ``standard``: per-feature centring and scaling by the training mean and (sample) std
  (:func:`standardise_features`; a constant feature is only centred);
- ``maxabs``: each feature divided by its largest training ``|x|``, not centred, so a zero stays
  zero (sparse data stay sparse, binary and count features land in ``[0, 1]``; a constant-zero
  feature stays 0);
- ``none``: the values as loaded;
- ``auto`` (:func:`choose_feature_scaling`): ``maxabs`` when every finite training value is
  ``>= 0`` and either at least half of the training entries are 0 (:data:`SPARSE_ZERO_SHARE`) or
  every training value is 0 or 1; ``standard`` otherwise. Bag-of-words and other sparse count or
  binary data get ``maxabs``; dense real-valued features (Mulan's scene and yeast) and any feature
  set with a negative value get ``standard``.

Why: standardising a rare binary feature turns a word seen in ``k`` of ``n`` training rows into
``(1 - k/n) / sqrt(k/n (1 - k/n))`` (12.6 for 7 of 1,123 rows) and every zero into a small negative
value: the rarest features get the largest inputs. Max-abs scaling keeps them 0/1; it trains with
smaller steps than standardised inputs, so it needs a learning rate suited to the data
(docs/results.md, "Multi-label: why the baseline won on text sets"). A missing value (NaN) becomes
the training mean under every scaling.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from longtail.engine.datasets.preprocessing import Preprocessing

__all__ = [
    "FEATURE_SCALINGS",
    "SPARSE_ZERO_SHARE",
    "ScaledFeatures",
    "choose_feature_scaling",
    "scale_features",
    "standardise_features",
    "standardise_images",
    "standardise_recorded",
]

#: The values of ``data.feature_scaling``.
FEATURE_SCALINGS = ("auto", "standard", "maxabs", "none")
#: ``auto``: non-negative features with at least this share of zero training entries are sparse.
SPARSE_ZERO_SHARE = 0.5


class ScaledFeatures(NamedTuple):
    """What :func:`scale_features` returns: the scaled float32 tensors, the scaling applied
    (``auto`` resolved) and the steps as a :class:`Preprocessing` record."""

    train: Tensor
    test: Tensor
    scaling: str
    preprocessing: Preprocessing


def _as_images(x: Tensor) -> Tensor:
    """uint8 ``(N, H, W)`` / ``(N, H, W, C)`` / ``(N, C, H, W)`` -> float ``(N, C, H, W)`` in [0, 1]."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    x = x.contiguous().float()
    return x / 255.0 if x.max() > 1.0 else x


def standardise_images(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Images (``ndim >= 3``): to float ``(N, C, H, W)`` in ``[0, 1]``, then standardised with the
    training images' per-channel mean and std (std at least ``1e-6``); anything else: float32 as
    loaded. Both results are contiguous."""
    train, test, _ = _images_recorded(x_train, x_test)
    return train, test


def _images_recorded(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor, Preprocessing]:
    """:func:`standardise_images` and its :class:`Preprocessing` record."""
    if x_train.ndim < 3:
        n = int(x_train.shape[1]) if x_train.ndim == 2 else 0
        return x_train.float().contiguous(), x_test.float().contiguous(), Preprocessing.identity(n)
    divide = 255.0 if x_train.numel() and float(x_train.max()) > 1.0 else 1.0
    x_train, x_test = _as_images(x_train), _as_images(x_test)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    pre = Preprocessing.for_images(mean, std, x_train.shape[1:], divide)
    return ((x_train - mean) / std).contiguous(), ((x_test - mean) / std).contiguous(), pre


def standardise_recorded(
    standardise: object, x_train: Tensor, x_test: Tensor
) -> tuple[Tensor, Tensor, Preprocessing | None]:
    """A format's ``standardise`` applied, with its :class:`Preprocessing` record (``None`` for a
    function of a format's own, whose steps are not known)."""
    if standardise is standardise_images:
        return _images_recorded(x_train, x_test)
    if standardise is standardise_features:
        scaled = scale_features(x_train, x_test, "standard")
        return scaled.train, scaled.test, scaled.preprocessing
    train, test = standardise(x_train, x_test)  # type: ignore[operator]
    return train, test, None


def standardise_features(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Standardise feature vectors with the training split's mean and std (missing values: NaN).

    Mean and (sample) std per feature over the finite training values; a feature with std 0 is
    only centred; every non-finite value (missing) becomes 0 afterwards, i.e. the training mean.
    ``scale_features(x_train, x_test, "standard")``.
    """
    scaled = scale_features(x_train, x_test, "standard")
    return scaled.train, scaled.test


def _feature_stats(x_train: Tensor, scaling: str) -> Preprocessing:
    """The per-feature ``offset``, ``scale`` and ``fill`` of a resolved ``scaling``."""
    x = x_train.double()
    finite = torch.isfinite(x)
    n = finite.sum(0).clamp_min(1)
    mean = torch.where(finite, x, 0.0).sum(0) / n
    if scaling == "standard":
        var = torch.where(finite, (x - mean) ** 2, 0.0).sum(0) / (n - 1).clamp_min(1)
        std = var.sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return Preprocessing.for_features(mean, std, torch.zeros_like(mean))
    scale = torch.ones_like(mean)
    if scaling == "maxabs":
        top = torch.where(finite, x.abs(), 0.0).amax(0) if len(x) else scale
        scale = torch.where(top > 0, top, scale)
    return Preprocessing.for_features(torch.zeros_like(mean), scale, mean / scale)


def choose_feature_scaling(x_train: Tensor) -> str:
    """The scaling ``auto`` picks for the training features ``x_train`` (NaN: missing, ignored).

    ``"maxabs"`` when every finite value is ``>= 0`` and either at least
    :data:`SPARSE_ZERO_SHARE` of the finite entries are 0 (sparse: bag-of-words, counts) or every
    value is 0 or 1 (binary); ``"standard"`` otherwise (dense real values, any negative value, no
    finite value at all). One choice for all features.
    """
    values = x_train[torch.isfinite(x_train)]
    if values.numel() == 0 or bool((values < 0).any()):
        return "standard"
    zeros = values == 0
    sparse = float(zeros.double().mean()) >= SPARSE_ZERO_SHARE
    binary = bool((zeros | (values == 1)).all())
    return "maxabs" if sparse or binary else "standard"


def scale_features(x_train: Tensor, x_test: Tensor, scaling: str = "auto") -> ScaledFeatures:
    """Scale ``(N, D)`` feature vectors with statistics of ``x_train`` only (see the module
    docstring: ``standard``, ``maxabs``, ``none`` or ``auto``); float32, contiguous.

    Raises:
        ValueError: an unknown ``scaling`` (naming ``data.feature_scaling``).
    """
    if scaling not in FEATURE_SCALINGS:
        raise ValueError(
            f"data.feature_scaling: expected one of {', '.join(FEATURE_SCALINGS)}, got {scaling!r}"
        )
    if scaling == "auto":
        scaling = choose_feature_scaling(x_train)
    pre = _feature_stats(x_train, scaling)
    return ScaledFeatures(pre.apply(x_train), pre.apply(x_test), scaling, pre)
