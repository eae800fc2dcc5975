"""The method registry: every long-tail method the engine can train, with its paper's defaults.

A :class:`Method` bundles everything that distinguishes one method from plain training:

- ``head``: ``"linear"`` or ``"cosine"`` (LDAM's normalised classifier);
- ``loss``: the training loss as a function ``loss(logits, target, ctx)`` of the logits, the integer
  targets and a :class:`LossContext` (epoch, class counts, hyper-parameters, the deferred
  re-weighting weights of the epoch);
- ``sampler``: how the training set is drawn each epoch (``"instance"``, ``"class-balanced"``,
  ``"sqrt"``, ``"progressive"``; see :mod:`longtail.data`);
- ``posthoc``: what happens after training (``"logit-adjust"`` at test time, ``"tau-norm"`` of the
  classifier rows) or ``None``;
- ``drw``: whether the loss receives class-balanced weights for the last epochs (Cao et al. 2019);
- ``params``: the hyper-parameters with their paper defaults (:class:`Param`), overridable from the
  ``method_params`` section of a config.

``METHODS`` maps names to methods; the engine's contract test trains every entry, so a method added
here is tested without new test code. To add one::

    METHODS["my-method"] = Method(
        name="my-method", description="...", paper="Author et al., Venue Year",
        loss=lambda z, y, ctx: my_loss(z, y, alpha=ctx.params["alpha"]),
        params={"alpha": Param(0.5, low=0.0)},
    )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "METHODS",
    "LossContext",
    "Method",
    "Param",
    "check_method_params",
]

SamplerKind = Literal["instance", "class-balanced", "sqrt", "progressive"]
HeadKind = Literal["linear", "cosine"]
PosthocKind = Literal["logit-adjust", "tau-norm"]


@dataclass(frozen=True)
class Param:
    """A hyper-parameter: its default and the allowed range (bounds inclusive unless ``*_open``)."""

    default: float | int | bool | str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    help: str = ""

    def check(self, key: str, value: Any) -> Any:
        """Validate ``value`` (same type as the default, in range); raise ValueError naming ``key``."""
        d = self.default
        if isinstance(d, bool):
            if not isinstance(value, bool):
                raise ValueError(f"config key '{key}': expected true/false, got {value!r}")
            return value
        if isinstance(d, str):
            if not isinstance(value, str):
                raise ValueError(f"config key '{key}': expected a string, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                f"config key '{key}': expected a number, got {value!r} ({type(value).__name__})"
            )
        if isinstance(d, int) and not isinstance(value, int):
            raise ValueError(f"config key '{key}': expected an integer, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"config key '{key}': must be finite, got {value!r}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            op = ">" if self.low_open else ">="
            raise ValueError(f"config key '{key}': must be {op} {self.low}, got {value!r}")
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            op = "<" if self.high_open else "<="
            raise ValueError(f"config key '{key}': must be {op} {self.high}, got {value!r}")
        return float(value) if isinstance(d, float) else value


@dataclass(frozen=True)
class LossContext:
    """What a method's loss may use besides logits and targets.

    Attributes:
        epoch: current epoch (0-based).
        total_epochs: number of training epochs.
        class_counts: training counts per class, float tensor ``(C,)`` on the logits' device.
        log_prior: ``log(n_c / sum n)``, ``(C,)``.
        params: the method's resolved hyper-parameters.
        weight: per-class weights of this epoch from deferred re-weighting, or ``None``.
    """

    epoch: int
    total_epochs: int
    class_counts: Tensor
    log_prior: Tensor
    params: Mapping[str, Any]
    weight: Tensor | None = None


LossFn = Callable[[Tensor, Tensor, LossContext], Tensor]


@dataclass(frozen=True)
class Method:
    """A single-label long-tail method (see the module docstring for the fields)."""

    name: str
    description: str
    paper: str
    loss: LossFn
    params: Mapping[str, Param] = field(default_factory=dict)
    head: HeadKind = "linear"
    sampler: SamplerKind = "instance"
    posthoc: PosthocKind | None = None
    drw: bool = False
    task: str = "single-label"

    @property
    def citation(self) -> str:
        """Short form of ``paper``: ``"Author et al., Venue Year"`` per cited work."""
        parts = []
        for ref in self.paper.split(";"):
            bits = [b.strip() for b in ref.split(",")]
            parts.append(f"{bits[0]}, {bits[-1]}" if len(bits) > 2 else ref.strip())
        return "; ".join(parts)

    @property
    def defaults(self) -> dict[str, Any]:
        """The paper defaults of the hyper-parameters."""
        return {k: p.default for k, p in self.params.items()}

    def resolve_params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with validated ``overrides``."""
        out = self.defaults
        for k, v in (overrides or {}).items():
            if k not in self.params:
                known = ", ".join(self.params) or "none"
                raise ValueError(
                    f"config key 'method_params.{self.name}.{k}': unknown hyper-parameter "
                    f"(known: {known})"
                )
            out[k] = self.params[k].check(f"method_params.{self.name}.{k}", v)
        return out

    def build_criterion(
        self,
        class_counts: Tensor | list[int],
        *,
        total_epochs: int,
        params: Mapping[str, Any] | None = None,
    ) -> Criterion:
        """The training loss of this method for given class counts (see :class:`Criterion`)."""
        return Criterion(self, class_counts, total_epochs=total_epochs, params=params)


class Criterion:
    """A method's loss bound to the training class counts: ``criterion(logits, target, epoch)``.

    Holds the deferred re-weighting schedule when ``method.drw`` (class-balanced weights with
    ``drw_beta`` from epoch ``int(drw_start_fraction * total_epochs)``).
    """

    def __init__(
        self,
        method: Method,
        class_counts: Tensor | list[int],
        *,
        total_epochs: int,
        params: Mapping[str, Any] | None = None,
    ):
        self.method = method
        self.params = method.resolve_params(params)
        counts = torch.as_tensor(class_counts, dtype=torch.float32)
        if counts.ndim != 1 or bool((counts <= 0).any()):
            raise ValueError(f"class_counts must be positive, got {counts.tolist()}")
        self.counts_list = [int(c) for c in counts.tolist()]
        self.total_epochs = int(total_epochs)
        self._counts = counts
        self._log_prior = torch.log(counts / counts.sum())
        self._drw: Any = None
        if method.drw:
            from longtail.losses import DeferredReweighting

            start = int(self.params["drw_start_fraction"] * self.total_epochs)
            self._drw = DeferredReweighting(
                self.counts_list,
                total_epochs=self.total_epochs,
                start_epoch=min(start, self.total_epochs - 1) if self.total_epochs > 1 else 0,
                beta=self.params["drw_beta"],
            )
        self._cache: dict[tuple[torch.device, int], LossContext] = {}

    def context(self, epoch: int, device: torch.device) -> LossContext:
        """The (cached) :class:`LossContext` of ``epoch`` with tensors on ``device``."""
        key = (device, epoch)
        ctx = self._cache.get(key)
        if ctx is None:
            weight = None
            if self._drw is not None:
                w = self._drw.weight(int(epoch))
                weight = None if w is None else torch.as_tensor(w, dtype=torch.float32).to(device)
            ctx = LossContext(
                int(epoch),
                self.total_epochs,
                self._counts.to(device),
                self._log_prior.to(device),
                self.params,
                weight,
            )
            self._cache[key] = ctx
        return ctx

    def __call__(self, logits: Tensor, target: Tensor, epoch: int) -> Tensor:
        ctx = self.context(epoch, logits.device)
        if logits.dtype != torch.float32:
            logits = logits.float()
        return self.method.loss(logits, target, ctx)


# --------------------------------------------------------------------------------------------------
# losses of the registry entries (import the library lazily: the registry loads without it)


def _cross_entropy(z: Tensor, y: Tensor, ctx: LossContext, weight: Tensor | None) -> Tensor:
    """Softmax cross-entropy; with ``weight``, ``sum_i w_{y_i} CE_i / N`` (the papers' convention).

    Unweighted it is ``F.cross_entropy``; weighted it is the library's
    :func:`longtail.losses.logit_adjusted_loss` with ``tau = 0`` (plain CE) and ``weight``, which
    divides by N, unlike ``F.cross_entropy(weight=...)`` (divides by ``sum_i w_{y_i}``).
    """
    if weight is None:
        return F.cross_entropy(z, y)
    from longtail.losses import logit_adjusted_loss

    out: Tensor = logit_adjusted_loss(z, y, class_counts=ctx.class_counts, tau=0.0, weight=weight)
    return out


def _erm(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    return _cross_entropy(z, y, ctx, ctx.weight)


def _inv_freq(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import inverse_frequency_weights

    w = torch.as_tensor(inverse_frequency_weights(ctx.class_counts), dtype=z.dtype).to(z.device)
    return _cross_entropy(z, y, ctx, w)


def _cb(loss_type: str) -> LossFn:
    def fn(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
        from longtail.losses import class_balanced_loss

        kwargs: dict[str, Any] = {"beta": ctx.params["beta"], "loss_type": loss_type}
        if loss_type == "focal":
            kwargs["gamma"] = ctx.params["gamma"]
        out: Tensor = class_balanced_loss(z, y, class_counts=ctx.class_counts, **kwargs)
        return out

    return fn


def _focal(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import focal_loss

    out: Tensor = focal_loss(z, y, gamma=ctx.params["gamma"], weight=ctx.weight)
    return out


def _ldam(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import ldam_loss

    out: Tensor = ldam_loss(
        z,
        y,
        class_counts=ctx.class_counts,
        max_margin=ctx.params["max_margin"],
        scale=ctx.params["scale"],
        weight=ctx.weight,
    )
    return out


def _la_loss(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import logit_adjusted_loss

    out: Tensor = logit_adjusted_loss(z, y, class_counts=ctx.class_counts, tau=ctx.params["tau"])
    return out


def _balanced_softmax(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import balanced_softmax_loss

    out: Tensor = balanced_softmax_loss(z, y, class_counts=ctx.class_counts)
    return out


def _el(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import encouraging_loss

    out: Tensor = encouraging_loss(z, y, log_end=ctx.params["log_end"], weight=ctx.weight)
    return out


def _el_la(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import encouraging_loss

    adjusted = z + ctx.params["tau"] * ctx.log_prior.to(z.dtype)
    out: Tensor = encouraging_loss(adjusted, y, log_end=ctx.params["log_end"])
    return out


_DRW_PARAMS = {
    "drw_beta": Param(0.9999, low=0.0, high=1.0, high_open=True, help="CB beta of the DRW weights"),
    "drw_start_fraction": Param(
        0.8, low=0.0, high=1.0, high_open=True, help="DRW starts at this fraction of the epochs"
    ),
}
_LOG_END = Param(0.75, low=0.0, high=1.0, low_open=True, help="conservative-bonus log end")
_TAU = Param(1.0, low=0.0, help="logit-adjustment temperature")

_CB = "Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019"
_LDAM = "Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, NeurIPS 2019"
_LA = "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021"
_DECOUPLE = (
    "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020"
)
_EL = "Zhao et al., Well-Classified Examples are Underestimated in Classification with Deep Neural Networks, AAAI 2022"

_ALL = [
    Method(
        "erm",
        "cross-entropy on the imbalanced data, instance-balanced sampling (the baseline)",
        "Vapnik, Principles of Risk Minimization for Learning Theory, NIPS 1991",
        _erm,
    ),
    Method(
        "cb-resample",
        "cross-entropy with class-balanced re-sampling (every class equally likely per draw)",
        _DECOUPLE,
        _erm,
        sampler="class-balanced",
    ),
    Method(
        "sqrt-resample",
        "cross-entropy with square-root re-sampling (class drawn with probability ~ sqrt(n_c))",
        "Mahajan et al., Exploring the Limits of Weakly Supervised Pretraining, ECCV 2018; "
        + _DECOUPLE,
        _erm,
        sampler="sqrt",
    ),
    Method(
        "inv-freq",
        "cross-entropy re-weighted by inverse class frequency (weights sum to C)",
        "Huang et al., Learning Deep Representation for Imbalanced Classification, CVPR 2016",
        _inv_freq,
    ),
    Method(
        "cb-softmax",
        "softmax cross-entropy re-weighted by the inverse effective number of samples",
        _CB,
        _cb("softmax"),
        params={
            "beta": Param(0.9999, low=0.0, high=1.0, high_open=True, help="effective-number beta")
        },
    ),
    Method(
        "cb-focal",
        "class-balanced (sigmoid) focal loss, beta 0.9999, gamma 1 (from the paper's grid)",
        _CB,
        _cb("focal"),
        params={
            "beta": Param(0.9999, low=0.0, high=1.0, high_open=True, help="effective-number beta"),
            "gamma": Param(1.0, low=0.0, help="focusing parameter"),
        },
    ),
    Method(
        "focal",
        "softmax focal loss -(1 - p_y)^gamma log p_y, gamma 2 (the paper's default)",
        "Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
        _focal,
        params={"gamma": Param(2.0, low=0.0, help="focusing parameter")},
    ),
    Method(
        "drw",
        "cross-entropy, class-balanced weights (beta 0.9999) for the last 20% of epochs",
        _LDAM,
        _erm,
        params=dict(_DRW_PARAMS),
        drw=True,
    ),
    Method(
        "ldam-drw",
        "label-distribution-aware margins (max 0.5, scale 30) on a cosine head, with DRW",
        _LDAM,
        _ldam,
        params={
            "max_margin": Param(0.5, low=0.0, help="largest margin (rarest class)"),
            "scale": Param(30.0, low=0.0, low_open=True, help="logit scale s"),
            **_DRW_PARAMS,
        },
        head="cosine",
        drw=True,
    ),
    Method(
        "la-loss",
        "logit-adjusted cross-entropy on f(x) + tau log(prior), tau 1; predicts with f(x)",
        _LA,
        _la_loss,
        params={"tau": _TAU},
    ),
    Method(
        "la-posthoc",
        "plain training; predicts argmax f(x) - tau log(prior) at test time, tau 1",
        _LA,
        _erm,
        params={"tau": _TAU},
        posthoc="logit-adjust",
    ),
    Method(
        "tau-norm",
        "plain training; classifier rows divided by their norm^tau after training (tau 1, bias dropped)",
        _DECOUPLE,
        _erm,
        params={
            "tau": Param(1.0, low=0.0, help="normalisation exponent"),
            "drop_bias": Param(True, help="set the classifier bias to zero after normalising"),
        },
        posthoc="tau-norm",
    ),
    Method(
        "balanced-softmax",
        "softmax cross-entropy on f(x) + log(prior) (the LA loss with tau 1)",
        "Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020",
        _balanced_softmax,
    ),
    Method(
        "el",
        "encouraging loss: CE plus a conservative bonus log(1 - p_y), log end 0.75",
        _EL,
        _el,
        params={"log_end": _LOG_END},
    ),
    Method(
        "el-drw",
        "encouraging loss with deferred class-balanced re-weighting (last 20% of epochs)",
        _EL + "; " + _LDAM,
        _el,
        params={"log_end": _LOG_END, **_DRW_PARAMS},
        drw=True,
    ),
    Method(
        "el-la",
        "encouraging loss on logit-adjusted logits f(x) + tau log(prior), tau 1",
        _EL + "; " + _LA,
        _el_la,
        params={"log_end": _LOG_END, "tau": _TAU},
    ),
]

#: Every registered method, by name, in display order.
METHODS: dict[str, Method] = {m.name: m for m in _ALL}


def check_method_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate overrides of method ``name``; raise ValueError naming the config key."""
    if name not in METHODS:
        raise ValueError(f"config key 'method_params.{name}': unknown method")
    return METHODS[name].resolve_params(params)
