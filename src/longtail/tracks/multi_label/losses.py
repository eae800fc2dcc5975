"""The multi-label loss components recipes compose (``loss:`` of a multi-label recipe).

Logits ``(N, L)``, targets ``(N, L)`` in {0, 1} or -1 (a hidden label, ignored by the library's
losses); ``ctx.class_counts`` holds each label's positive count in the training split. ``"mean"``
everywhere: the sum over the known (not hidden) entries divided by their number.
"""

from __future__ import annotations

from torch import Tensor

from longtail.engine.methods import BETA_CHOICES, LossComponent, LossContext, LossFn, Param, Space
from longtail.losses import class_balanced_weights, sigmoid_focal_loss
from longtail.registry import Registry

__all__ = ["LOSS_COMPONENTS", "SAMPLERS"]

#: The samplers of multi-label recipes (``rfs``: repeat-factor sampling).
SAMPLERS = ("instance", "rfs")


def _class_balanced(gamma_key: str | None) -> LossFn:
    """BCE (or the sigmoid focal loss) with each label weighted by its class-balanced weight."""

    def fn(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
        key = ("cb-weights", ctx.params["beta"], z.device)
        w = ctx.cache.get(key)
        if w is None:
            w = class_balanced_weights(ctx.class_counts, beta=ctx.params["beta"]).to(z.device)
            ctx.cache[key] = w
        gamma = 0.0 if gamma_key is None else ctx.params[gamma_key]
        out: Tensor = sigmoid_focal_loss(z, y, gamma=gamma, alpha=None, weight=w)
        return out

    return fn


_GAMMA = Param(2.0, low=0.0, help="focusing parameter", space=Space(0.0, 5.0))
_BETA = Param(
    0.9999,
    low=0.0,
    high=1.0,
    high_open=True,
    help="effective-number beta (per-label positives)",
    space=BETA_CHOICES,
)

#: The training losses multi-label recipes compose, by name.
LOSS_COMPONENTS: Registry[LossComponent] = Registry("multi-label loss component")
for _c in (
    # gamma 0 without alpha is BCE; the library masks the hidden (-1) entries
    LossComponent.from_spec(
        "bce",
        "sigmoid-focal",
        "binary cross-entropy",
        fixed={"gamma": 0.0, "alpha": None},
        sigmoid=True,
    ),
    LossComponent.from_spec(
        "focal",
        "sigmoid-focal",
        "sigmoid focal loss without alpha",
        {"gamma": _GAMMA},
        fixed={"alpha": None},
        sigmoid=True,
    ),
    LossComponent.from_spec(
        "asl",
        "asymmetric",
        "asymmetric loss",
        {
            "gamma_pos": Param(0.0, low=0.0, help="focusing of positives", space=Space(0.0, 2.0)),
            "gamma_neg": Param(4.0, low=0.0, help="focusing of negatives", space=Space(0.0, 6.0)),
            "clip": Param(
                0.05,
                low=0.0,
                high=1.0,
                high_open=True,
                help="probability margin m",
                space=Space(0.0, 0.2),
            ),
        },
        sigmoid=True,
    ),
    LossComponent(
        "cb-bce",
        _class_balanced(None),
        "binary cross-entropy, each label weighted by its class-balanced weight",
        {"beta": _BETA},
        sigmoid=True,
    ),
    LossComponent(
        "cb-focal",
        _class_balanced("gamma"),
        "sigmoid focal loss, each label weighted by its class-balanced weight",
        {"beta": _BETA, "gamma": _GAMMA},
        sigmoid=True,
    ),
    LossComponent.from_spec(
        "hill",
        "hill",
        "Hill loss: focal-margin positives, -(lambda - p) p^2 negatives",
        {
            "lamb": Param(1.5, low=1.0, help="lambda of the negative term", space=Space(1.0, 2.5)),
            "margin": Param(
                1.0, low=0.0, help="logit margin of the positive term", space=Space(0.0, 2.0)
            ),
            "gamma": Param(
                2.0, low=0.0, help="focusing of the positive term", space=Space(0.0, 4.0)
            ),
        },
        sigmoid=True,
    ),
):
    LOSS_COMPONENTS.register(_c.name, _c)
