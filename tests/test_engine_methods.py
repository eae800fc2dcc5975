"""Method registry contract, models, augmentation and schedules of the engine."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from longtail.engine import methods as methods_module
from longtail.engine.augment import random_crop, random_flip
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import Method, Param
from longtail.engine.models import CNN, MLP, ResNet32, build_model
from longtail.engine.runner.benchmark import data_problem
from longtail.engine.schedule import LRSchedule
from longtail.engine.trainer import Trainer
from longtail.tracks.single_label import METHODS, VOCABULARY
from longtail.tracks.single_label.losses import LOSS_COMPONENTS
from longtail.tracks.single_label.task import SingleLabelTask, single_label_task
from test_engine_fixtures import tiny_config, tiny_images, tiny_vectors

REQUIRED = {
    "erm",
    "cb-resample",
    "inv-freq",
    "cb-softmax",
    "cb-focal",
    "focal",
    "drw",
    "ldam-drw",
    "la-loss",
    "la-posthoc",
    "tau-norm",
    "balanced-softmax",
    "el",
    "el-drw",
    "el-la",
}


def test_registry_has_the_required_methods() -> None:
    assert set(METHODS) >= REQUIRED


@pytest.mark.parametrize("name", list(METHODS))
def test_registry_entry_is_documented(name: str) -> None:
    m = METHODS[name]
    assert isinstance(m, Method)
    assert m.name == name
    assert m.description and m.paper and m.citation
    assert m.head in ("linear", "cosine")
    assert m.sampler in ("instance", "class-balanced", "sqrt", "progressive", "drs", "smote")
    for key, p in m.params.items():
        assert isinstance(p, Param)
        assert p.check(f"x.{key}", p.default) == p.default  # defaults are valid


@pytest.mark.parametrize("name", list(METHODS))
def test_contract_every_method_trains_two_steps(name: str) -> None:
    """Every registered method trains 2 steps on tiny data and gives finite metrics."""
    # methods that need images (SLA's transforms, CMO's pasted boxes) train on tiny images
    data = tiny_images() if data_problem(METHODS[name], tiny_vectors()) else tiny_vectors()
    cfg = tiny_config(epochs=2, batch_size=64)  # 45 samples: 1 step per epoch, 2 epochs
    task = single_label_task(METHODS[name], data, cfg)
    result = Trainer(task, data, cfg, seed=0).fit()
    assert result is not None
    assert len(result.history) == 2
    for row in result.history:
        assert math.isfinite(row["train_loss"])
    for key in ("balanced_accuracy", "accuracy", "many", "medium", "few", "ece"):
        v = result.metrics[key]
        assert math.isfinite(v) and 0.0 <= v <= 1.0, (key, v)
    assert len(result.details["per_class"]) == data.num_classes
    assert all(torch.isfinite(t).all() for t in result.model_state.values())


def test_paper_defaults() -> None:
    assert METHODS["focal"].defaults == {"gamma": 2.0}
    assert METHODS["cb-focal"].defaults == {"beta": 0.9999, "gamma": 1.0, "prior_bias": True}
    assert METHODS["cb-softmax"].defaults == {"beta": 0.9999}
    assert METHODS["ldam-drw"].defaults["max_margin"] == 0.5
    assert METHODS["ldam-drw"].defaults["scale"] == 30.0
    assert METHODS["ldam-drw"].head == "cosine"
    assert METHODS["drw"].defaults == {"drw_beta": 0.9999, "drw_start_fraction": 0.8}
    assert METHODS["la-loss"].defaults == {"tau": 1.0}
    assert METHODS["la-posthoc"].posthoc == "logit-adjust"
    assert METHODS["tau-norm"].posthoc == "tau-norm"
    assert METHODS["el"].defaults == {"log_end": 0.75}
    assert METHODS["cb-resample"].sampler == "class-balanced"


def test_overrides_replace_defaults() -> None:
    params = METHODS["la-loss"].resolve_params({"tau": 2})
    assert params == {"tau": 2.0}


def test_override_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"method_params\.focal\.tau"):
        METHODS["focal"].resolve_params({"tau": 1.0})


def test_drw_weights_switch_on_for_the_last_fifth() -> None:
    crit = METHODS["drw"].build_criterion([50, 10, 2], total_epochs=10)
    dev = torch.device("cpu")
    assert crit.context(7, dev).weight is None
    w = crit.context(8, dev).weight
    assert w is not None
    assert w.sum().item() == pytest.approx(3.0, rel=1e-5)
    assert w[2] > w[1] > w[0]


def test_drw_loss_is_weighted_after_the_switch() -> None:
    counts = [50, 10, 2]
    crit = METHODS["drw"].build_criterion(counts, total_epochs=10)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert crit(z, y, 0).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)
    beta = 0.9999
    eff = torch.tensor([(1 - beta**n) / (1 - beta) for n in counts], dtype=torch.float64)
    w = 1 / eff
    w = (w / w.sum() * 3).float()
    expected = (F.cross_entropy(z, y, reduction="none") * w[y]).mean()
    assert crit(z, y, 9).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("loss", list(LOSS_COMPONENTS))
def test_drw_reaches_every_loss_that_declares_it_and_is_refused_elsewhere(loss: str) -> None:
    """``drw: true`` with a component whose ``drw_weight`` is set changes the loss at the switch
    (the weights reach it); any other component refuses it, naming the key."""
    from longtail.engine.methods import recipe_from_dict

    if not LOSS_COMPONENTS[loss].drw_weight:
        with pytest.raises(ValueError, match=r"'recipes\.r\.drw'"):
            recipe_from_dict("r", {"loss": loss, "drw": True}, "single-label")
        return
    method = recipe_from_dict("r", {"loss": loss, "drw": True}, "single-label")
    crit = method.build_criterion([50, 10, 2], total_epochs=10)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert crit(z, y, 9).item() != pytest.approx(crit(z, y, 0).item(), rel=1e-3)


@pytest.mark.parametrize("loss", list(LOSS_COMPONENTS))
def test_logit_shift_is_what_the_loss_computes(loss: str) -> None:
    """A component's ``logit_shift`` s claims "the loss is CE(z + s, y)": checked against the
    criterion, without and with DRW's weights (``mean_i w_{y_i} CE_i``, divided by N); a component
    without one refuses ``mix``."""
    from longtail.engine.methods import recipe_from_dict

    comp = LOSS_COMPONENTS[loss]
    if comp.logit_shift is None:
        with pytest.raises(ValueError, match=r"'recipes\.r\.mix'"):
            recipe_from_dict("r", {"loss": loss, "mix": "mixup"}, "single-label")
        return
    params = {"tau": 0.7} if "tau" in comp.params else {}
    method = recipe_from_dict("r", {"loss": loss, "drw": True, "params": params}, "single-label")
    counts = [50, 10, 2]
    crit = method.build_criterion(counts, total_epochs=10)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    prior = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    t = {"ce": 0.0, "la": 0.7, "balanced-softmax": 1.0}[loss]  # independent of the component
    ce = F.cross_entropy(z + t * prior.log(), y, reduction="none")
    assert crit(z, y, 0).item() == pytest.approx(ce.mean().item(), rel=1e-5)
    w = crit.context(9, z.device).weight
    assert w is not None
    assert crit(z, y, 9).item() == pytest.approx((ce * w[y]).mean().item(), rel=1e-5)


def test_only_the_newly_weighted_drw_stages_change_identity() -> None:
    """la / balanced-softmax / el-la with DRW ignored the weights before they took them: their
    stages carry a mark (a stored stage is not reused); every other identity is unchanged."""
    from longtail.engine.methods import recipe_from_dict

    def ident(recipe: dict[str, object]) -> dict[str, object]:
        m = recipe_from_dict("r", recipe, "single-label")
        return m.stage_identity(m.defaults)

    for loss in ("la", "balanced-softmax", "el-la"):
        assert ident({"loss": loss, "drw": True}).get("drw_weights") is True
        assert "drw_weights" not in ident({"loss": loss})
    for name in ("drw", "ldam-drw", "el-drw", "mixup-drw", "remix-drw", "la-loss"):
        assert "drw_weights" not in METHODS[name].stage_identity(METHODS[name].defaults)


def test_weighted_losses_come_from_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weighted CE (DRW after the switch, inv-freq) is the library's LA loss with tau 0, not a copy."""
    import longtail.losses
    import longtail.tracks.single_label.losses as components

    assert not hasattr(methods_module, "weighted_cross_entropy")
    assert components.logit_adjusted_loss is longtail.losses.logit_adjusted_loss
    calls: list[dict[str, object]] = []
    real = longtail.losses.logit_adjusted_loss

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(components, "logit_adjusted_loss", spy)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    METHODS["drw"].build_criterion([50, 10, 2], total_epochs=10)(z, y, 9)
    METHODS["inv-freq"].build_criterion([50, 10, 2], total_epochs=10)(z, y, 0)
    assert len(calls) == 2
    assert all(c["tau"] == 0.0 and c["weight"] is not None for c in calls)


def test_weighted_and_plain_ce_numerics_are_unchanged() -> None:
    """Bit-identical to the engine's former formulas (running benchmarks and resumes agree)."""
    g = torch.Generator().manual_seed(2)
    counts = [50, 10, 2]
    for n in (1, 5, 32, 45):
        z = torch.randn(n, 3, generator=g)
        y = torch.randint(0, 3, (n,), generator=g)
        crit = METHODS["drw"].build_criterion(counts, total_epochs=10)
        assert torch.equal(crit(z, y, 0), F.cross_entropy(z, y))
        w = crit.context(9, z.device).weight
        assert w is not None
        former = (F.cross_entropy(z, y, reduction="none") * w[y]).mean()
        assert torch.equal(crit(z, y, 9), former)
        manual = sum(-w[y[i]] * torch.log_softmax(z[i].double(), 0)[y[i]] for i in range(n)) / n
        assert crit(z, y, 9).item() == pytest.approx(float(manual), rel=1e-6)  # divides by N


def test_el_la_adds_the_log_prior() -> None:
    from longtail.losses import encouraging_loss

    counts = [30, 10, 3]
    crit = METHODS["el-la"].build_criterion(counts, total_epochs=2)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 1])
    prior = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    expected = encouraging_loss(z + torch.log(prior), y, log_end=0.75)
    assert crit(z, y, 0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_posthoc_logit_adjustment_is_applied_at_test_time() -> None:
    data = tiny_vectors()
    cfg = tiny_config()
    task = SingleLabelTask(METHODS["la-posthoc"], data, cfg)
    model = task.build_model()
    x = data.test_x[:5]
    raw = model(x)
    prior = torch.tensor(data.class_counts, dtype=torch.float32) / sum(data.class_counts)
    assert torch.allclose(task.predict_logits(model, x), raw - torch.log(prior), atol=1e-5)


def test_tau_norm_normalises_rows_and_drops_bias() -> None:
    data = tiny_vectors()
    task = SingleLabelTask(METHODS["tau-norm"], data, tiny_config())
    model = task.build_model()
    task.postprocess(model)
    norms = model.head.weight.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert torch.count_nonzero(model.head.bias) == 0


# ---- models -------------------------------------------------------------------------------------


def test_model_shapes() -> None:
    assert MLP(8, (16, 4))(torch.randn(3, 8)).shape == (3, 4)
    assert CNN(1, (4, 8))(torch.randn(2, 1, 28, 28)).shape == (2, 8)
    assert CNN(1, (4, 8))(torch.randn(2, 28, 28)).shape == (2, 8)
    net = ResNet32()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    model = build_model("resnet32", (3, 32, 32), 10)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.45e6 < n_params < 0.48e6  # He et al.: 0.46M parameters


def test_cosine_head_gives_cosines() -> None:
    model = build_model("mlp", (8,), 3, head="cosine", hidden=(16,))
    out = model(torch.randn(5, 8))
    assert out.shape == (5, 3)
    assert out.abs().max() <= 1.0 + 1e-5


def test_build_model_rejects_unknown_head() -> None:
    with pytest.raises(ValueError, match="head"):
        build_model("mlp", (8,), 3, head="arc")


# ---- augmentation -------------------------------------------------------------------------------


def test_random_crop_is_a_window_of_the_padded_image() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 5, 5, generator=g) + 1.0  # strictly positive: padding shows as zeros
    out = random_crop(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_random_crop_zero_padding_is_identity_and_deterministic() -> None:
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(random_crop(x, 0), x)
    a = random_crop(x, 1, torch.Generator().manual_seed(5))
    b = random_crop(x, 1, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_random_flip_flips_some() -> None:
    x = torch.rand(64, 1, 3, 3)
    out = random_flip(x, torch.Generator().manual_seed(0))
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    assert all(s or f for s, f in zip(same, flipped, strict=True))
    assert 10 < sum(flipped) < 54


def test_random_crop_rejects_negative_padding() -> None:
    with pytest.raises(ValueError, match="padding"):
        random_crop(torch.rand(1, 1, 3, 3), -1)


# ---- schedule -----------------------------------------------------------------------------------


def test_warmup_then_cosine() -> None:
    s = LRSchedule(0.1, epochs=10, steps_per_epoch=10, warmup_epochs=2, kind="cosine")
    assert s.lr(0) == pytest.approx(0.1 / 20)
    assert s.lr(19) == pytest.approx(0.1)
    assert s.lr(20) == pytest.approx(0.1)
    mid = 20 + 40
    assert s.lr(mid) == pytest.approx(0.05)
    assert s.lr(99) < 0.001


def test_step_schedule() -> None:
    s = LRSchedule(0.1, epochs=10, steps_per_epoch=2, kind="step", milestones=(4, 8), lr_decay=0.1)
    assert s.lr(7) == pytest.approx(0.1)
    assert s.lr(8) == pytest.approx(0.01)
    assert s.lr(16) == pytest.approx(0.001)


def test_schedule_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        LRSchedule(0.1, epochs=2, steps_per_epoch=2, kind="linear")


def test_image_methods_with_augmentation_train() -> None:
    data = tiny_images()
    cfg = tiny_config(epochs=2, batch_size=16, augment=True, crop_padding=1)
    result = Trainer(SingleLabelTask(METHODS["ldam-drw"], data, cfg), data, cfg, seed=0).fit()
    assert result is not None
    assert math.isfinite(result.metrics["balanced_accuracy"])


@pytest.mark.parametrize("task", list(TASK_KINDS))
def test_cli_lists_every_method_of_every_task(
    task: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from longtail.cli import main

    assert main(["methods", "--task", task]) == 0
    out = capsys.readouterr().out
    for name in TASK_KINDS[task].methods:
        assert f"\n{name} " in "\n" + out, (task, name)


def test_power_sampler_draws_as_the_fixed_exponent_samplers_and_in_between() -> None:
    """``sampler: power`` with ``sampler_q`` q: classes drawn ~ n_c^q; at 1/2 and 0 the indices are
    the square-root and class-balanced samplers', draw for draw."""
    from longtail.engine.methods import recipe_from_dict

    data = tiny_vectors(counts=(40, 12, 4, 2))
    cfg = tiny_config(epochs=3)

    def draws(recipe: dict[str, object], epoch: int = 1) -> torch.Tensor:
        task = SingleLabelTask(recipe_from_dict("r", recipe, "single-label"), data, cfg)
        return task.sampler(epoch, seed=3, rank=0, world_size=1)

    power = {"loss": "ce", "sampler": "power"}
    assert torch.equal(draws(power), draws({"loss": "ce", "sampler": "sqrt"}))
    zero = {**power, "params": {"sampler_q": 0.0}}
    assert torch.equal(draws(zero), draws({"loss": "ce", "sampler": "class-balanced"}))
    # q 0.8 over many epochs: the class frequencies follow n_c^0.8
    y = data.train_y
    seen = torch.cat([y[draws({**power, "params": {"sampler_q": 0.8}}, e)] for e in range(200)])
    freq = torch.bincount(seen, minlength=4).double() / seen.numel()
    want = torch.tensor([40, 12, 4, 2], dtype=torch.float64) ** 0.8
    torch.testing.assert_close(freq, want / want.sum(), atol=0.01, rtol=0.0)


@pytest.mark.parametrize("q", [-0.1, 1.5])
def test_power_sampler_exponent_out_of_range_names_the_key(q: float) -> None:
    from longtail.engine.methods import recipe_from_dict

    with pytest.raises(ValueError, match=r"recipes\.r\.params\.sampler_q"):
        recipe_from_dict("r", {"loss": "ce", "sampler": "power", "params": {"sampler_q": q}})


@pytest.mark.parametrize("sampler", VOCABULARY.samplers)
def test_every_registered_sampler_composes_and_draws(sampler: str) -> None:
    """The vocabulary's samplers, each in a recipe with its default parameters: a full epoch of
    valid indices (a new sampler is covered without new test code)."""
    from longtail.engine.methods import recipe_from_dict

    data = tiny_vectors(counts=(40, 12, 4, 2))
    task = SingleLabelTask(
        recipe_from_dict("r", {"loss": "ce", "sampler": sampler}, "single-label"),
        data,
        tiny_config(epochs=3),
    )
    task.training_data(data, seed=0)
    idx = task.sampler(1, seed=0, rank=0, world_size=1)
    n = len(task.data.train_y)
    assert idx.dtype == torch.int64 and len(idx) == n
    assert int(idx.min()) >= 0 and int(idx.max()) < n
