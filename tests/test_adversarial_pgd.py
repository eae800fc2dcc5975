"""longtail.adversarial.pgd: loss moves the right way, ball and range, gradients, modes, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from longtail.adversarial import PGD, l2_normalise, pgd, project, random_in_ball

C = 3


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 one-channel images in [0, 1]: class c is brighter in band c of the rows."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5
    for c in range(C):
        x[y == c, :, 2 * c : 2 * c + 3, :] += 0.12
    return x.clamp(0, 1), y


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 64, C),
    )


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x, y = _data()
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9
    for p in model.parameters():
        p.grad = None
    return model, x, y


def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_untargeted_raises_the_loss(trained, norm):
    model, x, y = trained
    eps, step = (0.1, 0.025) if norm == "linf" else (1.0, 0.25)
    adv = pgd(model, x, y, norm=norm, epsilon=eps, step_size=step, steps=10, random_start=False)
    before, after = _ce(model, x, y), _ce(model, adv, y)
    assert (after > before).float().mean() >= 0.95
    assert after.mean() > before.mean() + 0.5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_lowers_the_loss_of_the_target(trained, norm):
    model, x, y = trained
    t = (y + 1) % C
    eps, step = (0.1, 0.025) if norm == "linf" else (1.0, 0.25)
    adv = pgd(model, x, t, norm=norm, epsilon=eps, step_size=step, steps=10, targeted=True)
    before, after = _ce(model, x, t), _ce(model, adv, t)
    assert (after < before).float().mean() >= 0.95
    assert after.mean() < before.mean() - 0.5


def test_one_linf_step_is_fgsm(trained):
    model, x, y = trained
    eps = 0.05
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y, reduction="sum").backward()
    assert xr.grad is not None
    ref = (x + eps * xr.grad.sign()).clamp(0, 1)
    for p in model.parameters():
        p.grad = None
    adv = pgd(
        model, x, y, epsilon=eps, step_size=eps, steps=1, random_start=False, input_range=(0, 1)
    )
    torch.testing.assert_close(adv, ref)


def test_one_l2_step_is_a_normalised_gradient_step(trained):
    model, x, y = trained
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y, reduction="sum").backward()
    assert xr.grad is not None
    g = xr.grad.flatten(1)
    ref = x - 0.3 * (g / g.norm(dim=1, keepdim=True)).view_as(x)  # targeted: descend
    for p in model.parameters():
        p.grad = None
    adv = pgd(
        model, x, y, norm="l2", epsilon=1.0, step_size=0.3, steps=1, targeted=True,
        random_start=False,
    )  # fmt: skip
    torch.testing.assert_close(adv, ref)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_stays_in_the_ball_and_the_range_and_reaches_the_boundary(trained, norm):
    model, x, y = trained
    eps = 0.08 if norm == "linf" else 0.7
    adv = pgd(model, x, y, norm=norm, epsilon=eps, step_size=eps, steps=8, input_range=(0.0, 1.0))
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all()
    assert size.max() > 0.99 * eps  # the projection was active: without it steps of eps exceed it
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert (adv == 0.0).any() or (adv == 1.0).any()  # and the range clipping too


@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.01, 3.0),
    step=st.floats(0.01, 3.0),
    steps=st.integers(0, 4),
    seed=st.integers(0, 2**16),
    lo=st.floats(-2.0, -0.5),
)
def test_property_ball_and_range(norm, eps, step, steps, seed, lo):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, C))
    x = torch.rand(5, 3, 4) * (1 - lo) + lo
    y = torch.randint(0, C, (5,))
    gen = torch.Generator().manual_seed(seed)
    adv = pgd(
        model, x, y, norm=norm, epsilon=eps, step_size=step, steps=steps, input_range=(lo, 1.0),
        generator=gen,
    )  # fmt: skip
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps * (1 + 1e-5) + 1e-6).all()
    assert adv.min() >= lo and adv.max() <= 1.0
    assert adv.shape == x.shape and adv.dtype == x.dtype


def test_loss_fn_negated_untargeted_equals_targeted(trained):
    model, x, y = trained
    kw = {"epsilon": 0.1, "step_size": 0.02, "steps": 3, "random_start": False}
    neg = pgd(model, x, y, loss_fn=lambda z, t: -F.cross_entropy(z, t, reduction="none"), **kw)
    tgt = pgd(model, x, y, targeted=True, **kw)
    torch.testing.assert_close(neg, tgt)


def test_works_under_no_grad_and_leaves_parameter_grads_alone(trained):
    model, x, y = trained
    params = list(model.parameters())
    for p in params[:2]:
        p.grad = torch.full_like(p, 7.0)
    kw = {"norm": "l2", "epsilon": 0.5, "step_size": 0.1, "steps": 3}
    with torch.no_grad():
        a = pgd(model, x, y, generator=torch.Generator().manual_seed(1), **kw)
    b = pgd(model, x, y, generator=torch.Generator().manual_seed(1), **kw)
    torch.testing.assert_close(a, b)
    assert not (a == x).all()
    assert not a.requires_grad
    for p in params[:2]:
        assert p.grad is not None and bool((p.grad == 7.0).all())
    for p in params[2:]:
        assert p.grad is None
    for p in params:
        p.grad = None


def test_modes_restored_and_batch_norm_statistics_untouched():
    model = _cnn()
    x, y = _data(32)
    model.train()
    model[1].eval()  # a sub-module in its own mode
    bn = model[1]
    seen: list[bool] = []
    model.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    pgd(model, x, y, epsilon=0.1, step_size=0.05, steps=2)
    assert seen == [False, False]
    assert model.training and not model[1].training and model[0].training
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    seen.clear()
    model[1].train()
    pgd(model, x, y, epsilon=0.1, step_size=0.05, steps=1, eval_mode=False)
    assert seen == [True]  # the caller's mode, batch norm statistics updated
    assert not torch.equal(bn.running_mean, mean)


def test_deterministic_with_a_generator(trained):
    model, x, y = trained
    kw = {"epsilon": 0.1, "step_size": 0.02, "steps": 2}
    a = pgd(model, x, y, generator=torch.Generator().manual_seed(3), **kw)
    b = pgd(model, x, y, generator=torch.Generator().manual_seed(3), **kw)
    c = pgd(model, x, y, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_inside_the_ball(norm):
    x = torch.zeros(4000, 16)
    eps = 0.5
    r = random_in_ball(x, norm, eps, torch.Generator().manual_seed(0))
    if norm == "linf":
        assert r.abs().max() <= eps
        assert r.abs().max() > 0.99 * eps
        assert abs(float(r.mean())) < 0.01
    else:
        n = r.norm(dim=1)
        assert n.max() <= eps * (1 + 1e-6)
        # uniform in the 16-ball: E||r|| = eps * d / (d + 1)
        assert abs(float(n.mean()) - eps * 16 / 17) < 0.01


def test_project_and_normalise():
    d = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    torch.testing.assert_close(
        project(d, "l2", 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    )
    torch.testing.assert_close(
        project(d, "linf", 0.35), torch.tensor([[0.35, 0.35], [0.3, 0.35], [0.0, 0.0]])
    )
    torch.testing.assert_close(l2_normalise(d), torch.tensor([[0.6, 0.8], [0.6, 0.8], [0.0, 0.0]]))


def test_empty_batch_float64_and_class_form(trained):
    model, x, y = trained
    out = pgd(model, x[:0], y[:0], epsilon=0.1, step_size=0.1, steps=2)
    assert out.shape == (0, 1, 8, 8)
    m64 = _cnn().double()
    adv64 = pgd(m64, x.double(), y, epsilon=0.1, step_size=0.1, steps=1)
    assert adv64.dtype == torch.float64
    attack = PGD(model, norm="l2", epsilon=0.5, step_size=0.2, steps=2, input_range=(0, 1))
    a = attack(x, y, generator=torch.Generator().manual_seed(0))
    b = pgd(
        model, x, y, norm="l2", epsilon=0.5, step_size=0.2, steps=2, input_range=(0, 1),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert torch.equal(a, b)
    assert "epsilon=0.5" in repr(attack)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_its_own_generator(trained):
    model, x, y = trained
    m, xc, yc = model.cuda(), x.cuda(), y.cuda()
    try:
        gen = torch.Generator(device="cuda").manual_seed(0)
        adv = pgd(m, xc, yc, norm="l2", epsilon=0.5, step_size=0.1, steps=2, generator=gen)
        assert adv.device.type == "cuda"
        assert ((adv - xc).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    finally:
        model.cpu()


@pytest.mark.parametrize(
    ("kwargs", "key", "exc"),
    [
        ({"norm": "l1"}, "norm", ValueError),
        ({"epsilon": 0.0}, "epsilon", ValueError),
        ({"epsilon": -1.0}, "epsilon", ValueError),
        ({"epsilon": math.nan}, "epsilon", ValueError),
        ({"epsilon": "0.1"}, "epsilon", TypeError),
        ({"step_size": 0}, "step_size", ValueError),
        ({"step_size": math.inf}, "step_size", ValueError),
        ({"steps": -1}, "steps", ValueError),
        ({"steps": 1.5}, "steps", TypeError),
        ({"input_range": (1.0, 0.0)}, "input_range", ValueError),
        ({"input_range": (0.0, 0.5)}, "x: values outside input_range", ValueError),
        ({"input_range": "ab"}, "input_range", ValueError),
    ],
)
def test_bad_arguments(trained, kwargs, key, exc):
    model, x, y = trained
    kw = {"epsilon": 0.1, "step_size": 0.1, "steps": 1, **kwargs}
    with pytest.raises(exc, match=key):
        pgd(model, x, y, **kw)
    if key != "x: values outside input_range":
        with pytest.raises(exc, match=key):
            PGD(model, **kw)


def test_bad_batches(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="y"):
        pgd(model, x, y[:-1], epsilon=0.1, step_size=0.1, steps=1)
    with pytest.raises(TypeError, match="x"):
        pgd(model, x.long(), y, epsilon=0.1, step_size=0.1, steps=1)
