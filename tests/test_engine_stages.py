"""Stages shared by methods, composed recipes, and wiring: every registry entry uses the sampler,
head, loss, hyper-parameters and optimiser settings it says, and the report reads them right."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml

from longtail import data as ltdata
from longtail.cli import main
from longtail.engine.classifier import prior_bias
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.methods import recipe_from_dict
from longtail.engine.optimizers import Optim
from longtail.engine.report import format_table
from longtail.engine.runner import train_method
from longtail.engine.runner.benchmark import data_problem
from longtail.engine.tasks import Batch
from longtail.engine.trainer import Trainer
from longtail.heads import CosineClassifier, LearnableWeightScaling
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import (
    SecondStageTask,
    SingleLabelTask,
    second_stage_config,
    single_label_task,
)
from test_engine_fixtures import tiny_config, tiny_images, tiny_vectors


def _digits(tmp_path: Path, **extra: Any) -> Path:
    raw: dict[str, Any] = {
        "name": "stages",
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [32]},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "eval_every": 0, "num_threads": 1},
    }
    raw.update(extra)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _count_fits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = Trainer.fit

    def counted(self: Trainer, **kw: Any) -> Any:
        calls.append(f"{self.label}:{self.config.train.epochs}")
        return real(self, **kw)

    monkeypatch.setattr(Trainer, "fit", counted)
    return calls


def test_a_stage_is_trained_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fits(monkeypatch)
    cfg = _digits(tmp_path)
    args = ["bench", str(cfg), "--methods", "erm,la-posthoc,tau-norm,crt", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    stage_fits = [c for c in calls if c.startswith("stage ")]
    assert len(stage_fits) == 1, calls  # erm's stage, shared by the four methods
    assert len(list((tmp_path / "run" / "stages").iterdir())) == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stages_trained"] == 1
    erm = json.loads((tmp_path / "run" / "erm" / "seed_0" / "result.json").read_text())
    post = json.loads((tmp_path / "run" / "la-posthoc" / "seed_0" / "result.json").read_text())
    assert erm["stage"] == post["stage"]
    assert erm["metrics"] != post["metrics"]  # the post-hoc step changed the predictions
    # a finished run is reused, not retrained: --resume trains nothing
    calls.clear()
    assert main([*args, "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert calls == []
    again = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["stages_trained"] == 0
    assert again["methods"] == results["methods"]


def test_an_interrupted_second_stage_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result lost after its stage finished: --resume reuses the stage, redoes the second stage."""
    cfg = _digits(tmp_path)
    args = ["bench", str(cfg), "--methods", "crt", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    first = json.loads((tmp_path / "run" / "crt" / "seed_0" / "result.json").read_text())
    (tmp_path / "run" / "crt" / "seed_0" / "result.json").unlink()
    calls = _count_fits(monkeypatch)
    assert main([*args, "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert calls == ["crt:1"]  # only the second stage (finished checkpoint: evaluation only)
    again = json.loads((tmp_path / "run" / "crt" / "seed_0" / "result.json").read_text())
    assert again["metrics"] == first["metrics"]


def test_composed_recipe_from_a_config(tmp_path: Path) -> None:
    recipes = {
        "sqrt-la-crt": {
            "loss": "la",
            "sampler": "sqrt",
            "second_stage": "crt",
            "params": {"tau": 0.5},
        }
    }
    cfg = _digits(tmp_path, recipes=recipes, methods=["sqrt-la-crt"])
    assert main(["bench", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    r = json.loads((tmp_path / "run" / "sqrt-la-crt" / "seed_0" / "result.json").read_text())
    assert r["params"]["tau"] == 0.5
    assert r["composition"] == {
        "loss": "la",
        "drw": False,
        "sampler": "sqrt",
        "head": "linear",
        "mix": None,
        "posthoc": None,
        "second_stage": "crt",
    }
    assert [row.get("stage") for row in r["history"]] == [None, None, 2.0]


@pytest.mark.parametrize(
    ("recipe", "key"),
    [
        ({"loss": "nope"}, "recipes.r.loss"),
        ({"loss": "ce", "sampler": "rare"}, "recipes.r.sampler"),
        ({"loss": "focal", "mix": "mixup"}, "recipes.r.mix"),
        ({"loss": "el-la", "mix": "remix"}, "recipes.r.mix"),
        # these losses weight the classes themselves: DRW's weights would be silently dropped
        ({"loss": "cb-softmax", "drw": True}, "recipes.r.drw"),
        ({"loss": "inv-freq", "drw": True}, "recipes.r.drw"),
        ({"loss": "ldam", "second_stage": "crt"}, "recipes.r.second_stage"),
        ({"loss": "la", "params": {"gamma": 1.0}}, "recipes.r.params.gamma"),
        ({"loss": "la", "params": {"tau": -1.0}}, "recipes.r.params.tau"),
        ({"loss": "ce", "colour": "red"}, "recipes.r.colour"),
        ({"sampler": "sqrt"}, "recipes.r.loss"),
        ({"loss": "la", "posthoc": "logit-adjust"}, "recipes.r"),
        ({"loss": ["ce"]}, "recipes.r.loss"),
        ({"loss": "ce", "second_stage": "lws", "posthoc": "tau-norm"}, "recipes.r.posthoc"),
    ],
)
def test_bad_recipes_name_the_key(recipe: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}"):
        config_from_dict({"recipes": {"r": recipe}, "methods": ["r"]})


def test_recipe_cannot_shadow_a_preset() -> None:
    with pytest.raises(ConfigError, match=r"recipes\.erm"):
        config_from_dict({"recipes": {"erm": {"loss": "ce"}}})


@pytest.mark.parametrize("name", ["balanced", "stages", "../up", "a/b", ".."])
def test_recipe_names_are_safe_folder_names(name: str) -> None:
    with pytest.raises(ConfigError, match="recipe name"):
        config_from_dict({"recipes": {name: {"loss": "ce"}}})


def test_drw_with_a_posthoc_step(tmp_path: Path) -> None:
    """A DRW first stage finished by a post-hoc step (no second-stage training)."""
    method = recipe_from_dict("drw-la", {"loss": "ce", "drw": True, "posthoc": "logit-adjust"})
    record = train_method(method, tiny_vectors(), tiny_config(epochs=2), seed=0, out_dir=tmp_path)
    assert record["metrics"]["balanced_accuracy"] is not None


def test_a_diverged_run_exits_1_and_a_bad_value_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _digits(tmp_path, methods=["erm"])
    args = ["bench", str(cfg), "--no-progress"]
    # lr 1e30 overflows the weights in the first steps: the non-finite loss stops the run
    raw = yaml.safe_load(cfg.read_text())
    raw["train"]["lr"] = 1e30
    cfg.write_text(yaml.safe_dump(raw))
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    assert "non-finite loss" in capsys.readouterr().err
    # a value only found wrong once the data is read: one line, exit 2 (no traceback)
    raw["train"]["lr"] = 0.05
    raw["train"]["augment"] = True
    cfg.write_text(yaml.safe_dump(raw))
    assert main([*args, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "train.augment" in err and "Traceback" not in err


# ---- wiring: sampler, head, loss, params, optimiser --------------------------------------------

_SAMPLERS = {
    "cb-resample": ltdata.ClassBalancedSampler,
    "sqrt-resample": ltdata.SquareRootSampler,
    "drs": ltdata.ClassBalancedSampler,  # tiny_config: 2 epochs, re-sampling from epoch int(0.8 * 2)
}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_uses_its_sampler(name: str) -> None:
    data = tiny_vectors()
    task = SingleLabelTask(METHODS[name], data, tiny_config())
    expected = _SAMPLERS.get(name, ltdata.InstanceBalancedSampler)(data.train_y, seed=5)
    expected.set_epoch(1)
    assert torch.equal(task.sampler(1, seed=5, rank=0, world_size=1), expected.global_indices())
    if METHODS[name].second_stage in ("crt", "lws"):
        second = SecondStageTask(
            METHODS[name], data, tiny_config(), stage_state=task.build_model().state_dict()
        )
        cb = ltdata.ClassBalancedSampler(data.train_y, seed=5)
        cb.set_epoch(1)
        assert torch.equal(second.sampler(1, seed=5, rank=0, world_size=1), cb.global_indices())


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_builds_its_head(name: str) -> None:
    model = SingleLabelTask(METHODS[name], tiny_vectors(), tiny_config()).build_model()
    expected = CosineClassifier if name == "ldam-drw" else torch.nn.Linear
    assert type(model.head) is expected  # type: ignore[union-attr]


def _ref_loss(
    name: str, z: torch.Tensor, y: torch.Tensor, counts: torch.Tensor, p: dict[str, Any]
) -> torch.Tensor:
    """Independent formulas of the first-stage losses (no DRW: epoch 0)."""
    logp = F.log_softmax(z, 1)
    prior = counts / counts.sum()
    c = z.shape[1]
    if name in (
        "erm",
        "cb-resample",
        "sqrt-resample",
        "drw",
        "la-posthoc",
        "tau-norm",
        "crt",
        "lws",
        "weight-balancing",
        "drs",
        "smote",
        "m2m",  # the first stage (g) of M2m is plain ERM
        "m2m-ldam-drw",
        "sla",  # SLA's joint / class heads: the (class-level) loss of SingleLabelTask is CE
        "sla-mt",
        "sla-da",
    ):
        return F.cross_entropy(z, y)
    if name == "inv-freq":
        w = (1 / counts) / (1 / counts).sum() * c
        return (w[y] * -logp.gather(1, y[:, None])[:, 0]).mean()
    if name == "cb-softmax":
        w = (1 - p["beta"]) / (1 - p["beta"] ** counts)
        w = w / w.sum() * c
        return (w[y] * -logp.gather(1, y[:, None])[:, 0]).mean()
    if name == "focal":
        lp = logp.gather(1, y[:, None])[:, 0]
        return (-((1 - lp.exp()) ** p["gamma"]) * lp).mean()
    if name in ("la-loss", "balanced-softmax"):
        tau = p.get("tau", 1.0)
        return F.cross_entropy(z + tau * prior.log(), y)
    if name == "ldam-drw":
        m = counts**-0.25
        m = m * (p["max_margin"] / m.max())
        zz = z - F.one_hot(y, c) * m[y][:, None]
        return F.cross_entropy(p["scale"] * zz, y)
    if name in ("el", "el-drw", "el-la"):
        zz = z + p["tau"] * prior.log() if name == "el-la" else z
        lp = F.log_softmax(zz, 1).gather(1, y[:, None])[:, 0]
        pt = lp.exp()
        le = p["log_end"]
        bonus = torch.where(pt > le, math.log(1 - le) - (pt - le) / (1 - le), torch.log1p(-pt))
        return (-lp + bonus).mean()
    if name == "cb-focal":
        w = (1 - p["beta"]) / (1 - p["beta"] ** counts)
        w = w / w.sum() * c
        t = F.one_hot(y, c).float()
        bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        mod = torch.exp(-p["gamma"] * t * z - p["gamma"] * torch.log1p(torch.exp(-z)))
        return (w[y][:, None] * mod * bce).sum() / t.sum()
    raise KeyError(name)


@pytest.mark.parametrize("name", [m for m in METHODS if METHODS[m].mix is None])
def test_every_method_trains_with_its_loss(name: str) -> None:
    data = tiny_vectors()
    task = SingleLabelTask(METHODS[name], data, tiny_config(epochs=10))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 4, generator=g, dtype=torch.float64).float()
    if name == "ldam-drw":
        z = z.tanh()  # cosine logits
    y = torch.randint(0, 4, (16,), generator=g)
    counts = torch.tensor(data.class_counts, dtype=torch.float32)
    got = task.criterion(z, y, 0)
    torch.testing.assert_close(
        got, _ref_loss(name, z, y, counts, task.params), rtol=1e-4, atol=1e-5
    )


def _loss_value(name: str, overrides: dict[str, Any], epoch: int) -> float:
    data = tiny_vectors()
    task = SingleLabelTask(METHODS[name], data, tiny_config(epochs=10), params=overrides)
    torch.manual_seed(0)
    model = task.build_model()
    batch = Batch(data.train_x, data.train_y, torch.arange(len(data.train_y)))
    torch.manual_seed(1)
    return float(task.training_step(model, batch, epoch, 0).loss.detach())


def _cmo_loss_values(name: str, overrides: dict[str, Any]) -> list[float]:
    """A CMO method's loss on tiny images at epochs 0, 6 and 9 of 10, for 16 seeds of its draws
    (some paste a box, some do not: the official box can be empty on small images)."""
    data = tiny_images(counts=(16, 8, 4), size=16)
    task = SingleLabelTask(METHODS[name], data, tiny_config(epochs=10), params=overrides)
    torch.manual_seed(0)
    model = task.build_model()
    batch = Batch(data.train_x, data.train_y, torch.arange(len(data.train_y)))
    values = []
    for epoch in (0, 6, 9):
        for seed in range(16):
            torch.manual_seed(seed)
            values.append(float(task.training_step(model, batch, epoch, 0).loss.detach()))
    return values


_NEW_VALUE = {
    "cmo_prob": 0.2,
    "cmo_weight_power": 0.0,
    "cmo_start_fraction": 0.5,
    "cmo_end_fraction": 0.5,
    "beta": 0.9,
    "drw_beta": 0.9,
    "drw_start_fraction": 0.5,
    "tau": 0.3,
    "gamma": 0.5,
    "max_margin": 0.2,
    "scale": 10.0,
    "log_end": 0.05,
    "mix_alpha": 0.3,
    "remix_kappa": 1.5,
    "remix_tau": 0.9,
    "stage1_weight_decay": 0.0,
}


@pytest.mark.parametrize(
    ("name", "param"),
    [(n, k) for n, m in METHODS.items() for k, p in m.params.items() if p.stage == 1],
)
def test_every_first_stage_override_reaches_the_loss(name: str, param: str) -> None:
    if param == "prior_bias":
        on = SingleLabelTask(METHODS[name], tiny_vectors(), tiny_config()).setup()
        off = SingleLabelTask(METHODS[name], tiny_vectors(), tiny_config(), params={param: False})
        assert on.optimizers is not None and off.setup().optimizers is None
        return
    if param == "stage1_weight_decay":
        task = SingleLabelTask(METHODS[name], tiny_vectors(), tiny_config(), params={param: 0.25})
        spec = task.setup().optimizers
        assert spec is not None and spec["default"].weight_decay == 0.25
        return
    if METHODS[name].mix == "cmo":  # images; some draws paste, some do not
        new = {param: _NEW_VALUE[param]}
        assert _cmo_loss_values(name, new) != _cmo_loss_values(name, {})
        return
    if param == "drs_start_fraction":  # reaches the sampler: 0.5 * 10 = 5 <= 6 < 8
        late = SingleLabelTask(METHODS[name], tiny_vectors(), tiny_config(epochs=10))
        early = SingleLabelTask(
            METHODS[name], tiny_vectors(), tiny_config(epochs=10), params={param: 0.5}
        )
        assert not torch.equal(
            late.sampler(6, seed=0, rank=0, world_size=1),
            early.sampler(6, seed=0, rank=0, world_size=1),
        )
        return
    if param in ("sla_family", "inference"):  # reach the transforms and the heads
        rgb = tiny_images()
        rgb.train_x = rgb.train_x.repeat(1, 3, 1, 1)
        rgb.test_x = rgb.test_x.repeat(1, 3, 1, 1)
        value = {"sla_family": "channel_permutation", "inference": "sd"}[param]
        tasks = [
            single_label_task(METHODS[name], rgb, tiny_config(), p) for p in ({}, {param: value})
        ]
        before, after = ((t.m, t.num_outputs) for t in tasks)  # type: ignore[attr-defined]
        assert before != after
        return
    if param == "smote_k_neighbors":  # reaches the over-sampled data
        data = tiny_vectors(counts=(24, 12, 8, 6))
        outs = [
            SingleLabelTask(METHODS[name], data, tiny_config(), params={param: k})
            .training_data(data, seed=0)
            .train_x
            for k in (1, 5)
        ]
        assert not torch.equal(outs[0], outs[1])
        return
    epoch = 6 if param == "drw_start_fraction" else 9  # DRW: 0.5 * 10 = 5 <= 6 < 8
    assert _loss_value(name, {param: _NEW_VALUE[param]}, epoch) != _loss_value(name, {}, epoch)


def test_posthoc_overrides_reach_the_predictions() -> None:
    data = tiny_vectors()
    x = data.test_x
    la = {
        t: SingleLabelTask(METHODS["la-posthoc"], data, tiny_config(), params={"tau": t})
        for t in (1.0, 2.5)
    }
    torch.manual_seed(0)
    model = la[1.0].build_model()
    prior = torch.tensor(data.class_counts, dtype=torch.float32)
    prior = (prior / prior.sum()).log()
    with torch.no_grad():
        for t, task in la.items():
            torch.testing.assert_close(task.predict_logits(model, x), model(x) - t * prior)
    tn = {
        t: SingleLabelTask(METHODS["tau-norm"], data, tiny_config(), params={"tau": t})
        for t in (1.0, 0.5)
    }
    weights = {}
    for t, task in tn.items():
        torch.manual_seed(0)
        m = task.build_model()
        w0 = m.head.weight.detach().clone()  # type: ignore[union-attr]
        task.postprocess(m)
        weights[t] = m.head.weight.detach()  # type: ignore[union-attr]
        torch.testing.assert_close(weights[t], w0 / w0.norm(dim=1, keepdim=True) ** t)


def test_ldam_predicts_with_its_scale() -> None:
    data = tiny_vectors()
    for s in (30.0, 7.0):
        task = SingleLabelTask(METHODS["ldam-drw"], data, tiny_config(), params={"scale": s})
        torch.manual_seed(0)
        model = task.build_model()
        with torch.no_grad():
            torch.testing.assert_close(
                task.predict_logits(model, data.test_x), s * model(data.test_x)
            )


def test_cosine_classifier_applies_its_scale() -> None:
    torch.manual_seed(0)
    head = CosineClassifier(5, 3, scale=4.0)
    x = torch.randn(7, 5)
    cos = F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T
    torch.testing.assert_close(head(x), 4.0 * cos)


def test_lws_head_scales_logits_and_bias() -> None:
    lin = torch.nn.Linear(4, 3)
    h = LearnableWeightScaling(lin)
    with torch.no_grad():
        h.scales.copy_(torch.tensor([1.0, 2.0, 0.5]))
    x = torch.randn(5, 4)
    torch.testing.assert_close(h(x), lin(x) * torch.tensor([1.0, 2.0, 0.5]))
    with pytest.raises(TypeError, match="linear"):
        LearnableWeightScaling(torch.nn.Conv1d(1, 1, 1))  # type: ignore[arg-type]


def test_weight_decay_reaches_the_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[float]] = []
    real = Optim.__init__

    def spy(self: Any, *a: Any, **k: Any) -> None:
        real(self, *a, **k)
        seen.append([g["weight_decay"] for g in self.optimizer.param_groups])

    monkeypatch.setattr(Optim, "__init__", spy)
    data = tiny_vectors()
    for name, wd, expected in [
        ("erm", 0.003, [0.003]),
        ("weight-balancing", 0.003, [0.005]),  # stage 1's own larger weight decay
        ("cb-focal", 0.003, [0.003, 0.0]),  # no weight decay on the prior-initialised bias
    ]:
        seen.clear()
        cfg = tiny_config(epochs=1, weight_decay=wd)
        Trainer(SingleLabelTask(METHODS[name], data, cfg), data, cfg, seed=0).fit()
        assert seen == [expected], name


def test_sigmoid_methods_start_from_the_prior_bias() -> None:
    data = tiny_vectors()
    setup = SingleLabelTask(METHODS["cb-focal"], data, tiny_config()).setup()
    bias = setup.modules["model"].head.bias  # type: ignore[union-attr]
    assert torch.allclose(bias, torch.full((4,), -math.log(3.0)))
    assert prior_bias(100) == pytest.approx(-math.log(99.0))
    plain = SingleLabelTask(METHODS["erm"], data, tiny_config()).setup()
    assert plain.optimizers is None
    off = SingleLabelTask(METHODS["cb-focal"], data, tiny_config(), params={"prior_bias": False})
    assert off.setup().optimizers is None  # the default init and optimiser


def test_second_stage_config() -> None:
    cfg = tiny_config(epochs=12, lr=0.2, warmup_epochs=1)
    c2 = second_stage_config(cfg, METHODS["crt"], METHODS["crt"].defaults)
    assert (c2.train.epochs, c2.train.lr, c2.train.warmup_epochs) == (2, 0.2, 0)
    c0 = second_stage_config(cfg, METHODS["la-posthoc"], METHODS["la-posthoc"].defaults)
    assert c0.train.epochs == 0


@pytest.mark.parametrize("name", [*METHODS, "composed"])
def test_contract_every_method_end_to_end(name: str, tmp_path: Path) -> None:
    """Every preset (and a composed recipe): first stage, second stage / post-hoc, finite metrics."""
    method = (
        recipe_from_dict("composed", {"loss": "la", "sampler": "sqrt", "second_stage": "lws"})
        if name == "composed"
        else METHODS[name]
    )
    data = tiny_images() if data_problem(method, tiny_vectors()) else tiny_vectors()
    cfg = tiny_config(epochs=2, batch_size=64)
    record = train_method(method, data, cfg, seed=0, out_dir=tmp_path)
    for key in ("balanced_accuracy", "accuracy", "many", "medium", "few", "ece"):
        v = record["metrics"][key]
        assert v is not None and 0.0 <= v <= 1.0, (key, v)
    assert all(math.isfinite(r["train_loss"]) for r in record["history"] if "train_loss" in r)
    second = {None: 0, "m2m": 2}.get(method.second_stage, 1)  # m2m: f over the full schedule
    assert len(record["history"]) == 2 + second
    assert (tmp_path / name / "seed_0" / "model.pt").is_file()


# ---- report -------------------------------------------------------------------------------------


def _results(values: dict[str, tuple[float, float]]) -> dict[str, Any]:
    def stat(v: float) -> dict[str, Any]:
        return {"mean": v, "std": 0.0, "values": [v]}

    return {
        "metric_specs": [
            {"name": "balanced_accuracy", "label": "Balanced acc.", "higher_is_better": True},
            {"name": "ece", "label": "ECE", "higher_is_better": False},
        ],
        "methods": {
            m: {
                "seeds": [0],
                "train_seconds": 1.0,
                "metrics": {"balanced_accuracy": stat(b), "ece": stat(e)},
            }
            for m, (b, e) in values.items()
        },
    }


def test_report_bold_best_follows_the_metric_direction_and_gap_closed() -> None:
    res = _results(
        {
            "erm": (0.80, 0.10),
            "good": (0.86, 0.02),
            "calib": (0.82, 0.01),
            "balanced": (0.90, 0.005),
        }
    )
    table = format_table(res, markdown=True).splitlines()
    rows = {line.split("|")[1].strip(): line for line in table[2:]}
    assert "**86.0" in rows["good"] and "**1.0" in rows["calib"]  # lowest ECE is best
    assert "**10.0" not in rows["erm"]
    assert "**" not in rows["balanced (reference)"]  # the reference is not a candidate
    # gap closed = (method - erm) / (reference - erm): (0.86 - 0.80) / (0.90 - 0.80) = 60%
    assert "| 60% |" in rows["good"] and "| 20% |" in rows["calib"]


_MIXED = {
    "mixup-drw": (METHODS["mixup-drw"], 0.0),
    "remix-drw": (METHODS["remix-drw"], 0.0),
    # the logit-adjusted loss is cross-entropy on z + tau log(prior): mixing mixes those terms
    "la-mixup": (
        recipe_from_dict(
            "la-mixup", {"loss": "la", "mix": "mixup", "params": {"tau": 0.5}}, "single-label"
        ),
        0.5,
    ),
    "bs-remix-drw": (
        recipe_from_dict(
            "bs-remix-drw",
            {"loss": "balanced-softmax", "mix": "remix", "drw": True},
            "single-label",
        ),
        1.0,
    ),
}


@pytest.mark.parametrize("name", list(_MIXED))
@pytest.mark.parametrize("epoch", [0, 9])  # before and during DRW
def test_mixed_step_matches_an_independent_formula(name: str, epoch: int) -> None:
    """Mixup: label weight lam for y_i; Remix (Chou et al.): 0 when n_i / n_j >= kappa and
    lam < tau, 1 when n_i / n_j <= 1 / kappa and 1 - lam < tau, else lam; x = lam x_i + (1-lam) x_j;
    each label's term is the cross-entropy of z + t log(prior) (t = 0 for plain cross-entropy)."""
    method, t = _MIXED[name]
    data = tiny_vectors(counts=(40, 12, 4, 2))
    task = SingleLabelTask(method, data, tiny_config(epochs=10))
    torch.manual_seed(0)
    model = task.build_model()
    x, y = data.train_x, data.train_y
    n = len(y)
    counts = data.class_counts
    for seed in range(6):
        torch.manual_seed(seed)  # the step's draws, in its order: lam, then the partner permutation
        lam = float(torch.distributions.Beta(torch.tensor(1.0), torch.tensor(1.0)).sample())
        perm = torch.randperm(n)
        torch.manual_seed(seed)
        got = task.training_step(model, Batch(x, y, torch.arange(n)), epoch, 0).loss
        z = model(lam * x + (1 - lam) * x[perm])
        w = task.criterion.context(epoch, z.device).weight
        total = torch.zeros(())
        for i in range(n):
            a, b = int(y[i]), int(y[perm[i]])
            ly = lam
            if method.mix == "remix":
                ratio = counts[a] / counts[b]
                if ratio >= 3.0 and lam < 0.5:
                    ly = 0.0
                elif ratio <= 1 / 3.0 and 1 - lam < 0.5:
                    ly = 1.0
            wa = 1.0 if w is None else float(w[a])
            wb = 1.0 if w is None else float(w[b])
            prior = torch.tensor([c / sum(counts) for c in counts], dtype=torch.float32)
            logp = F.log_softmax(z[i] + t * torch.log(prior), 0)
            total = total - ly * wa * logp[a] - (1 - ly) * wb * logp[b]
        torch.testing.assert_close(got, total / n, rtol=1e-5, atol=1e-6)


def test_every_data_set_is_built_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The float32 standardisation statistics depend on the thread count in their last bits; a
    data set built after a run set train.num_threads would differ with the order of the runs."""
    # the runner builds data through TASK_KINDS["single-label"].build_data, which calls the
    # track's build_data: patch it where it is looked up
    from longtail.tracks import single_label as single_label_track

    events: list[str] = []
    real_build = single_label_track.build_data
    real_fit = Trainer.fit

    def build(*a: Any, **k: Any) -> Any:
        events.append("build")
        return real_build(*a, **k)

    def fit(self: Trainer, **k: Any) -> Any:
        events.append("fit")
        return real_fit(self, **k)

    monkeypatch.setattr(single_label_track, "build_data", build)
    monkeypatch.setattr(Trainer, "fit", fit)
    cfg = _digits(
        tmp_path,
        methods=["erm"],
        seeds=[0, 1],
        data={
            "dataset": "digits",
            "imbalance_factor": 10,
            "balanced_reference": True,
            "class_order": "random",
        },
    )
    assert main(["bench", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    # 2 variants x 2 seeds (the random class order is drawn per seed), all before the first fit
    assert events[:4] == ["build"] * 4 and "build" not in events[4:]


def test_progress_counts_every_epoch_once_also_when_resuming(tmp_path: Path) -> None:
    """Trained, shared, reused and resumed work all advance the progress to its total, once."""
    from longtail.engine.config import load_config
    from longtail.engine.runner import Runs

    cfg = load_config(_digits(tmp_path, seeds=[0, 1]))  # 2 epochs; crt: ceil(0.2) = 1 more
    expected = 2 * (2 + 1)  # per seed: the shared erm stage, then crt's second stage

    def run(resume: bool) -> int:
        ticks: list[int] = []
        runs = Runs(cfg, tmp_path / "run", resume=resume, tick=lambda w, s, n, **k: ticks.append(n))
        for label in ("erm", "la-posthoc", "crt"):
            for seed in cfg.seeds:
                runs.method(label, METHODS[label], "long-tailed", seed)
        return sum(ticks)

    assert run(resume=False) == expected
    assert run(resume=True) == expected  # everything reused
    (tmp_path / "run" / "crt" / "seed_1" / "result.json").unlink()
    assert run(resume=True) == expected  # crt's second stage redone from its checkpoint
