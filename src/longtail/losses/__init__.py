"""Losses and class weighting for long-tailed and multi-label classification.

Each loss is a function ``name_loss(logits, target, *, ...)`` and an ``nn.Module`` twin with the same
keyword arguments. All compute in float32 (or float64) in log space, are finite for logits of +-1e4,
accept ``reduction="none" | "mean" | "sum"`` and document what ``"mean"`` divides by. See docs/losses.md.
Their value checks (labels in range, finite non-negative weights, ...) read tensors on the host;
``value_checks(False)`` turns them off in a training loop that validated its data once.
"""

from __future__ import annotations

from ..heads import CosineClassifier
from ._common import set_value_checks, value_checks, value_checks_enabled
from .asymmetric import (
    AsymmetricLoss,
    AsymmetricSingleLabelLoss,
    asymmetric_loss,
    asymmetric_single_label_loss,
)
from .class_balanced import (
    ClassBalancedLoss,
    DeferredReweighting,
    class_balanced_loss,
    class_balanced_weights,
    inverse_frequency_weights,
    inverse_sqrt_frequency_weights,
)
from .distillation import DKDLoss, KDLoss, dkd_loss, kd_loss
from .encouraging import EncouragingLoss, encouraging_loss
from .focal import FocalLoss, SigmoidFocalLoss, focal_loss, sigmoid_focal_loss
from .hill import HillLoss, hill_loss
from .ldam import LDAMLoss, ldam_loss, ldam_margins
from .logit_adjustment import (
    BalancedSoftmaxLoss,
    LogitAdjustedLoss,
    PairwiseMarginLoss,
    balanced_softmax_loss,
    logit_adjusted_loss,
    logit_adjustment_margins,
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
from .registry import LOSSES, LossSpec, get_loss, list_losses, register_loss
from .relational import (
    RKDAngleLoss,
    RKDDistanceLoss,
    RKDLoss,
    rkd_angle_loss,
    rkd_distance_loss,
)
from .triplets import TripletStrategy, mine_triplets

__all__ = [
    "LOSSES",
    "ARPLLoss",
    "AsymmetricLoss",
    "AsymmetricSingleLabelLoss",
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "ConfusingSampleLoss",
    "CosineClassifier",
    "DKDLoss",
    "DeferredReweighting",
    "EncouragingLoss",
    "FocalLoss",
    "GCPLLoss",
    "HillLoss",
    "KDLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossSpec",
    "PairwiseMarginLoss",
    "RKDAngleLoss",
    "RKDDistanceLoss",
    "RKDLoss",
    "RPLLoss",
    "SigmoidFocalLoss",
    "TripletStrategy",
    "arpl_loss",
    "asymmetric_loss",
    "asymmetric_single_label_loss",
    "balanced_softmax_loss",
    "class_balanced_loss",
    "class_balanced_weights",
    "confusing_sample_loss",
    "dkd_loss",
    "encouraging_loss",
    "focal_loss",
    "gcpl_loss",
    "get_loss",
    "hill_loss",
    "inverse_frequency_weights",
    "inverse_sqrt_frequency_weights",
    "kd_loss",
    "ldam_loss",
    "ldam_margins",
    "list_losses",
    "logit_adjusted_loss",
    "logit_adjustment_margins",
    "mine_triplets",
    "pairwise_margin_loss",
    "register_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "rpl_loss",
    "set_value_checks",
    "sigmoid_focal_loss",
    "value_checks",
    "value_checks_enabled",
]
