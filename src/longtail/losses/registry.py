"""A registry of the losses, which the contract tests (and the CLI's method table) iterate.

Registering a loss with :func:`register_loss` is enough for it to be checked by the generic contract
tests (identities aside): module equals function, gradcheck, saturated logits, bf16 autocast, empty
batches, ``torch.compile``, state_dict / pickle round trips and the bad-input errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from torch import nn

from .asymmetric import (
    AsymmetricLoss,
    AsymmetricSingleLabelLoss,
    asymmetric_loss,
    asymmetric_single_label_loss,
)
from .class_balanced import ClassBalancedLoss, class_balanced_loss
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

__all__ = ["LOSSES", "LossSpec", "get_loss", "list_losses", "register_loss"]

Task: TypeAlias = Literal["single-label", "multi-label"]
#: Inputs a loss needs besides logits and targets; the tests know how to build each.
Requirement: TypeAlias = Literal["class_counts", "delta"]
_REQUIREMENTS = ("class_counts", "delta")


@dataclass(frozen=True)
class LossSpec:
    """What the registry knows of a loss.

    Attributes:
        name: registry key (kebab-case).
        function: ``name_loss(logits, target, *, ...)``.
        module: its ``nn.Module`` twin, constructed with the same keyword arguments.
        task: ``"single-label"`` (integer targets) or ``"multi-label"`` (float targets, -1 unknown).
        requires: keyword inputs that must be given (``"class_counts"``, ``"delta"``).
        inputs: ``"logits"`` or ``"cosine"`` (cosine similarities in [-1, 1], e.g. LDAM).
        hyperparameters: keyword names of the hyper-parameters with their defaults.
        description: one line.
        paper: short citation.
    """

    name: str
    function: Callable[..., Any]
    module: type[nn.Module]
    task: Task
    requires: tuple[Requirement, ...] = ()
    inputs: Literal["logits", "cosine"] = "logits"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    paper: str = ""


_REGISTRY: dict[str, LossSpec] = {}


class _ReadOnly(Mapping[str, LossSpec]):
    def __getitem__(self, key: str) -> LossSpec:
        try:
            return _REGISTRY[key]
        except KeyError:
            raise KeyError(f"unknown loss {key!r}; known: {sorted(_REGISTRY)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)


#: Read-only view of all registered losses, by name.
LOSSES: Mapping[str, LossSpec] = _ReadOnly()


def register_loss(spec: LossSpec, *, overwrite: bool = False) -> LossSpec:
    """Add ``spec`` to the registry (an existing name is an error unless ``overwrite``)."""
    if not isinstance(spec, LossSpec):
        raise TypeError(f"spec must be a LossSpec, got {type(spec).__name__}")
    if spec.task not in ("single-label", "multi-label"):
        raise ValueError(f"spec.task must be 'single-label' or 'multi-label', got {spec.task!r}")
    unknown = [r for r in spec.requires if r not in _REQUIREMENTS]
    if unknown:
        raise ValueError(f"spec.requires has unknown entries {unknown}; known: {_REQUIREMENTS}")
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"a loss named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_loss(name: str) -> LossSpec:
    """The spec registered under ``name`` (KeyError listing the known names otherwise)."""
    return LOSSES[name]


def list_losses(task: Task | None = None) -> list[str]:
    """Registered names, optionally only those of one task."""
    return [n for n, s in _REGISTRY.items() if task is None or s.task == task]


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
):
    register_loss(_spec)
