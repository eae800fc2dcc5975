"""Contract tests run for every loss in the registry: a new registered loss is tested for free.

The inputs come from the spec (``loss_cases.make_inputs``): ``(logits, target)`` for the classification
losses, a student's and a teacher's output (and a target for DKD) for the distillation losses,
features, targets and class points for the open-set ones. Bad-input errors must name the argument, by
the function's own parameter name.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longtail.losses import LOSSES, LossSpec
from loss_cases import (
    PER_SAMPLE,
    argument_names,
    call,
    learnable,
    make_counts,
    make_inputs,
    min_batch,
    module,
    none_shape,
    position,
    reductions,
    replaced,
    required_kwargs,
)

SPECS = [pytest.param(spec, id=name) for name, spec in LOSSES.items()]


def _select(keep: Callable[[LossSpec], bool]) -> list[Any]:
    return [p for p in SPECS if keep(p.values[0])]


REDUCING = _select(lambda s: s.terms != "batch")
WITH_TARGET = _select(lambda s: "target" in s.arguments)
INTEGER_TARGET = _select(lambda s: "target" in s.arguments and s.task != "multi-label")
WITH_TEACHER = _select(lambda s: "teacher" in s.arguments)
PER_SAMPLE_SPECS = _select(lambda s: any(a in PER_SAMPLE for a in s.arguments))
MINIMUM_BATCH = _select(lambda s: min_batch(s) > 0)
ANY_BATCH = _select(lambda s: min_batch(s) == 0)
NEGATIVE_OK = {"encouraging"}  # the encouraging loss is negative for confident predictions


def _floats(
    args: tuple[torch.Tensor, ...], spec: LossSpec, dtype: torch.dtype
) -> list[torch.Tensor]:
    """``args`` with the input and the float arguments (not the targets) cast to ``dtype``."""
    kinds = ("input", *spec.arguments)
    return [a.to(dtype) if k != "target" else a for k, a in zip(kinds, args, strict=True)]


@pytest.mark.parametrize("spec", SPECS)
def test_module_equals_function(spec: LossSpec) -> None:
    args = make_inputs(spec, 16, 7)
    for kw in [{"reduction": r} for r in reductions(spec)] or [{}]:
        f = call(spec, *args, **kw)
        m = module(spec, 7, **kw)(*args)
        torch.testing.assert_close(m, f, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", REDUCING)
def test_reductions_are_consistent(spec: LossSpec) -> None:
    args = make_inputs(spec, 12, 5)
    none = call(spec, *args, reduction="none")
    total = call(spec, *args, reduction="sum")
    mean = call(spec, *args, reduction="mean")
    assert none.shape == none_shape(spec, 12, 5)
    torch.testing.assert_close(total, none.sum())
    torch.testing.assert_close(mean, none.mean())  # no ignored sample, no unknown label


@pytest.mark.parametrize("spec", SPECS)
def test_gradcheck_float64(spec: LossSpec) -> None:
    """Gradients of the input and of the learnable class points / radius; float64 stays float64."""
    args = make_inputs(spec, 6, 4, dtype=torch.float64, seed=1)
    at = learnable(spec)
    for kw in [{"reduction": r} for r in ("mean", "none") if r in reductions(spec)] or [{}]:

        def fn(*xs: torch.Tensor, kw: dict[str, str] = kw) -> torch.Tensor:
            full = list(args)
            for i, x in zip(at, xs, strict=True):
                full[i] = x
            return call(spec, *full, **kw)

        xs = tuple(args[i].clone().requires_grad_(True) for i in at)
        assert fn(*xs).dtype == torch.float64
        assert torch.autograd.gradcheck(fn, xs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("spec", WITH_TEACHER)
def test_no_gradient_reaches_the_teacher(spec: LossSpec) -> None:
    args = make_inputs(spec, 6, 5, dtype=torch.float64, seed=6)
    i = position(spec, "teacher")
    student = args[0].clone().requires_grad_(True)
    teacher = args[i].clone().requires_grad_(True)
    call(spec, *replaced(replaced(args, 0, student), i, teacher)).backward()
    assert teacher.grad is None
    assert student.grad is not None and float(student.grad.abs().sum()) > 0


def _saturate(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Cosines at +-1; logits and embeddings at +-1e4 (logits: class 0 always at 1e4); features at
    +-100, whose squared distances (the logits of the open-set losses) differ by hundreds between
    classes: a saturated softmax. (At +-1e4 the gradient of their squared-distance terms, about
    1e10, exceeds the float16 range: an overflow of the input's dtype, not of the loss.)"""
    if kind == "cosine":
        return torch.sign(x)
    x = torch.sign(x) * (100.0 if kind == "features" else 1e4)
    if kind == "logits":
        x[:, 0] = 1e4  # correct and wrong saturated predictions
    return x


@pytest.mark.parametrize("spec", SPECS)
def test_saturated_inputs_finite(spec: LossSpec) -> None:
    args = list(make_inputs(spec, 32, 6, seed=2))
    args[0] = _saturate(args[0], spec.inputs)
    if "teacher" in spec.arguments:
        i = position(spec, "teacher")
        args[i] = _saturate(args[i], spec.inputs)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        cast = _floats(tuple(args), spec, dtype)
        cast[0] = cast[0].clone().requires_grad_(True)
        loss = call(spec, *cast)
        loss.backward()
        assert torch.isfinite(loss), (dtype, loss)
        grad = cast[0].grad
        assert grad is not None and torch.isfinite(grad).all(), dtype
        assert loss.dtype == torch.float32


@pytest.mark.parametrize("spec", SPECS)
def test_bf16_autocast_close_to_float32(spec: LossSpec) -> None:
    args = make_inputs(spec, 64, 10, seed=3, scale=2.0)
    width = args[0].shape[1]
    layer = torch.nn.Linear(width, width)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(width))
        layer.bias.zero_()
    ref = call(spec, layer(args[0]), *args[1:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(args[0])
        assert out.dtype == torch.bfloat16
        loss = call(spec, out, *args[1:])
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("spec", SPECS)
def test_autocast_computes_in_float32(spec: LossSpec) -> None:
    """Under bf16 autocast nothing inside runs in bf16: float32 inputs give the float32 result, and
    bf16 inputs the float32 result of the same (rounded) values."""
    args = make_inputs(spec, 12, 5, seed=7)
    ref = call(spec, *args)
    rounded = call(spec, *_floats(_floats(args, spec, torch.bfloat16), spec, torch.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = call(spec, *args)
        out_bf16 = call(spec, *_floats(args, spec, torch.bfloat16))
    assert out.dtype == torch.float32 and out_bf16.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_bf16, rounded, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ANY_BATCH)
def test_empty_batch(spec: LossSpec) -> None:
    args = make_inputs(spec, 0, 5)
    for i in learnable(spec):
        args[i].requires_grad_(True)
    for kw in [{"reduction": r} for r in ("mean", "sum") if r in reductions(spec)] or [{}]:
        loss = call(spec, *args, **kw)
        assert loss.shape == () and loss.item() == 0.0
        loss.backward()
    if reductions(spec):
        assert call(spec, *args, reduction="none").shape[0] == 0


@pytest.mark.parametrize("spec", MINIMUM_BATCH)
def test_batch_below_the_minimum(spec: LossSpec) -> None:
    for n in range(min_batch(spec)):
        args = make_inputs(spec, n, 5)
        with pytest.raises(ValueError, match=f"at least {min_batch(spec)} samples"):
            call(spec, *args)
        with pytest.raises(ValueError, match=f"at least {min_batch(spec)} samples"):
            module(spec, 5)(*args)


@pytest.mark.parametrize("spec", SPECS)
def test_module_state_dict_deepcopy_pickle(spec: LossSpec) -> None:
    args = make_inputs(spec, 8, 6)
    m = module(spec, 6)
    expected = m(*args)
    clone = copy.deepcopy(m)
    torch.testing.assert_close(clone(*args), expected)
    restored = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(restored(*args), expected)
    fresh = module(spec, 6)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh(*args), expected)


@pytest.mark.parametrize("spec", SPECS)
def test_module_to_moves_buffers(spec: LossSpec) -> None:
    m = module(spec, 6)
    buffers = dict(m.named_buffers())
    m64 = copy.deepcopy(m).to(torch.float64)
    for name, b in m64.named_buffers():
        assert b.dtype == torch.float64, name
    meta = copy.deepcopy(m).to("meta")
    for name, b in meta.named_buffers():
        assert b.device.type == "meta", name
    # A module built with class counts keeps them as buffers (they move with .to()).
    if spec.requires:
        assert buffers, f"{spec.name} stores its class statistics outside buffers"


@pytest.mark.parametrize("spec", SPECS)
def test_torch_compile_matches_eager(spec: LossSpec) -> None:
    torch._dynamo.reset()
    args = make_inputs(spec, 16, 5, seed=4)
    kw = required_kwargs(spec, 5)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return spec.function(x, *args[1:], **kw)

    x1 = args[0].clone().requires_grad_(True)
    x2 = args[0].clone().requires_grad_(True)
    eager = fn(x1)
    eager.backward()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=False)(x2)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(x2.grad, x1.grad)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["focal", "asymmetric", "logit-adjusted"])
def test_torch_compile_inductor(name: str) -> None:
    spec = LOSSES[name]
    torch._dynamo.reset()
    z, t = make_inputs(spec, 16, 5, seed=5)
    m = module(spec, 5)
    x1 = z.clone().requires_grad_(True)
    x2 = z.clone().requires_grad_(True)
    eager = m(x1, t)
    eager.backward()
    compiled = torch.compile(m)(x2, t)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
@given(
    n=st.integers(0, 12),
    c=st.integers(2, 9),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]),
)
def test_property_finite_and_consistent(
    spec: LossSpec, n: int, c: int, seed: int, scale: float
) -> None:
    n = max(n, min_batch(spec))
    args = make_inputs(spec, n, c, seed=seed, scale=scale, unknown=True)
    x = args[0].requires_grad_(True)
    if not reductions(spec):  # a loss of the whole batch
        loss = call(spec, *args)
        assert torch.isfinite(loss) and loss >= -1e-6
        loss.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        return
    none = call(spec, *args, reduction="none")
    mean = call(spec, *args, reduction="mean")
    assert torch.isfinite(none).all() and torch.isfinite(mean)
    if spec.name not in NEGATIVE_OK:
        assert (none >= -1e-6).all()
    if spec.task == "multi-label":
        t = args[1]
        known = int((t != -1).sum())
        assert (none[t == -1] == 0).all()
    else:
        known = none.numel()
    torch.testing.assert_close(mean * max(known, 1), none.sum(), rtol=1e-5, atol=1e-5)
    mean.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("spec", REDUCING)
def test_bad_reduction(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="reduction"):
        call(spec, *args, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        module(spec, 3, reduction="avg")


@pytest.mark.parametrize("spec", SPECS)
def test_wrong_number_of_dimensions(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    names = argument_names(spec)
    if spec.task != "multi-label":  # multi-label logits may have extra dimensions
        with pytest.raises(ValueError, match=names[0]):
            call(spec, args[0].unsqueeze(0), *args[1:])
    for i, arg in enumerate(spec.arguments, start=1):
        if arg == "radius":
            continue  # any one-element tensor
        bad = args[i].unsqueeze(1) if arg == "target" else args[i].unsqueeze(0)
        with pytest.raises(ValueError, match=names[i]):
            call(spec, *replaced(args, i, bad))


@pytest.mark.parametrize("spec", PER_SAMPLE_SPECS)
def test_batch_size_mismatch(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    names = argument_names(spec)
    for i, arg in enumerate(spec.arguments, start=1):
        if arg in PER_SAMPLE:
            with pytest.raises(ValueError, match=names[i]):
                call(spec, *replaced(args, i, args[i][:3]))


@pytest.mark.parametrize("spec", WITH_TARGET)
def test_labels_out_of_range(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    i = position(spec, "target")
    bad = args[i].clone()
    if spec.task != "multi-label":
        for value in (3, -2):
            bad[1] = value
            with pytest.raises(ValueError, match="target"):
                call(spec, *replaced(args, i, bad))
    else:
        for value in (2.0, -0.5):
            bad[1, 1] = value
            with pytest.raises(ValueError, match="targets"):
                call(spec, *replaced(args, i, bad))


@pytest.mark.parametrize("spec", SPECS)
def test_non_tensor_and_integer_inputs(spec: LossSpec) -> None:
    """The input, a teacher's output and class points must be floating-point tensors."""
    args = make_inputs(spec, 4, 3)
    names = argument_names(spec)
    kw = required_kwargs(spec, 3)
    for i, kind in enumerate(("input", *spec.arguments)):
        if kind in ("target", "radius"):
            continue
        with pytest.raises(TypeError, match=names[i]):
            spec.function(*replaced(args, i, args[i].tolist()), **kw)
        with pytest.raises(TypeError, match=names[i]):
            spec.function(*replaced(args, i, args[i].long()), **kw)


@pytest.mark.parametrize("spec", INTEGER_TARGET)
def test_float_target_rejected(spec: LossSpec) -> None:
    args = make_inputs(spec, 4, 3)
    i = position(spec, "target")
    with pytest.raises(TypeError, match="target"):
        call(spec, *replaced(args, i, args[i].float()))


COUNT_SPECS = [p for p in SPECS if "class_counts" in p.values[0].requires]


@pytest.mark.parametrize("spec", COUNT_SPECS)
def test_class_counts_wrong_length(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="class_counts"):
        spec.function(z, t, class_counts=make_counts(4))


@pytest.mark.parametrize("spec", COUNT_SPECS)
def test_class_counts_zero_entry(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="class_counts"):
        spec.function(z, t, class_counts=torch.tensor([10.0, 0.0, 3.0]))
    with pytest.raises(ValueError, match="class_counts"):
        spec.module(class_counts=[10, 0, 3])


@pytest.mark.parametrize("spec", COUNT_SPECS)
def test_class_counts_negative_entry(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="class_counts"):
        spec.function(z, t, class_counts=[10, -1, 3])


@pytest.mark.parametrize("spec", COUNT_SPECS)
def test_class_counts_not_finite_or_2d(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="class_counts"):
        spec.function(z, t, class_counts=[10, float("nan"), 3])
    with pytest.raises(ValueError, match="class_counts"):
        spec.function(z, t, class_counts=torch.ones(3, 1))


@pytest.mark.parametrize("spec", COUNT_SPECS)
def test_module_rejects_wrong_number_of_classes(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="class"):
        module(spec, 5)(z, t)
