"""The single-label loss components recipes compose (``loss:`` of a single-label recipe).

Each derives from a library loss (:meth:`LossComponent.from_spec`) except three that are
compositions of their own: ``ce`` (with deferred re-weighting's weights, the papers' ``sum_i w_{y_i}
CE_i / N``), ``inv-freq`` and ``el-la`` (the encouraging loss on logit-adjusted logits).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.engine.methods import BETA_CHOICES, LossComponent, LossContext, Param, Space
from longtail.losses import encouraging_loss, inverse_frequency_weights, logit_adjusted_loss
from longtail.registry import Registry

__all__ = ["LOSS_COMPONENTS", "SAMPLERS"]

#: The samplers of single-label recipes (see :mod:`longtail.data`).
SAMPLERS = ("instance", "class-balanced", "sqrt", "power", "progressive", "drs", "smote")


def _cross_entropy(z: Tensor, y: Tensor, ctx: LossContext, weight: Tensor | None) -> Tensor:
    """Softmax cross-entropy; with ``weight``, ``sum_i w_{y_i} CE_i / N`` (the papers' convention).

    Unweighted it is ``F.cross_entropy``; weighted it is the library's
    :func:`longtail.losses.logit_adjusted_loss` with ``tau = 0`` (plain CE) and ``weight``, which
    divides by N, unlike ``F.cross_entropy(weight=...)`` (divides by ``sum_i w_{y_i}``).
    """
    if weight is None:
        return F.cross_entropy(z, y)
    out: Tensor = logit_adjusted_loss(z, y, class_counts=ctx.class_counts, tau=0.0, weight=weight)
    return out


def _erm(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    return _cross_entropy(z, y, ctx, ctx.weight)


def _inv_freq(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    w = torch.as_tensor(inverse_frequency_weights(ctx.class_counts), dtype=z.dtype).to(z.device)
    return _cross_entropy(z, y, ctx, w)


def _el_la(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    adjusted = z + ctx.params["tau"] * ctx.log_prior.to(z.dtype)
    out: Tensor = encouraging_loss(adjusted, y, log_end=ctx.params["log_end"], weight=ctx.weight)
    return out


def _no_shift(ctx: LossContext) -> None:
    """Cross-entropy on the logits themselves."""
    return None


def _tau_log_prior(ctx: LossContext) -> Tensor:
    """Logit adjustment's ``tau log(prior)``."""
    return float(ctx.params["tau"]) * ctx.log_prior


def _log_prior(ctx: LossContext) -> Tensor:
    """Balanced softmax's ``log(prior)``."""
    return ctx.log_prior


_LOG_END = Param(
    0.75,
    low=0.0,
    high=1.0,
    low_open=True,
    help="conservative-bonus log end",
    space=Space(0.3, 1.0),
)
_TAU = Param(1.0, low=0.0, help="logit-adjustment temperature", space=Space(0.0, 3.0))
_BETA = Param(
    0.9999, low=0.0, high=1.0, high_open=True, help="effective-number beta", space=BETA_CHOICES
)
_GAMMA = Param(2.0, low=0.0, help="focusing parameter", space=Space(0.0, 5.0))

#: The training losses single-label recipes compose, by name.
LOSS_COMPONENTS: Registry[LossComponent] = Registry("single-label loss component")
for _c in (
    LossComponent("ce", _erm, "softmax cross-entropy", drw_weight=True, logit_shift=_no_shift),
    LossComponent("inv-freq", _inv_freq, "cross-entropy weighted by inverse class frequency"),
    LossComponent.from_spec(
        "cb-softmax",
        "class-balanced",
        "cross-entropy weighted by the inverse effective number of samples",
        {"beta": _BETA},
        fixed={"loss_type": "softmax"},
    ),
    LossComponent.from_spec(
        "cb-focal",
        "class-balanced",
        "class-balanced sigmoid focal loss",
        {"beta": _BETA, "gamma": dataclasses.replace(_GAMMA, default=1.0)},
        fixed={"loss_type": "focal"},
        other_params={
            "prior_bias": Param(
                True,
                help="start the classifier bias at the prior -log(C - 1) (Cui et al.'s code)",
            ),
        },
        sigmoid=True,
    ),
    LossComponent.from_spec(
        "focal", "focal", "softmax focal loss", {"gamma": _GAMMA}, drw_weight=True
    ),
    LossComponent.from_spec(
        "ldam",
        "ldam",
        "label-distribution-aware margin loss on cosine logits",
        {
            "max_margin": Param(
                0.5, low=0.0, help="largest margin (rarest class)", space=Space(0.1, 1.5)
            ),
            "scale": Param(
                30.0, low=0.0, low_open=True, help="logit scale s", space=Space(5.0, 64.0, "log")
            ),
        },
        drw_weight=True,
        head="cosine",
    ),
    LossComponent.from_spec(
        "la",
        "logit-adjusted",
        "logit-adjusted cross-entropy",
        {"tau": _TAU},
        drw_weight=True,
        logit_shift=_tau_log_prior,
    ),
    LossComponent.from_spec(
        "balanced-softmax",
        "balanced-softmax",
        "cross-entropy on f(x) + log prior",
        drw_weight=True,
        logit_shift=_log_prior,
    ),
    LossComponent.from_spec(
        "el", "encouraging", "encouraging loss", {"log_end": _LOG_END}, drw_weight=True
    ),
    LossComponent(
        "el-la",
        _el_la,
        "encouraging loss on logit-adjusted logits",
        {"log_end": _LOG_END, "tau": _TAU},
        drw_weight=True,
    ),
):
    LOSS_COMPONENTS.register(_c.name, _c)
