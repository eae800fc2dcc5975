"""The value-check switch: with ``value_checks(False)`` no loss reads tensor values on the host.

Every registered loss is run (function and module, every reduction, with and without per-class vectors)
under a dispatch mode that counts host reads (``host_reads.count_host_reads``): forward and backward
make none with the checks off, at least one with them on (for losses with targets, whose range is a
value check), and give bit-identical results either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import longtail.losses as L
from host_reads import count_host_reads, record_host_reads
from longtail.losses import (
    LOSSES,
    LossSpec,
    focal_loss,
    set_value_checks,
    value_checks,
    value_checks_enabled,
)
from loss_cases import (
    PER_SAMPLE,
    argument_names,
    make_counts,
    make_inputs,
    position,
    reductions,
    replaced,
    required_kwargs,
)

SPECS = [pytest.param(spec, id=name) for name, spec in LOSSES.items()]
WITH_TARGET = [p for p in SPECS if "target" in p.values[0].arguments]
N, C = 8, 5
#: Keyword variants beyond the per-class vectors, for losses with several forms.
EXTRA_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "class-balanced": [{"loss_type": "sigmoid"}, {"loss_type": "focal", "gamma": 2.0}],
}


@pytest.fixture(autouse=True)
def _checks_on_around_each_test() -> Iterator[None]:
    assert value_checks_enabled(), "value checks were left off by an earlier test"
    yield
    set_value_checks(True)


def vector_kwargs(spec: LossSpec, num_classes: int) -> dict[str, Any]:
    """A positive per-class vector for each optional vector hyper-parameter (default ``None``)."""
    return {
        name: torch.linspace(0.5, 2.0, num_classes)
        for name in ("weight", "alpha")
        if name in spec.hyperparameters and spec.hyperparameters[name] is None
    }


def variants(spec: LossSpec) -> list[tuple[str, dict[str, Any]]]:
    """(label, keyword arguments) of the forms of ``spec`` to run, all with valid values."""
    base = required_kwargs(spec, C)
    out = [("plain", base)]
    vectors = vector_kwargs(spec, C)
    if vectors:
        out.append(("+" + "+".join(vectors), {**base, **vectors}))
    out += [(str(extra), {**base, **extra}) for extra in EXTRA_VARIANTS.get(spec.name, [])]
    return out


def inputs(spec: LossSpec) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """Valid inputs: single-label with an ignored sample; multi-label with and without unknowns."""
    args = make_inputs(spec, N, C, seed=7)
    if spec.task == "single-label":
        args[1][2] = -100  # the default ignore_index
        return [("ignore", args)]
    if spec.task == "multi-label":
        unknown = make_inputs(spec, N, C, seed=8, unknown=True)
        assert (unknown[1] == -1).any()
        return [("known", args), ("unknown", unknown)]
    return [("plain", args)]


Step = Callable[[torch.Tensor], torch.Tensor]


def _call(
    loss: Callable[..., torch.Tensor], x: torch.Tensor, *, rest: tuple[torch.Tensor, ...], **kw: Any
) -> Any:
    return loss(x, *rest, **kw)


def steps(spec: LossSpec) -> Iterator[tuple[str, torch.Tensor, Step]]:
    """(label, logits, loss step) for every form: function and module, each reduction, each variant.

    Modules are built here, outside the counted region (a training loop builds them once).
    """
    for in_label, (z, *rest) in inputs(spec):
        for var_label, kw in variants(spec):
            for reduction in reductions(spec) or (None,):
                label = f"{spec.name} {in_label} {var_label} {reduction}"
                red = {} if reduction is None else {"reduction": reduction}
                function = functools.partial(_call, spec.function, rest=tuple(rest), **red, **kw)
                module = functools.partial(_call, spec.module(**red, **kw), rest=tuple(rest))
                yield f"{label} function", z, function
                yield f"{label} module", z, module


def run_counted(step: Step, z: torch.Tensor) -> tuple[list[str], list[str], torch.Tensor, Any]:
    """Host reads of the forward and of the backward, the loss and the gradient of the logits."""
    x = z.clone().requires_grad_(True)
    forward, loss = record_host_reads(lambda: step(x))
    backward, _ = record_host_reads(lambda: loss.sum().backward())
    return forward.names, backward.names, loss.detach(), x.grad


# ------------------------------------------------------------------------------------- the API


def test_api_is_exported() -> None:
    for name in ("set_value_checks", "value_checks", "value_checks_enabled"):
        assert name in L.__all__
        assert callable(getattr(L, name))


def test_on_by_default_and_set() -> None:
    assert value_checks_enabled() is True
    set_value_checks(False)
    assert value_checks_enabled() is False
    set_value_checks(True)
    assert value_checks_enabled() is True


def test_set_rejects_non_bool() -> None:
    with pytest.raises(TypeError, match="enabled"):
        set_value_checks(0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="enabled"), value_checks("no"):  # type: ignore[arg-type]
        pass
    assert value_checks_enabled() is True


def test_context_manager_restores_previous_state() -> None:
    with value_checks(False):
        assert not value_checks_enabled()
        with value_checks(True):
            assert value_checks_enabled()
        assert not value_checks_enabled()
    assert value_checks_enabled()
    set_value_checks(False)
    with value_checks(True):
        assert value_checks_enabled()
    assert not value_checks_enabled()  # restored to off, not to the default


def test_context_manager_restores_when_the_body_raises() -> None:
    def body() -> None:
        with value_checks(False):
            assert not value_checks_enabled()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert value_checks_enabled()

    set_value_checks(False)

    def body_on() -> None:
        with value_checks(True):
            focal_loss(torch.zeros(2, 3), torch.tensor([0, 3]))  # label 3 out of range

    with pytest.raises(ValueError, match="target"):
        body_on()
    assert not value_checks_enabled()


# ------------------------------------------------------------------------------- the counter


def test_counter_counts() -> None:
    x = torch.tensor([0.0, 1.0, 2.0])

    def reads() -> list[float]:
        assert bool(x.any())
        return x.tolist()

    count, result = count_host_reads(reads)
    assert result == [0.0, 1.0, 2.0]
    assert count >= 2
    names = record_host_reads(reads)[0].names
    assert "aten._local_scalar_dense.default" in names and "Tensor.tolist" in names
    # .item(), int(), float(), nonzero, boolean-mask indexing and .numpy() count too; a pure
    # computation does not.
    assert count_host_reads(lambda: x.sum().item())[0] == 1
    assert count_host_reads(lambda: (int(x[1]), float(x[2])))[0] == 2
    assert count_host_reads(lambda: torch.nonzero(x))[0] >= 1
    assert count_host_reads(lambda: x[x > 0])[0] >= 1
    assert count_host_reads(lambda: x.numpy())[0] == 1
    assert count_host_reads(lambda: (x * 2).softmax(0))[0] == 0
    assert "tolist" not in torch.Tensor.__dict__ and "numpy" not in torch.Tensor.__dict__


def test_counter_sees_the_backward() -> None:
    class ReadsInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
            return a * 2

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            assert bool(torch.isfinite(g).all())
            return g * 2

    x = torch.ones(3, requires_grad=True)
    y = ReadsInBackward.apply(x).sum()
    assert count_host_reads(lambda: y.backward())[0] == 1


# -------------------------------------------------------------------------- every registered loss


@pytest.mark.parametrize("spec", SPECS)
def test_no_host_reads_with_value_checks_off(spec: LossSpec) -> None:
    for label, z, step in steps(spec):
        with value_checks(False):
            forward, backward, _, grad = run_counted(step, z)
        assert forward == [], f"{label}: forward reads {forward}"
        assert backward == [], f"{label}: backward reads {backward}"
        assert grad is not None
        if "target" in spec.arguments:
            # Not vacuous: with the checks on, the same call reads the targets (at least).
            on_forward, _, _, _ = run_counted(step, z)
            assert on_forward, f"{label}: no host read with the value checks on"


@pytest.mark.parametrize("spec", SPECS)
def test_results_identical_with_value_checks_off(spec: LossSpec) -> None:
    for label, z, step in steps(spec):
        _, _, loss_on, grad_on = run_counted(step, z)
        with value_checks(False):
            _, _, loss_off, grad_off = run_counted(step, z)
        assert loss_on.dtype == loss_off.dtype and torch.equal(loss_on, loss_off), label
        assert grad_on is not None and grad_off is not None
        assert torch.equal(grad_on, grad_off), label


def test_focal_with_weight_reads_only_with_checks_on() -> None:
    z, t = torch.randn(N, C), torch.randint(0, C, (N,))
    w = torch.linspace(0.5, 2.0, C)
    x = z.clone().requires_grad_(True)

    def step() -> None:
        focal_loss(x, t, weight=w, alpha=w).backward()

    reads = record_host_reads(step)[0]
    assert reads.count >= 3, reads  # labels in range, alpha and weight finite and >= 0
    with value_checks(False):
        assert count_host_reads(step)[0] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_device_assertions_with_value_checks_off_cuda() -> None:
    dev = torch.device("cuda")
    z, t = torch.randn(N, C, device=dev), torch.randint(0, C, (N,), device=dev)
    y = (torch.rand(N, C, device=dev) < 0.3).float()
    w = torch.linspace(0.5, 2.0, C, device=dev)

    def single() -> torch.Tensor:
        return focal_loss(z, t, weight=w)

    def multi() -> torch.Tensor:
        return L.sigmoid_focal_loss(z, y)

    for fn in (single, multi):
        assert any("assert_async" in n for n in record_host_reads(fn)[0].names)
        with value_checks(False):
            assert record_host_reads(fn)[0].names == []


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("spec", WITH_TARGET)
def test_bad_values_still_raise_with_checks_on(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    kw = required_kwargs(spec, 3)
    i = position(spec, "target")
    bad = args[i].clone()
    if spec.task != "multi-label":
        bad[1] = 3
        with pytest.raises(ValueError, match="target"):
            spec.function(*replaced(args, i, bad), **kw)
    else:
        bad[1, 1] = 2.0
        with pytest.raises(ValueError, match="targets"):
            spec.function(*replaced(args, i, bad), **kw)
    for name in vector_kwargs(spec, 3):
        negative = torch.tensor([1.0, -0.5, 1.0])
        with pytest.raises(ValueError, match=name):
            spec.function(*args, **kw, **{name: negative})
        with pytest.raises(ValueError, match=name):
            spec.module(**kw, **{name: negative})
        with pytest.raises(ValueError, match=name):
            spec.function(*args, **kw, **{name: torch.tensor([1.0, float("nan"), 1.0])})
    if "class_counts" in spec.requires:
        with pytest.raises(ValueError, match="class_counts"):
            spec.function(*args, class_counts=torch.tensor([10.0, 0.0, 3.0]))


@pytest.mark.parametrize("spec", SPECS)
def test_shape_and_type_checks_stay_on(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    names = argument_names(spec)
    kw = required_kwargs(spec, 3)
    with value_checks(False):
        for i, arg in enumerate(spec.arguments, start=1):
            if arg in PER_SAMPLE:
                with pytest.raises(ValueError, match=names[i]):
                    spec.function(*replaced(args, i, args[i][:3]), **kw)
        with pytest.raises(TypeError, match=names[0]):
            spec.function(*replaced(args, 0, args[0].long()), **kw)
        if reductions(spec):
            with pytest.raises(ValueError, match="reduction"):
                spec.function(*args, reduction="avg", **kw)
        if "target" in spec.arguments and spec.task != "multi-label":
            i = position(spec, "target")
            with pytest.raises(TypeError, match="target"):
                spec.function(*replaced(args, i, args[i].float()), **kw)
        for name in vector_kwargs(spec, 3):
            with pytest.raises(ValueError, match=name):
                spec.function(*args, **kw, **{name: torch.ones(4)})
        if "class_counts" in spec.requires:
            with pytest.raises(ValueError, match="class_counts"):
                spec.function(*args, class_counts=make_counts(4))


def test_value_checks_off_skips_value_checks() -> None:
    z, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with value_checks(False):
        focal_loss(z, t, weight=torch.tensor([1.0, -0.5, 1.0]))  # not detected: no host read
    with pytest.raises(ValueError, match="weight"):
        focal_loss(z, t, weight=torch.tensor([1.0, -0.5, 1.0]))
