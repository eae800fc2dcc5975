"""The multi-label presets: a loss component and a sampler each, with the papers' defaults."""

from __future__ import annotations

import functools
from typing import Any

from longtail.engine.methods import Method, Vocabulary, compose
from longtail.registry import Registry
from longtail.tracks.multi_label.losses import LOSS_COMPONENTS, SAMPLERS

__all__ = ["MULTILABEL_METHODS", "VOCABULARY"]

#: What multi-label recipes compose: a loss component and a sampler, nothing else.
VOCABULARY = Vocabulary(LOSS_COMPONENTS, SAMPLERS, keys=())

_compose: Any = functools.partial(compose, task="multi-label", vocabulary=VOCABULARY)

_ASL = "Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021"
_CB = "Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019"

_ML_ALL = [
    _compose(
        "bce",
        loss="bce",
        description="binary cross-entropy per label (the baseline)",
        paper="the standard multi-label baseline; " + _ASL,
    ),
    _compose(
        "focal",
        loss="focal",
        description="sigmoid focal loss (1 - p_t)^gamma BCE, gamma 2, no alpha (the focal baseline "
        "of the ASL paper: ASL with gamma+ = gamma- = 2, no margin)",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    _compose(
        "asl",
        loss="asl",
        description="asymmetric loss: gamma- 4, gamma+ 0, probability margin 0.05 (the official "
        "training script)",
        paper=_ASL,
    ),
    _compose(
        "cb-bce",
        loss="cb-bce",
        description="BCE with each label's terms weighted by the inverse effective number of its "
        "positives (beta 0.9999, weights sum to L)",
        paper=_CB,
    ),
    _compose(
        "cb-focal",
        loss="cb-focal",
        description="sigmoid focal loss (gamma 2) with each label's terms weighted by the inverse "
        "effective number of its positives (beta 0.9999)",
        paper=_CB,
    ),
    _compose(
        "hill",
        loss="hill",
        description="Hill loss: negatives -(lambda - p) p^2 (lambda 1.5), positives focal with a "
        "logit margin (margin 1, gamma 2); robust to missing labels",
        paper="Zhang et al., Simple and Robust Loss Design for Multi-Label Learning with Missing "
        "Labels, arXiv 2021",
    ),
    _compose(
        "rfs",
        loss="bce",
        sampler="rfs",
        description="BCE with repeat-factor sampling: an example repeats max over its labels of "
        "max(1, sqrt(t / f_label)) times per epoch (stochastic rounding), t = 1 / L",
        paper="Gupta et al., LVIS: A Dataset for Large Vocabulary Instance Segmentation, CVPR 2019",
    ),
]
#: Every registered multi-label method, by name, in display order.
MULTILABEL_METHODS: Registry[Method] = Registry("multi-label method")
for _m in _ML_ALL:
    MULTILABEL_METHODS.register(_m.name, _m)
