"""A registry of the losses, which the contract tests (and the CLI's method table) iterate.

Registering a loss with :func:`register_loss` is enough for it to be checked by the generic contract
tests (identities aside): module equals function, gradcheck, saturated inputs, bf16 autocast, empty
batches, ``torch.compile``, state_dict / pickle round trips and the bad-input errors.

Classification losses (tasks ``"single-label"`` and ``"multi-label"``) take ``(logits, target)``. The
distillation and open-set losses take other inputs; their spec says which (``inputs``, the first
positional argument, and ``arguments``, the positional ones after it), so the tests can build them:

>>> from longtail.losses import LOSSES, list_losses
>>> spec = LOSSES["rpl"]
>>> spec.task, spec.inputs, spec.arguments
('open-set', 'features', ('target', 'points', 'radius'))
>>> "focal" in list_losses("single-label"), "kd" in list_losses("single-label")
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

from torch import nn

from longtail.registry import Registry

from .asymmetric import (
    AsymmetricLoss,
    AsymmetricSingleLabelLoss,
    asymmetric_loss,
    asymmetric_single_label_loss,
)
from .class_balanced import ClassBalancedLoss, class_balanced_loss
from .distillation import DKDLoss, KDLoss, dkd_loss, kd_loss
from .encouraging import EncouragingLoss, encouraging_loss
from .focal import FocalLoss, SigmoidFocalLoss, focal_loss, sigmoid_focal_loss
from .hill import HillLoss, hill_loss
from .ldam import LDAMLoss, ldam_loss
from .logit_adjustment import (
    BalancedSoftmaxLoss,
    LogitAdjustedLoss,
    PairwiseMarginLoss,
    balanced_softmax_loss,
    logit_adjusted_loss,
    pairwise_margin_loss,
)
from .reciprocal import (
    ARPLLoss,
    ConfusingSampleLoss,
    GCPLLoss,
    RPLLoss,
    arpl_loss,
    confusing_sample_loss,
    gcpl_loss,
    rpl_loss,
)
from .relational import RKDAngleLoss, RKDDistanceLoss, rkd_angle_loss, rkd_distance_loss

__all__ = ["LOSSES", "LossSpec", "get_loss", "list_losses", "register_loss"]

Task: TypeAlias = Literal["single-label", "multi-label", "distillation", "open-set"]
#: What the first positional argument holds (the network output the loss is differentiated for).
Input: TypeAlias = Literal["logits", "cosine", "embeddings", "features"]
#: Positional arguments after the input; the tests know how to build each.
Argument: TypeAlias = Literal["target", "teacher", "points", "prototypes", "radius"]
#: Keyword inputs that must be given; the tests know how to build each.
Requirement: TypeAlias = Literal["class_counts", "delta"]
#: What ``reduction="none"`` returns one loss term per.
Terms: TypeAlias = Literal["sample", "pair", "triplet", "batch"]
_CLASSIFICATION: tuple[Task, ...] = ("single-label", "multi-label")


@dataclass(frozen=True)
class LossSpec:
    """What the registry knows of a loss.

    The function is called ``function(input, *arguments, **requires, **hyperparameters)``; the module
    is built with the keyword arguments and called ``module(input, *arguments)``.

    Attributes:
        name: registry key (kebab-case).
        function: ``name_loss(logits, target, *, ...)`` (or the positional inputs of ``inputs`` and
            ``arguments``).
        module: its ``nn.Module`` twin, constructed with the same keyword arguments.
        task: ``"single-label"`` (integer targets), ``"multi-label"`` (float targets, -1 unknown),
            ``"distillation"`` (a student's output against a teacher's) or ``"open-set"``
            (features against class points). The two classification tasks take
            ``(logits, target)``.
        requires: keyword inputs that must be given (``"class_counts"``, ``"delta"``).
        inputs: the first positional argument: ``"logits"``, ``"cosine"`` (cosine similarities in
            [-1, 1], e.g. LDAM), ``"embeddings"`` ``(N, D)`` or ``"features"`` ``(N, D)``.
        arguments: the positional arguments after it, in order: ``"target"`` (``(N,)`` class
            indices, or ``(N, C)`` targets for multi-label), ``"teacher"`` (the teacher's output,
            of the kind of ``inputs``; it gets no gradient), ``"points"`` / ``"prototypes"``
            (``(C, M, D)``), ``"radius"`` (a one-element tensor). Default ``("target",)``.
        terms: what ``reduction="none"`` returns one term per: ``"sample"`` (``(N,)``, or
            ``(N, C)`` for multi-label), ``"pair"`` (``(N, N)``, needs ``N >= 2``),
            ``"triplet"`` (``(N, N, N)``, needs ``N >= 3``), or ``"batch"`` (a loss of the whole
            batch, with no ``reduction`` argument). Default ``"sample"``.
        hyperparameters: keyword names of the hyper-parameters with their defaults.
        description: one line.
        paper: short citation.

    >>> from longtail.losses import LossSpec, focal_loss, FocalLoss
    >>> spec = LossSpec("my-focal", focal_loss, FocalLoss, "single-label")
    >>> spec.inputs, spec.arguments, spec.terms
    ('logits', ('target',), 'sample')
    """

    name: str
    function: Callable[..., Any]
    module: type[nn.Module]
    task: Task
    requires: tuple[Requirement, ...] = ()
    inputs: Input = "logits"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    paper: str = ""
    arguments: tuple[Argument, ...] = ("target",)
    terms: Terms = "sample"


def _check_one(name: str, value: object, alias: Any) -> None:
    known = get_args(alias)
    if value not in known:
        raise ValueError(f"spec.{name} must be one of {known}, got {value!r}")


def _check_all(name: str, values: object, alias: Any) -> None:
    if not isinstance(values, tuple):
        raise TypeError(f"spec.{name} must be a tuple, got {type(values).__name__}")
    known = get_args(alias)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"spec.{name} has unknown entries {unknown}; known: {known}")


def _validate(name: str, spec: LossSpec) -> None:
    if not isinstance(spec, LossSpec):
        raise TypeError(f"spec must be a LossSpec, got {type(spec).__name__}")
    if name != spec.name:
        raise ValueError(f"a loss is registered under its spec.name {spec.name!r}, got {name!r}")
    _check_one("task", spec.task, Task)
    _check_one("inputs", spec.inputs, Input)
    _check_one("terms", spec.terms, Terms)
    _check_all("requires", spec.requires, Requirement)
    _check_all("arguments", spec.arguments, Argument)
    if spec.task in _CLASSIFICATION and (
        spec.inputs not in ("logits", "cosine")
        or spec.arguments != ("target",)
        or spec.terms != "sample"
    ):
        raise ValueError(
            f"a {spec.task} loss takes (logits, target): inputs 'logits' or 'cosine', arguments "
            f"('target',) and terms 'sample'; got inputs={spec.inputs!r}, "
            f"arguments={spec.arguments!r}, terms={spec.terms!r}"
        )


#: Every registered loss, by name (a :class:`~longtail.registry.Registry`: entries are validated
#: when added, unknown names raise ``KeyError`` listing the known ones).
LOSSES: Registry[LossSpec] = Registry("loss", validate=_validate)


def register_loss(spec: LossSpec, *, overwrite: bool = False) -> LossSpec:
    """Add ``spec`` to the registry (an existing name is an error unless ``overwrite``).

    The two classification tasks must keep the ``(logits, target)`` contract: ``inputs`` ``"logits"``
    or ``"cosine"``, ``arguments == ("target",)`` and ``terms == "sample"``.

    >>> from longtail.losses import get_loss, register_loss
    >>> register_loss(get_loss("focal"))
    Traceback (most recent call last):
    ...
    ValueError: a loss named 'focal' is already registered
    """
    if not isinstance(spec, LossSpec):
        raise TypeError(f"spec must be a LossSpec, got {type(spec).__name__}")
    return LOSSES.register(spec.name, spec, overwrite=overwrite)


def get_loss(name: str) -> LossSpec:
    """The spec registered under ``name`` (KeyError listing the known names otherwise).

    >>> from longtail.losses import get_loss
    >>> spec = get_loss("focal")
    >>> spec.module(gamma=1.0)
    FocalLoss(gamma=1.0, reduction='mean')
    """
    return LOSSES[name]


def list_losses(task: Task | None = None) -> list[str]:
    """Registered names, optionally only those of one task.

    >>> from longtail.losses import list_losses
    >>> list_losses("distillation")
    ['kd', 'dkd', 'rkd-distance', 'rkd-angle']
    """
    return [n for n, s in LOSSES.items() if task is None or s.task == task]


for _spec in (
    LossSpec(
        "focal",
        focal_loss,
        FocalLoss,
        "single-label",
        hyperparameters={"gamma": 2.0, "alpha": None, "weight": None},
        description="softmax focal loss: down-weights well-classified samples",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    LossSpec(
        "sigmoid-focal",
        sigmoid_focal_loss,
        SigmoidFocalLoss,
        "multi-label",
        hyperparameters={"gamma": 2.0, "alpha": 0.25, "weight": None},
        description="element-wise sigmoid focal loss (binary / multi-label), optional label weights",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    LossSpec(
        "asymmetric",
        asymmetric_loss,
        AsymmetricLoss,
        "multi-label",
        hyperparameters={"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05},
        description="asymmetric focusing and probability shifting of negatives (ASL)",
        paper="Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021",
    ),
    LossSpec(
        "asymmetric-single-label",
        asymmetric_single_label_loss,
        AsymmetricSingleLabelLoss,
        "single-label",
        hyperparameters={"gamma_pos": 0.0, "gamma_neg": 4.0, "label_smoothing": 0.1},
        description="single-label (softmax) ASL with label smoothing",
        paper="Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021",
    ),
    LossSpec(
        "hill",
        hill_loss,
        HillLoss,
        "multi-label",
        hyperparameters={"lamb": 1.5, "margin": 1.0, "gamma": 2.0},
        description="hill-shaped weighting of negatives (robust to missing labels), focal margin",
        paper=(
            "Zhang et al., Simple and Robust Loss Design for Multi-Label Learning with Missing "
            "Labels, arXiv 2112.07368, 2021"
        ),
    ),
    LossSpec(
        "logit-adjusted",
        logit_adjusted_loss,
        LogitAdjustedLoss,
        "single-label",
        requires=("class_counts",),
        hyperparameters={"tau": 1.0, "weight": None},
        description="cross-entropy on logits shifted by tau * log prior",
        paper="Menon et al., Long-tail learning via logit adjustment, ICLR 2021",
    ),
    LossSpec(
        "balanced-softmax",
        balanced_softmax_loss,
        BalancedSoftmaxLoss,
        "single-label",
        requires=("class_counts",),
        hyperparameters={"weight": None},
        description="Balanced Softmax: the logit-adjusted loss with tau = 1",
        paper="Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020",
    ),
    LossSpec(
        "pairwise-margin",
        pairwise_margin_loss,
        PairwiseMarginLoss,
        "single-label",
        requires=("delta",),
        hyperparameters={"alpha": None},
        description="pairwise-margin generalisation of logit adjustment (alpha_y, Delta_yy')",
        paper="Menon et al., Long-tail learning via logit adjustment, ICLR 2021",
    ),
    LossSpec(
        "ldam",
        ldam_loss,
        LDAMLoss,
        "single-label",
        requires=("class_counts",),
        inputs="cosine",
        hyperparameters={"max_margin": 0.5, "scale": 30.0, "weight": None},
        description="label-distribution-aware margins n_c^(-1/4) on cosine logits",
        paper="Cao et al., Learning Imbalanced Datasets with LDAM Loss, NeurIPS 2019",
    ),
    LossSpec(
        "encouraging",
        encouraging_loss,
        EncouragingLoss,
        "single-label",
        hyperparameters={"log_end": 0.75, "weight": None},
        description="cross-entropy plus a bounded bonus for confident correct predictions",
        paper="Zhao et al., Well-classified Examples are Underestimated, AAAI 2022",
    ),
    LossSpec(
        "class-balanced",
        class_balanced_loss,
        ClassBalancedLoss,
        "single-label",
        requires=("class_counts",),
        hyperparameters={"beta": 0.9999, "loss_type": "softmax", "gamma": 1.0},
        description="re-weighting by the inverse effective number of samples (softmax/sigmoid/focal)",
        paper="Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019",
    ),
    LossSpec(
        "kd",
        kd_loss,
        KDLoss,
        "distillation",
        arguments=("teacher",),
        hyperparameters={"temperature": 4.0, "standardize": False},
        description="Hinton's KD: T^2 KL(teacher || student) of softened softmaxes",
        paper="Hinton et al., Distilling the Knowledge in a Neural Network, NIPS workshop 2015",
    ),
    LossSpec(
        "dkd",
        dkd_loss,
        DKDLoss,
        "distillation",
        arguments=("teacher", "target"),
        hyperparameters={"alpha": 1.0, "beta": 8.0, "temperature": 4.0},
        description="decoupled KD: separately weighted target-class and non-target-class KL",
        paper="Zhao et al., Decoupled Knowledge Distillation, CVPR 2022",
    ),
    LossSpec(
        "rkd-distance",
        rkd_distance_loss,
        RKDDistanceLoss,
        "distillation",
        inputs="embeddings",
        arguments=("teacher",),
        terms="pair",
        description="relational KD: Huber loss of mean-normalised pairwise distances",
        paper="Park et al., Relational Knowledge Distillation, CVPR 2019",
    ),
    LossSpec(
        "rkd-angle",
        rkd_angle_loss,
        RKDAngleLoss,
        "distillation",
        inputs="embeddings",
        arguments=("teacher",),
        terms="triplet",
        hyperparameters={"chunk_size": None},
        description="relational KD: Huber loss of the cosines of the angles of all triplets",
        paper="Park et al., Relational Knowledge Distillation, CVPR 2019",
    ),
    LossSpec(
        "rpl",
        rpl_loss,
        RPLLoss,
        "open-set",
        inputs="features",
        arguments=("target", "points", "radius"),
        hyperparameters={"temperature": 1.0, "open_weight": 0.1, "adjustment": None},
        description="reciprocal points: cross-entropy on distances plus an open-space radius term",
        paper=(
            "Chen et al., Learning Open Set Network with Discriminative Reciprocal Points, "
            "ECCV 2020"
        ),
    ),
    LossSpec(
        "arpl",
        arpl_loss,
        ARPLLoss,
        "open-set",
        inputs="features",
        arguments=("target", "points", "radius"),
        hyperparameters={
            "temperature": 1.0,
            "open_weight": 0.1,
            "margin": 1.0,
            "adjustment": None,
        },
        description="adversarial reciprocal points: l2 - dot logits plus a margin on the radius",
        paper=(
            "Chen et al., Adversarial Reciprocal Points Learning for Open Set Recognition, "
            "TPAMI 2021"
        ),
    ),
    LossSpec(
        "gcpl",
        gcpl_loss,
        GCPLLoss,
        "open-set",
        inputs="features",
        arguments=("target", "prototypes"),
        hyperparameters={"temperature": 1.0, "prototype_weight": 0.1, "adjustment": None},
        description="convolutional prototype learning: distance cross-entropy plus prototype loss",
        paper="Yang et al., Robust Classification with Convolutional Prototype Learning, CVPR 2018",
    ),
    LossSpec(
        "confusing-sample",
        confusing_sample_loss,
        ConfusingSampleLoss,
        "open-set",
        inputs="features",
        arguments=("points",),
        terms="batch",
        description="ARPL+CS: exp(-mean entropy) of generated samples' distances to the points",
        paper=(
            "Chen et al., Adversarial Reciprocal Points Learning for Open Set Recognition, "
            "TPAMI 2021"
        ),
    ),
):
    register_loss(_spec)
