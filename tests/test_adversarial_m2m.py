"""longtail.adversarial.M2mGenerator: slots, seeds, acceptance, batching, counts, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from longtail.adversarial import M2mGenerator


class Constant(nn.Module):
    """Logits ``bias`` for every input, plus a zero-weighted linear term (so x gets a gradient)."""

    def __init__(self, bias: list[float], in_features: int = 64) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, len(bias))
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x.flatten(1))
        return out


class Counting(nn.Module):
    """Wraps a model and records the batch size of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        out: torch.Tensor = self.inner(x)
        return out


def _mlp(classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, classes))


def _images(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """8x8 images in [0, 1]; class c is brighter in rows 2c..2c+1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(y), 1, 8, 8, generator=g) * 0.5
    for c in range(int(y.max()) + 1):
        x[y == c, :, 2 * c : 2 * c + 2, :] += 0.5
    return x


def _trained_g(classes: int = 4) -> nn.Module:
    y = torch.arange(400) % classes
    x = _images(y, seed=1)
    g = _mlp(classes, seed=1)
    opt = torch.optim.Adam(g.parameters(), lr=0.01)
    for _ in range(150):
        loss = F.cross_entropy(g(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in g.parameters():
        p.grad = None
    return g


@pytest.fixture(scope="module")
def g4() -> nn.Module:
    return _trained_g(4)


def _labels(per_class: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((m,), c, dtype=torch.long) for c, m in enumerate(per_class)])


def test_replacement_probability_matches_the_formula():
    counts = [100, 50, 10, 1]
    y = _labels([500, 500, 500, 500])
    gen = M2mGenerator(Constant([0.0] * 4), counts, steps=1)
    expected = torch.tensor([0.0, 0.5, 0.9, 0.99])
    torch.testing.assert_close(gen.replace_probability(y[::500]), expected)
    # class 0 (the largest) is in the batch, so every selected slot has a seed and is optimised
    out = gen.generate(_mlp(4), _images(y), y, generator=torch.Generator().manual_seed(0))
    rate = out.generated.float() / 500
    assert out.generated[0] == 0
    # binomial std <= 0.023; a wrong formula (n_k / n_max, sqrt) is off by >= 0.2 somewhere
    assert (rate - expected).abs().max() < 0.07, rate


def _reference_seed_class_probs(counts, beta, k, batch_classes, per_sample_counts=None):
    w = []
    for k0 in range(len(counts)):
        if k0 not in batch_classes:
            w.append(0.0)
            continue
        gap = max(counts[k0] - counts[k], 0)
        weight = 1 - beta**gap
        if per_sample_counts is not None:
            weight *= per_sample_counts[k0]
        w.append(weight)
    s = sum(w)
    return torch.tensor([v / s for v in w])


@pytest.mark.parametrize("weighting", ["class", "sample"])
def test_seed_class_probabilities(weighting):
    counts, beta = [300, 200, 100, 10], 0.99
    per_batch = [40, 10, 5, 2000]  # unbalanced in the batch: the two weightings differ
    y = _labels(per_batch)
    gen = M2mGenerator(Constant([0.0] * 4), counts, beta=beta, steps=1, seed_weighting=weighting)
    ref = _reference_seed_class_probs(
        counts, beta, 3, {0, 1, 2, 3}, per_batch if weighting == "sample" else None
    )
    # exact: the weight matrix summed per seed class
    w = gen.seed_weights(torch.tensor([3]), y)[0]
    by_class = torch.zeros(4, dtype=torch.float64).index_add_(0, y, w.double())
    torch.testing.assert_close(by_class / by_class.sum(), ref.double())
    # sampled: the seeds drawn for the ~1930 slots of class 3
    out = gen.generate(_mlp(4), _images(y), y, generator=torch.Generator().manual_seed(0))
    slot_class = torch.repeat_interleave(torch.arange(4), out.generated)  # y is sorted by class
    seed_cls = y[out.seed_index][slot_class == 3]
    assert len(seed_cls) > 1800
    freq = torch.bincount(seed_cls, minlength=4).float() / len(seed_cls)
    assert (freq - ref).abs().max() < 0.04, (freq, ref)
    # the two weightings are really different here
    other = _reference_seed_class_probs(
        counts, beta, 3, {0, 1, 2, 3}, None if weighting == "sample" else per_batch
    )
    assert (other - ref).abs().max() > 0.2


def test_seeds_only_from_larger_classes_and_no_seed_keeps_the_slot():
    counts = [100, 50, 10]
    y = _labels([0, 30, 30])  # class 0 absent: class 1 slots have no larger class in the batch
    gen = M2mGenerator(Constant([0.0, 0.0, 30.0]), counts, beta=0.0, steps=1)
    out = gen.generate(_mlp(3), _images(y), y, generator=torch.Generator().manual_seed(0))
    assert out.generated[1] == 0 and out.generated[0] == 0
    assert (counts[2] < torch.tensor(counts)[y[out.seed_index]]).all()
    assert (y[out.seed_index] == 1).all()
    assert not out.replaced[y == 1].any()


def test_confident_g_accepts_subject_to_the_bernoulli():
    counts = [1000, 10]
    y = _labels([200, 800])
    x = _images(y)
    g = Constant([0.0, 20.0])  # p_g(class 1) ~ 1 everywhere
    # beta = 0: acceptance probability 1 - 0^990 = 1, everything selected is accepted
    out = M2mGenerator(g, counts, beta=0.0).generate(
        _mlp(2), x, y, generator=torch.Generator().manual_seed(0)
    )
    assert out.generated[1] > 700
    assert torch.equal(out.accepted, out.generated)
    assert (y[out.replaced] == 1).all()
    assert int(out.replaced.sum()) == int(out.accepted.sum())
    # beta with 1 - beta^990 = 0.5: about half accepted
    beta = 0.5 ** (1 / 990)
    gen = M2mGenerator(g, counts, beta=beta)
    torch.testing.assert_close(
        gen.acceptance_probability(torch.tensor([0]), torch.tensor([1])), torch.tensor([0.5])
    )
    out = gen.generate(_mlp(2), x, y, generator=torch.Generator().manual_seed(1))
    frac = float(out.accepted[1]) / float(out.generated[1])
    assert abs(frac - 0.5) < 0.07, frac  # ~790 draws: std 0.018
    # replaced slots hold new images, the others their own
    r = out.replaced
    assert not torch.equal(out.x[r], x[r])
    assert torch.equal(out.x[~r], x[~r])
    assert torch.equal(out.y, y)


def test_unconfident_g_accepts_nothing_and_slots_keep_real_samples():
    counts = [1000, 10]
    y = _labels([100, 100])
    x = _images(y)
    gen = M2mGenerator(Constant([0.0, 0.0]), counts, beta=0.0, gamma=0.9)  # p_g = 0.5 < gamma
    out = gen.generate(_mlp(2), x, y, generator=torch.Generator().manual_seed(0))
    assert out.generated[1] > 80
    assert out.accepted.sum() == 0 and not out.replaced.any()
    assert torch.equal(out.x, x) and torch.equal(out.y, y)
    assert out.x is not x
    torch.testing.assert_close(out.confidence, torch.full_like(out.confidence, 0.5))


@pytest.mark.slow
def test_objective_decreases_and_translations_reach_the_target(g4):
    counts = [500, 200, 50, 10]
    y = _labels([64, 16, 16, 16])
    x = _images(y, seed=2)
    f = _mlp(4, seed=5)
    gen = M2mGenerator(g4, counts, beta=0.0, gamma=0.5, steps=10, step_size=0.5, input_range=(0, 1))
    out = gen.generate(f, x, y, generator=torch.Generator().manual_seed(0))
    assert out.objective.shape == (10,)
    assert out.objective[-1] < out.objective[0] - 1.0
    target = y[out.replaced]
    with torch.no_grad():
        p_seed = torch.softmax(g4(x[out.seed_index]), 1)
    slots_target = torch.repeat_interleave(torch.arange(4), out.generated)  # y sorted by class
    p_before = p_seed.gather(1, slots_target.view(-1, 1)).view(-1)
    assert out.confidence.mean() > p_before.mean() + 0.3
    assert len(target) > 0
    assert out.x.min() >= 0 and out.x.max() <= 1


def test_one_batched_optimisation(g4):
    counts = [500, 200, 50, 10]
    y = _labels([64, 32, 32, 32])
    g, f = Counting(g4), Counting(_mlp(4))
    gen = M2mGenerator(g, counts, steps=7)
    out = gen.generate(f, _images(y), y, generator=torch.Generator().manual_seed(0))
    m = int(out.generated.sum())
    assert m > 40
    assert g.calls == [m] * 8  # 7 steps + the acceptance check, all M slots at once
    assert f.calls == [m] * 7
    assert len(out.seed_index) == m == len(out.confidence)


def test_counts_per_class(g4):
    counts = [500, 200, 50, 10]
    y = _labels([40, 30, 30, 30])[torch.randperm(130, generator=torch.Generator().manual_seed(0))]
    gen = M2mGenerator(g4, counts, beta=0.99, gamma=0.3, step_size=0.5)
    out = gen.generate(_mlp(4), _images(y), y, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out.accepted, torch.bincount(y[out.replaced], minlength=4))
    assert (out.accepted <= out.generated).all()
    assert out.generated[0] == 0
    assert out.generated.dtype == out.accepted.dtype == torch.int64
    assert out.accepted.sum() > 0


def test_initial_noise_has_the_requested_norm():
    counts = [1000, 10]
    y = _labels([50, 50])
    x = _images(y)
    gen = M2mGenerator(Constant([0.0, 20.0]), counts, beta=0.0, steps=1, step_size=1e-9)
    out = gen.generate(
        Constant([0.0, 0.0]), x, y, generator=torch.Generator().manual_seed(0)
    )  # no gradient at all: x* = seed + noise
    slots = out.replaced.nonzero().view(-1)
    assert len(slots) == len(out.seed_index) > 40
    d = (out.x[slots] - x[out.seed_index]).flatten(1).norm(dim=1)
    torch.testing.assert_close(d, torch.full_like(d, 0.5))


def test_no_grad_grads_modes_and_determinism(g4):
    counts = [500, 200, 50, 10]
    y = _labels([40, 30, 30, 30])
    x = _images(y)
    f = _mlp(4)
    f.train()
    g4.train()
    for p in f.parameters():
        p.grad = torch.ones_like(p)
    gen = M2mGenerator(g4, counts, gamma=0.3, step_size=0.3)
    with torch.no_grad():
        a = gen.generate(f, x, y, generator=torch.Generator().manual_seed(0))
    b = gen(f, x, y, generator=torch.Generator().manual_seed(0))
    c = gen(f, x, y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x, b.x) and torch.equal(a.accepted, b.accepted)
    assert not torch.equal(a.x, c.x)
    assert a.replaced.any()
    assert all(p.grad is None for p in g4.parameters())
    assert all(bool((p.grad == 1).all()) for p in f.parameters())
    assert f.training and g4.training
    g4.eval()
    for p in f.parameters():
        p.grad = None


def test_empty_and_nothing_selected():
    gen = M2mGenerator(Constant([0.0, 0.0]), [10, 10])
    y = _labels([5, 5])
    x = _images(y)
    out = gen.generate(_mlp(2), x, y)  # equal counts: nothing is ever selected
    assert not out.replaced.any() and out.generated.sum() == 0 and torch.equal(out.x, x)
    out = gen.generate(_mlp(2), x[:0], y[:0])
    assert out.x.shape == (0, 1, 8, 8) and out.generated.shape == (2,)


def test_schedule():
    gen = M2mGenerator(Constant([0.0, 0.0]), [10, 1])
    assert gen.start_epoch(200) == 160
    assert M2mGenerator(Constant([0.0, 0.0]), [10, 1], start_fraction=0.5).start_epoch(90) == 45
    with pytest.raises(ValueError, match="epochs"):
        gen.start_epoch(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda(g4):
    counts = [500, 200, 50, 10]
    y = _labels([40, 30, 30, 30]).cuda()
    gen = M2mGenerator(g4.cuda(), counts, gamma=0.3)
    try:
        out = gen.generate(
            _mlp(4).cuda(), _images(y.cpu()).cuda(), y,
            generator=torch.Generator(device="cuda").manual_seed(0),
        )  # fmt: skip
        assert out.x.device.type == "cuda" and out.generated.device.type == "cuda"
    finally:
        g4.cpu()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"beta": 1.0}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": math.nan}, "gamma"),
        ({"lam": -1.0}, "lam"),
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -0.1}, "step_size"),
        ({"steps": 0}, "steps"),
        ({"init_noise": -1.0}, "init_noise"),
        ({"input_range": (1, 0)}, "input_range"),
        ({"seed_weighting": "batch"}, "seed_weighting"),
        ({"start_fraction": 1.5}, "start_fraction"),
        ({"class_counts": [5]}, "class_counts"),
        ({"class_counts": [5, -1]}, "class_counts"),
        ({"class_counts": [0, 0]}, "class_counts"),
    ],
)
def test_bad_hyper_parameters(kwargs, key):
    counts = kwargs.pop("class_counts", [10, 1])
    with pytest.raises((ValueError, TypeError), match=key):
        M2mGenerator(Constant([0.0, 0.0]), counts, **kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="steps"):
        M2mGenerator(Constant([0.0, 0.0]), [10, 1], steps=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="g"):
        M2mGenerator(lambda x: x, [10, 1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="beta"):
        M2mGenerator(Constant([0.0, 0.0]), [10, 1], beta="0.9")  # type: ignore[arg-type]


def test_class_count_mismatch_names_the_model():
    y = _labels([20, 20])
    x = _images(y)
    gen = M2mGenerator(Constant([0.0, 0.0, 0.0]), [100, 1])  # g has 3 classes, the data 2
    with pytest.raises(ValueError, match=r"g: outputs 3 classes but class_counts has 2"):
        gen.generate(_mlp(2), x, y, generator=torch.Generator().manual_seed(0))
    gen = M2mGenerator(Constant([0.0, 0.0]), [100, 1])
    with pytest.raises(ValueError, match=r"f: outputs 5 classes"):
        gen.generate(_mlp(5), x, y, generator=torch.Generator().manual_seed(0))


def test_bad_batches():
    gen = M2mGenerator(Constant([0.0, 0.0]), [100, 1])
    y = _labels([5, 5])
    x = _images(y)
    with pytest.raises(ValueError, match="y: labels must lie in"):
        gen.generate(_mlp(2), x, y + 1)
    with pytest.raises(ValueError, match="y"):
        gen.generate(_mlp(2), x, y.int())
    with pytest.raises(ValueError, match="y"):
        gen.generate(_mlp(2), x, y[:3])
    with pytest.raises(TypeError, match="x"):
        gen.generate(_mlp(2), x.long(), y)
    with pytest.raises(TypeError, match="f"):
        gen.generate(None, x, y)  # type: ignore[arg-type]
