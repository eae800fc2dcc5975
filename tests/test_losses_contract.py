"""Contract tests run for every loss in the registry: a new registered loss is tested for free."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longtail.losses import LOSSES, LossSpec
from loss_cases import call, make_counts, make_inputs, module, required_kwargs

SPECS = [pytest.param(spec, id=name) for name, spec in LOSSES.items()]
SINGLE = [p for p in SPECS if p.values[0].task == "single-label"]
NEGATIVE_OK = {"encouraging"}  # the encouraging loss is negative for confident predictions


@pytest.mark.parametrize("spec", SPECS)
def test_module_equals_function(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 16, 7)
    for reduction in ("none", "mean", "sum"):
        f = call(spec, z, t, reduction=reduction)
        m = module(spec, 7, reduction=reduction)(z, t)
        torch.testing.assert_close(m, f, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
def test_reductions_are_consistent(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 12, 5)
    none = call(spec, z, t, reduction="none")
    total = call(spec, z, t, reduction="sum")
    mean = call(spec, z, t, reduction="mean")
    expected_shape = (12,) if spec.task == "single-label" else (12, 5)
    assert none.shape == expected_shape
    torch.testing.assert_close(total, none.sum())
    torch.testing.assert_close(
        mean, none.sum() / 12 if spec.task == "single-label" else none.mean()
    )


@pytest.mark.parametrize("spec", SPECS)
def test_gradcheck_float64(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 6, 4, dtype=torch.float64, seed=1)
    z.requires_grad_(True)
    kw = required_kwargs(spec, 4)
    for reduction in ("mean", "none"):

        def fn(x: torch.Tensor, reduction: str = reduction) -> torch.Tensor:
            return spec.function(x, t, reduction=reduction, **kw)

        assert torch.autograd.gradcheck(fn, (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_saturated_logits_finite(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 32, 6, seed=2)
    if spec.inputs == "logits":
        z = torch.sign(z) * 1e4
        z[:, 0] = 1e4  # correct and wrong saturated predictions
    else:
        z = torch.sign(z)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = z.detach().to(dtype).clone().requires_grad_(True)
        loss = call(spec, x, t.to(torch.float32) if spec.task == "multi-label" else t)
        loss.backward()
        assert torch.isfinite(loss), (dtype, loss)
        assert x.grad is not None and torch.isfinite(x.grad).all(), dtype
        assert loss.dtype == torch.float32


@pytest.mark.parametrize("spec", SPECS)
def test_bf16_autocast_close_to_float32(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 64, 10, seed=3, scale=2.0)
    layer = torch.nn.Linear(10, 10)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(10))
        layer.bias.zero_()
    ref = call(spec, layer(z), t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(z)
        assert out.dtype == torch.bfloat16
        loss = call(spec, out, t)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("spec", SPECS)
def test_empty_batch(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 0, 5)
    z.requires_grad_(True)
    for reduction in ("mean", "sum"):
        loss = call(spec, z, t, reduction=reduction)
        assert loss.shape == () and loss.item() == 0.0
        loss.backward()
    assert call(spec, z, t, reduction="none").shape[0] == 0


@pytest.mark.parametrize("spec", SPECS)
def test_module_state_dict_deepcopy_pickle(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 8, 6)
    m = module(spec, 6)
    expected = m(z, t)
    clone = copy.deepcopy(m)
    torch.testing.assert_close(clone(z, t), expected)
    restored = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(restored(z, t), expected)
    fresh = module(spec, 6)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh(z, t), expected)


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
    z, t = make_inputs(spec, 16, 5, seed=4)
    kw = required_kwargs(spec, 5)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return spec.function(x, t, **kw)

    x1 = z.clone().requires_grad_(True)
    x2 = z.clone().requires_grad_(True)
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
    z, t = make_inputs(spec, n, c, seed=seed, scale=scale, unknown=True)
    z.requires_grad_(True)
    none = call(spec, z, t, reduction="none")
    mean = call(spec, z, t, reduction="mean")
    assert torch.isfinite(none).all() and torch.isfinite(mean)
    if spec.name not in NEGATIVE_OK:
        assert (none >= -1e-6).all()
    if spec.task == "multi-label":
        known = int((t != -1).sum())
        assert (none[t == -1] == 0).all()
    else:
        known = n
    torch.testing.assert_close(mean * max(known, 1), none.sum(), rtol=1e-5, atol=1e-5)
    mean.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("spec", SPECS)
def test_bad_reduction(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="reduction"):
        call(spec, z, t, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        module(spec, 3, reduction="avg")


@pytest.mark.parametrize("spec", SPECS)
def test_wrong_number_of_dimensions(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    if spec.task == "single-label":
        with pytest.raises(ValueError, match="logits"):
            call(spec, z.unsqueeze(0), t)
        with pytest.raises(ValueError, match="target"):
            call(spec, z, t.unsqueeze(1))
    else:
        with pytest.raises(ValueError, match="targets"):
            call(spec, z, t.unsqueeze(0))


@pytest.mark.parametrize("spec", SPECS)
def test_batch_size_mismatch(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(ValueError, match="target"):
        call(spec, z, t[:3])


@pytest.mark.parametrize("spec", SPECS)
def test_labels_out_of_range(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    bad = t.clone()
    if spec.task == "single-label":
        bad[1] = 3
        with pytest.raises(ValueError, match="target"):
            call(spec, z, bad)
        bad[1] = -2
        with pytest.raises(ValueError, match="target"):
            call(spec, z, bad)
    else:
        bad[1, 1] = 2.0
        with pytest.raises(ValueError, match="targets"):
            call(spec, z, bad)
        bad[1, 1] = -0.5
        with pytest.raises(ValueError, match="targets"):
            call(spec, z, bad)


@pytest.mark.parametrize("spec", SPECS)
def test_non_tensor_and_integer_logits(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(TypeError, match="logits"):
        spec.function(z.tolist(), t, **required_kwargs(spec, 3))
    with pytest.raises(TypeError, match="logits"):
        call(spec, z.long(), t)


@pytest.mark.parametrize("spec", SINGLE)
def test_float_target_rejected(spec: LossSpec) -> None:
    z, t = make_inputs(spec, 4, 3)
    with pytest.raises(TypeError, match="target"):
        call(spec, z, t.float())


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
