"""Bad hyper-parameters: a ValueError/TypeError naming the argument, from the function and the module."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from longtail import losses as L
from loss_cases import make_counts

Z = torch.randn(4, 3)
T = torch.tensor([0, 1, 2, 1])
Y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
COUNTS = make_counts(3)


def _both(fn: Any, module: Any, inputs: tuple[torch.Tensor, torch.Tensor], **kw: Any) -> list[Any]:
    return [lambda: fn(*inputs, **kw), lambda: module(**kw)]


BETA = [-0.1, 1.0, 1.5, float("nan")]


@pytest.mark.parametrize("beta", BETA)
def test_beta_outside_unit_interval(beta: float) -> None:
    for call in _both(
        L.class_balanced_loss, L.ClassBalancedLoss, (Z, T), class_counts=COUNTS, beta=beta
    ):
        with pytest.raises(ValueError, match="beta"):
            call()
    with pytest.raises(ValueError, match="beta"):
        L.class_balanced_weights(COUNTS, beta=beta)


@pytest.mark.parametrize(
    ("fn", "module", "inputs", "kw"),
    [
        (L.focal_loss, L.FocalLoss, (Z, T), {}),
        (L.sigmoid_focal_loss, L.SigmoidFocalLoss, (Z, Y), {}),
        (
            L.class_balanced_loss,
            L.ClassBalancedLoss,
            (Z, T),
            {"class_counts": COUNTS, "loss_type": "focal"},
        ),
    ],
    ids=["focal", "sigmoid-focal", "class-balanced"],
)
def test_negative_gamma(fn: Any, module: Any, inputs: Any, kw: dict[str, Any]) -> None:
    for call in _both(fn, module, inputs, gamma=-1.0, **kw):
        with pytest.raises(ValueError, match="gamma"):
            call()


@pytest.mark.parametrize("name", ["gamma_pos", "gamma_neg"])
def test_negative_asl_gammas(name: str) -> None:
    for call in _both(L.asymmetric_loss, L.AsymmetricLoss, (Z, Y), **{name: -0.5}):
        with pytest.raises(ValueError, match=name):
            call()
    for call in _both(
        L.asymmetric_single_label_loss, L.AsymmetricSingleLabelLoss, (Z, T), **{name: -0.5}
    ):
        with pytest.raises(ValueError, match=name):
            call()


@pytest.mark.parametrize("tau", [-0.5, float("inf")])
def test_negative_tau(tau: float) -> None:
    for call in _both(
        L.logit_adjusted_loss, L.LogitAdjustedLoss, (Z, T), class_counts=COUNTS, tau=tau
    ):
        with pytest.raises(ValueError, match="tau"):
            call()
    with pytest.raises(ValueError, match="tau"):
        L.logit_adjustment_margins(COUNTS, tau=tau)


@pytest.mark.parametrize("clip", [-0.01, 1.0, 2.0])
def test_clip_outside_unit_interval(clip: float) -> None:
    for call in _both(L.asymmetric_loss, L.AsymmetricLoss, (Z, Y), clip=clip):
        with pytest.raises(ValueError, match="clip"):
            call()


@pytest.mark.parametrize("log_end", [0.0, -0.5, 1.01])
def test_log_end_outside_half_open_interval(log_end: float) -> None:
    for call in _both(L.encouraging_loss, L.EncouragingLoss, (Z, T), log_end=log_end):
        with pytest.raises(ValueError, match="log_end"):
            call()


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_ldam_scale_and_margin_positive(bad: float) -> None:
    for name in ("scale", "max_margin"):
        for call in _both(
            L.ldam_loss, L.LDAMLoss, (Z.tanh(), T), class_counts=COUNTS, **{name: bad}
        ):
            with pytest.raises(ValueError, match=name):
                call()


def test_sigmoid_focal_alpha_outside_unit_interval() -> None:
    for call in _both(L.sigmoid_focal_loss, L.SigmoidFocalLoss, (Z, Y), alpha=1.5):
        with pytest.raises(ValueError, match="alpha"):
            call()


def test_unknown_cb_loss_type() -> None:
    for call in _both(
        L.class_balanced_loss, L.ClassBalancedLoss, (Z, T), class_counts=COUNTS, loss_type="hinge"
    ):
        with pytest.raises(ValueError, match="loss_type"):
            call()


def test_hyper_parameter_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="gamma"):
        L.focal_loss(Z, T, gamma="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="beta"):
        L.class_balanced_weights(COUNTS, beta=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["alpha", "weight"])
def test_per_class_vector_wrong_length_or_negative(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        L.focal_loss(Z, T, **{name: torch.ones(4)})
    with pytest.raises(ValueError, match=name):
        L.focal_loss(Z, T, **{name: torch.tensor([1.0, -1.0, 1.0])})


def test_pairwise_delta_shape() -> None:
    with pytest.raises(ValueError, match="delta"):
        L.pairwise_margin_loss(Z, T, delta=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="delta"):
        L.pairwise_margin_loss(Z, T, delta=torch.zeros(4, 4))
    with pytest.raises(TypeError, match="delta"):
        L.pairwise_margin_loss(Z, T, delta=[[0.0]])  # type: ignore[arg-type]


def test_class_counts_empty() -> None:
    with pytest.raises(ValueError, match="class_counts"):
        L.class_balanced_weights([])


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    spec = L.get_loss("focal")
    with pytest.raises(ValueError, match="already registered"):
        L.register_loss(spec)
    with pytest.raises(KeyError, match="unknown loss"):
        L.get_loss("nope")
    assert "focal" in L.list_losses("single-label")
    assert "asymmetric" in L.list_losses("multi-label")


def test_registry_validates_the_spec_fields() -> None:
    spec = L.get_loss("focal")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"task": "ranking"}, "spec.task must be one of"),
        ({"inputs": "probabilities"}, "spec.inputs must be one of"),
        ({"terms": "quadruplet"}, "spec.terms must be one of"),
        ({"task": "open-set", "arguments": ("target", "anchor")}, "spec.arguments has unknown"),
        ({"requires": ("prior",)}, "spec.requires has unknown"),
        ({"arguments": ("teacher",)}, r"a single-label loss takes \(logits, target\)"),
        ({"task": "multi-label", "terms": "pair"}, r"a multi-label loss takes \(logits, target\)"),
    ]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            L.register_loss(dataclasses.replace(spec, name="not-registered", **change))
    listed = dataclasses.replace(spec, name="not-registered", arguments=["target"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"spec\.arguments must be a tuple"):
        L.register_loss(listed)
    assert "not-registered" not in L.LOSSES
