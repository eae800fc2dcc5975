"""A method's prediction rule: from a trained network's outputs to what the method predicts.

A method's prediction is more than its network: logit adjustment subtracts ``tau log prior``, a
cosine head's logits are multiplied by the loss's scale, SLA aggregates the logits of the
transformed copies (or reads its distilled head), open-set methods threshold their own score,
multi-label methods threshold a probability per label. :class:`PredictionRule` states this as
plain JSON; :func:`rule_logits` applies it. The engine's evaluation of every task calls the same
function, so a model bundle (:mod:`longtail.engine.bundle`) predicts exactly what was evaluated.

==================  ==================================================================
``output``          what a prediction is
==================  ==================================================================
``class``           one class: ``argmax`` of the logits; probabilities ``softmax(z / T)``
``labels``          a set of labels: ``sigmoid(z / T) >= threshold`` per label
``class-or-unknown``  a class, or "unknown" when the method's ``score`` of the logits is below
                    ``reject_threshold``
``embedding``       the network's output vector (metric learning)
==================  ==================================================================

Steps of :func:`rule_logits`, in order: the network (``sla``: once per transformed copy, the class
logits aggregated, or one slice of the head's columns), ``logit_scale`` (a cosine head), then
``posthoc_tau`` (``z - tau log(prior)``, the prior from ``class_counts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from longtail.adjust import posthoc_logit_adjust
from longtail.sla import sla_aggregate_logits, sla_num_transforms, sla_transforms

__all__ = [
    "OUTPUTS",
    "SCORES",
    "PredictionRule",
    "class_counts_tuple",
    "rule_logits",
    "rule_score",
]

#: The kinds of prediction (see the module docstring).
OUTPUTS = ("class", "labels", "class-or-unknown", "embedding")
#: The scores an open-set rule may threshold (higher: more likely a known class).
SCORES = ("max-softmax", "max-logit")


@dataclass(frozen=True)
class PredictionRule:
    """How a method predicts from its network (see the module docstring).

    Attributes:
        output: one of :data:`OUTPUTS`.
        logit_scale: multiply the logits (a cosine head's scale ``s``), ``None``: no scaling.
        posthoc_tau: post-hoc logit adjustment ``z - tau log(pi)``; ``None``: none.
        class_counts: the training class counts (the prior ``pi`` of the adjustment).
        sla: SLA's inference: ``{"kind": "joint"|"mt"|"da", "family": ..., "inference":
            "si"|"ag"|"sd", "num_classes": n}``; ``None``: not SLA.
        score: the thresholded open-set score (:data:`SCORES`).
        temperature: probabilities are ``softmax(z / T)`` (``sigmoid`` for labels); 1: as trained.
        thresholds: labels: one probability threshold per label (default 0.5 each).
        reject_threshold: open set: the score below which a prediction is "unknown".
        notes: how the calibration and thresholds were chosen (for people).
    """

    output: str
    logit_scale: float | None = None
    posthoc_tau: float | None = None
    class_counts: tuple[int, ...] | None = None
    sla: dict[str, Any] | None = None
    score: str | None = None
    temperature: float = 1.0
    thresholds: tuple[float, ...] | None = None
    reject_threshold: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"rule.output: expected one of {OUTPUTS}, got {self.output!r}")
        if self.score is not None and self.score not in SCORES:
            raise ValueError(f"rule.score: expected one of {SCORES}, got {self.score!r}")
        if not (self.temperature > 0 and self.temperature < float("inf")):
            raise ValueError(f"rule.temperature: must be finite and > 0, got {self.temperature!r}")
        if self.posthoc_tau is not None and self.class_counts is None:
            raise ValueError("rule.posthoc_tau: needs rule.class_counts (the prior)")

    def with_calibration(self, **changes: Any) -> PredictionRule:
        """The rule with other ``temperature``, ``thresholds``, ``reject_threshold`` or notes."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("class_counts", "thresholds"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PredictionRule:
        """The record :meth:`to_dict` wrote (``ValueError`` naming an unknown or bad field)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"rule: unknown field(s) {unknown}")
        d = dict(raw)
        for k in ("class_counts", "thresholds"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        try:
            return cls(**d)
        except TypeError as exc:
            raise ValueError(f"rule: {exc}") from None


def _sla_logits(sla: Mapping[str, Any], network: nn.Module, x: Tensor) -> Tensor:
    n = int(sla["num_classes"])
    family = sla["family"]
    m = sla_num_transforms(family)
    kind, inference = sla["kind"], sla.get("inference", "si")
    if kind == "joint" and inference == "ag":
        # one forward per transformation (batches of x's size; see SLATask.predict_logits)
        copies = sla_transforms(x, family)  # (B, M, C, H, W)
        zs = torch.stack([network(copies[:, j]).float() for j in range(m)], dim=1)
        aggregated: Tensor = sla_aggregate_logits(zs[..., : n * m], m)
        return aggregated
    z: Tensor = network(x).float()
    if kind == "joint":
        return z[:, n * m :] if inference == "sd" else z[:, : n * m : m]
    return z[:, :n]


def rule_logits(rule: PredictionRule, network: nn.Module, x: Tensor) -> Tensor:
    """The method's logits of the network inputs ``x`` (float32; see the module docstring);
    embeddings for ``output="embedding"``. Temperature is not applied here."""
    logits: Tensor = _sla_logits(rule.sla, network, x) if rule.sla else network(x).float()
    if rule.logit_scale is not None:
        logits = logits * rule.logit_scale
    if rule.posthoc_tau is not None:
        assert rule.class_counts is not None
        adjusted: Tensor = posthoc_logit_adjust(
            logits, list(rule.class_counts), tau=rule.posthoc_tau
        )
        return adjusted
    return logits


def rule_score(rule: PredictionRule, logits: Tensor) -> Tensor:
    """The open-set score (float64 ``(N,)``, higher: known) of ``logits``."""
    z = logits.detach().to(torch.float64)
    if z.shape[0] == 0:
        return z.new_zeros(0)
    if rule.score == "max-softmax":
        z = torch.softmax(z, dim=1)
    return z.max(dim=1).values


def class_counts_tuple(counts: Sequence[int]) -> tuple[int, ...]:
    """``counts`` as a tuple of ints (for :attr:`PredictionRule.class_counts`)."""
    return tuple(int(c) for c in counts)
