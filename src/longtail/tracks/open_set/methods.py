"""The open-set methods (:data:`OPEN_SET_METHODS`, ``longtail methods --task open-set``).

Each thresholds one *score* (higher = more likely known), stated in ``results.json``
(``composition.score``):

==============  =============================================================  ===========
method          training                                                       score
==============  =============================================================  ===========
``softmax``     cross-entropy (Hendrycks & Gimpel 2017)                        max-softmax
``mls``         the same stage as ``softmax`` (shared)                         max-logit
``mls-strong``  Vaze et al.'s closed-set recipe: label smoothing, twice the    max-logit
                steps (a longer cosine schedule), stronger augmentation
``gcpl``        prototypes: distance cross-entropy + prototype loss            max-softmax
``rpl``         reciprocal points: CE on the distances + (d - R)^2             max-softmax
``arpl``        reciprocal points: CE on d_l2 - d_dot + max(0, d - R + 1)      max-logit
``arpl-cs``     ARPL + confusing samples of a GAN (generator, discriminator)   max-logit
``*-la``        the method with the logit-adjusted training loss (tau 1)       the method's
==============  =============================================================  ===========

The scores are those of the official tests (the ARPL code returns softmax probabilities from its
RPL and GCPL losses and raw logits from ARPL's); the evaluation details also hold the AUROC of the
other score (:mod:`longtail.tracks.open_set.evaluation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from longtail.engine.methods import LossContext, Method, Param, Space
from longtail.registry import Registry
from longtail.tracks.open_set.evaluation import SCORES

__all__ = ["OPEN_SET_METHODS", "OpenSetMethod"]

_OBJECTIVES = ("ce", "gcpl", "rpl", "arpl")
_HEADS = {
    "ce": "linear",
    "gcpl": "prototypes",
    "rpl": "reciprocal-points",
    "arpl": "reciprocal-points",
}


@dataclass(frozen=True)
class OpenSetMethod(Method):
    """An open-set method: a training objective, a head, the score it thresholds.

    Attributes:
        objective: ``"ce"`` (linear head; the method's ``loss``: cross-entropy, logit-adjusted with
            a ``tau`` parameter, label-smoothed with ``label_smoothing``), ``"gcpl"``
            (:class:`longtail.heads.PrototypeHead`, :func:`longtail.losses.gcpl_loss`), ``"rpl"`` /
            ``"arpl"`` (:class:`longtail.heads.ReciprocalPointHead`, :func:`longtail.losses.rpl_loss`
            / :func:`longtail.losses.arpl_loss`).
        score: the thresholded score, one of :data:`SCORES`.
        confusing_samples: ARPL+CS: a generator and a discriminator trained with their own Adam
            optimisers in the same step (:mod:`longtail.gan`).
        strong_recipe: Vaze et al.'s closed-set recipe: ``passes`` passes over the data per epoch
            (a longer cosine schedule) and :func:`strong_augment` when ``strong_augment`` is true.

    Every open-set method finishes its stage with an evaluation-only run (:attr:`needs_stage`), so
    methods that differ only in their score share their training.
    """

    objective: str = "ce"
    score: str = "max-logit"
    confusing_samples: bool = False
    strong_recipe: bool = False

    def __post_init__(self) -> None:
        if self.objective not in _OBJECTIVES:
            raise ValueError(f"objective must be one of {_OBJECTIVES}, got {self.objective!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.confusing_samples and self.objective != "arpl":
            raise ValueError("confusing_samples needs the arpl objective (reciprocal points)")

    @property
    def needs_stage(self) -> bool:
        return True

    @property
    def head_kind(self) -> str:
        """``linear``, ``prototypes`` or ``reciprocal-points``."""
        return _HEADS[self.objective]

    def composition(self) -> dict[str, Any]:
        out = super().composition()
        out.update(
            head=self.head_kind,
            objective=self.objective,
            score=self.score,
            confusing_samples=self.confusing_samples,
            strong_recipe=self.strong_recipe,
        )
        return out

    def stage_identity(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = super().stage_identity(params)
        out.update(
            head=self.head_kind,
            objective=self.objective,
            confusing_samples=self.confusing_samples,
            strong_recipe=self.strong_recipe,
        )
        return out


def _closed_set_loss(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    """Cross-entropy of the ``ce`` objective: on ``z + tau log(prior)`` if the method has ``tau``,
    label-smoothed if it has ``label_smoothing``."""
    if "tau" in ctx.params:
        z = z + float(ctx.params["tau"]) * ctx.log_prior.to(z.dtype)
    return F.cross_entropy(z, y, label_smoothing=float(ctx.params.get("label_smoothing", 0.0)))


_MSP = (
    "Hendrycks and Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution Examples "
    "in Neural Networks, ICLR 2017"
)
_VAZE = "Vaze et al., Open-Set Recognition: a Good Closed-Set Classifier is All You Need, ICLR 2022"
_GCPL = "Yang et al., Robust Classification with Convolutional Prototype Learning, CVPR 2018"
_RPL = "Chen et al., Learning Open Set Network with Discriminative Reciprocal Points, ECCV 2020"
_ARPL = "Chen et al., Adversarial Reciprocal Points Learning for Open Set Recognition, TPAMI 2021"
_LA = "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021"

_TEMPERATURE = Param(
    1.0,
    low=0.0,
    low_open=True,
    help="temperature T of the cross-entropy on the distances",
    # RPL's and GCPL's logits are mean squared distances (/ the feature dimension): on small CNNs
    # the temperature that trains well is far below the papers' 1 (0.02 in
    # configs/openset_fashion_mnist.yaml, chosen on validation), so the space reaches down to 0.005
    space=Space(0.005, 10.0, "log"),
)
_OPEN_WEIGHT = Param(
    0.1,
    low=0.0,
    help="weight lambda of the open-space term (official 0.1)",
    space=Space(0.01, 1.0, "log"),
)
_NUM_POINTS = Param(1, low=1, help="reciprocal points per class M")
_RECIPROCAL = {"num_points": _NUM_POINTS, "temperature": _TEMPERATURE, "open_weight": _OPEN_WEIGHT}
_ARPL_PARAMS = {
    **_RECIPROCAL,
    "margin": Param(1.0, low=0.0, help="margin of the radius term", space=Space(0.0, 5.0)),
}
_GCPL_PARAMS = {
    "num_prototypes": Param(1, low=1, help="prototypes per class M"),
    "temperature": _TEMPERATURE,
    "prototype_weight": Param(
        0.1,
        low=0.0,
        help="weight of the prototype loss (ARPL code: 0.1)",
        space=Space(0.01, 1.0, "log"),
    ),
}
_CS_PARAMS = {
    "cs_weight": Param(
        0.1,
        low=0.0,
        help="weight beta of the confusing-sample loss (ARPL code: 0.1)",
        space=Space(0.01, 1.0, "log"),
    ),
    "gan_lr": Param(2e-4, low=0.0, low_open=True, help="Adam lr of generator and discriminator"),
    "noise_dim": Param(64, low=1, help="length of the generator's noise vectors"),
    "gan_width": Param(
        16, low=1, help="channels of the generator's last and the discriminator's first layer"
    ),
}
_STRONG_PARAMS = {
    "label_smoothing": Param(
        0.1,
        low=0.0,
        high=1.0,
        high_open=True,
        help="label smoothing of the cross-entropy",
        space=Space(0.0, 0.3),
    ),
    "passes": Param(
        2, low=1, help="passes over the training data per epoch (a longer cosine schedule)"
    ),
    "strong_augment": Param(True, help="random affine and cutout (strong_augment) every batch"),
}
_LA_TAU = {
    "tau": Param(
        1.0,
        low=0.0,
        help="logit adjustment of the training loss: + tau log pi",
        space=Space(0.0, 3.0),
    )
}


def _method(
    name: str,
    objective: str,
    score: str,
    description: str,
    paper: str,
    params: Mapping[str, Param] | None = None,
    *,
    la: bool = False,
    confusing_samples: bool = False,
    strong_recipe: bool = False,
) -> OpenSetMethod:
    loss_name = objective
    if confusing_samples:
        loss_name += "-cs"
    if strong_recipe:
        loss_name += "-strong"
    if la:
        loss_name += "-la"
    return OpenSetMethod(
        name=name,
        description=description,
        paper=paper + (f"; {_LA}" if la else ""),
        loss=_closed_set_loss,
        params={**(params or {}), **(_LA_TAU if la else {})},
        task="open-set",
        loss_name=loss_name,
        objective=objective,
        score=score,
        confusing_samples=confusing_samples,
        strong_recipe=strong_recipe,
    )


_OPEN_ALL = [
    _method(
        "softmax",
        "ce",
        "max-softmax",
        "cross-entropy; thresholds the maximum softmax probability (the classic baseline)",
        _MSP,
    ),
    _method(
        "mls",
        "ce",
        "max-logit",
        "the softmax stage (shared); thresholds the maximum logit",
        _VAZE,
    ),
    _method(
        "mls-strong",
        "ce",
        "max-logit",
        "Vaze et al.'s closed-set recipe scaled down: label smoothing 0.1, 2 passes per epoch "
        "(twice the cosine schedule), random affine + cutout; thresholds the maximum logit",
        _VAZE,
        _STRONG_PARAMS,
        strong_recipe=True,
    ),
    _method(
        "gcpl",
        "gcpl",
        "max-softmax",
        "one prototype per class, distance cross-entropy + 0.1 x prototype loss; thresholds the "
        "maximum softmax of minus the distances (the ARPL code's GCPL test)",
        _GCPL,
        _GCPL_PARAMS,
    ),
    _method(
        "rpl",
        "rpl",
        "max-softmax",
        "reciprocal points (M 1), CE on the distances + 0.1 (d_y - R)^2; thresholds the maximum "
        "softmax of the distances (the official test)",
        _RPL,
        _RECIPROCAL,
    ),
    _method(
        "arpl",
        "arpl",
        "max-logit",
        "reciprocal points, CE on d_l2 - d_dot + 0.1 max(0, d_y - R + 1); thresholds the maximum "
        "logit",
        _ARPL,
        _ARPL_PARAMS,
    ),
    _method(
        "arpl-cs",
        "arpl",
        "max-logit",
        "ARPL plus confusing samples: a generator (Adam, lr 2e-4) against a discriminator and the "
        "reciprocal points, the classifier also trained to be unsure on them (beta 0.1)",
        _ARPL,
        {**_ARPL_PARAMS, **_CS_PARAMS},
        confusing_samples=True,
    ),
    _method(
        "softmax-la",
        "ce",
        "max-softmax",
        "logit-adjusted cross-entropy (tau 1); thresholds the maximum softmax probability of f(x)",
        _MSP,
        la=True,
    ),
    _method(
        "mls-la",
        "ce",
        "max-logit",
        "the softmax-la stage (shared); thresholds the maximum logit of f(x)",
        _VAZE,
        la=True,
    ),
    _method(
        "rpl-la",
        "rpl",
        "max-softmax",
        "RPL with the logit-adjusted cross-entropy (d / T + tau log pi, tau 1)",
        _RPL,
        _RECIPROCAL,
        la=True,
    ),
    _method(
        "arpl-la",
        "arpl",
        "max-logit",
        "ARPL with the logit-adjusted cross-entropy (tau 1)",
        _ARPL,
        _ARPL_PARAMS,
        la=True,
    ),
]

#: Every registered open-set method, by name, in display order (the kind's ``methods``).
OPEN_SET_METHODS: Registry[Method] = Registry("open-set method")
for _m in _OPEN_ALL:
    OPEN_SET_METHODS.register(_m.name, _m)
