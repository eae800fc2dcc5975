"""The open-set track: registry, config and data errors, the data builder, the task (optimiser
groups, ARPL+CS updates, scores), the metrics' direction, a tiny ``longtail bench`` end to end and
the report's plots."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from data_fixtures import REPO_ROOT, write_tiny_idx
from longtail.cli import main
from longtail.engine.config import ConfigError, config_from_dict, load_config
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import resolve_methods
from longtail.engine.optimizers import Optim
from longtail.engine.runner import Runs, stage_of
from longtail.engine.tasks import Batch, StepOutput, Update
from longtail.engine.trainer import Trainer
from longtail.tracks.open_set.data import build_open_set_data, strong_augment
from longtail.tracks.open_set.evaluation import OPEN_SET_METRICS, known_score, open_set_evaluation
from longtail.tracks.open_set.methods import OPEN_SET_METHODS
from longtail.tracks.open_set.report import open_set_sections
from longtail.tracks.open_set.task import OpenSetTask

CONFIG = REPO_ROOT / "configs" / "openset_fashion_mnist.yaml"
LT_CONFIG = REPO_ROOT / "configs" / "openset_lt_fashion_mnist.yaml"


def tiny_raw(data_dir: Path, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    raw["data"].update(data_dir=str(data_dir), max_per_class=8, dataset="mnist")
    raw["model"]["channels"] = [4, 8]
    raw["train"].update(epochs=1, warmup_epochs=0, batch_size=16)
    raw["seeds"] = [0]
    for key, value in over.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_idx(tmp_path_factory.mktemp("idx"), per_class=12, test_per_class=5)


# ------------------------------------------------------------------------ registry


def test_registry_methods_scores_and_shared_stages(idx_dir: Path) -> None:
    assert TASK_KINDS["open-set"].methods is OPEN_SET_METHODS
    assert "open-set" in TASK_KINDS and TASK_KINDS["open-set"].data_per_seed
    expected = {"softmax", "mls", "mls-strong", "gcpl", "rpl", "arpl", "arpl-cs"}
    assert expected | {"softmax-la", "mls-la", "rpl-la", "arpl-la"} == set(OPEN_SET_METHODS)
    scores = {n: m.composition()["score"] for n, m in OPEN_SET_METHODS.items()}
    # the official tests: softmax of the logits for softmax, RPL and GCPL, raw logits for ARPL
    softmax_scored = {"softmax", "softmax-la", "rpl", "rpl-la", "gcpl"}
    assert {n for n, s in scores.items() if s == "max-softmax"} == softmax_scored
    assert {scores[n] for n in set(scores) - softmax_scored} == {"max-logit"}
    assert OPEN_SET_METHODS["rpl"].defaults == {
        "num_points": 1,
        "temperature": 1.0,
        "open_weight": 0.1,
    }
    cfg = config_from_dict(tiny_raw(idx_dir))
    keys = {
        n: stage_of(cfg, m, m.resolve_params(), "long-tailed").key
        for n, m in OPEN_SET_METHODS.items()
    }
    assert keys["softmax"] == keys["mls"] and keys["softmax-la"] == keys["mls-la"]
    assert len({keys[n] for n in ("softmax", "softmax-la", "rpl", "arpl", "arpl-cs", "gcpl")}) == 6
    assert all(m.needs_stage for m in OPEN_SET_METHODS.values())


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"open_set.splits": [[2, 4, 4, 9, 8, 3]]}, "open_set.splits[0]"),
        ({"open_set.splits": [[2, 4, 5, 9, 8, 3], [1, 2, 3, 4, 5]]}, "open_set.splits[1]"),
        ({"open_set.splits": [[2, -1, 5, 9, 8, 3]]}, "open_set.splits[0][1]"),
        ({"open_set.splits": [[2]]}, "open_set.splits[0]"),
        ({"open_set.splits": []}, "open_set.splits"),
        ({"seeds": [0, 7]}, "seeds[1]"),
        ({"method_params": {"rpl": {"num_points": 0}}}, "method_params.rpl.num_points"),
        ({"method_params": {"arpl": {"open_weight": -0.1}}}, "method_params.arpl.open_weight"),
        ({"method_params": {"rpl": {"num_points": 1.5}}}, "method_params.rpl.num_points"),
        ({"data.balanced_reference": True}, "data.balanced_reference"),
        ({"data.class_order": "random"}, "data.class_order"),
        ({"recipes": {"mine": {"loss": "ce"}}}, "recipes"),
        ({"data.dataset": "fashion-pairs"}, "data.dataset"),
        ({"methods": ["softmax", "erm"]}, "methods[1]"),
    ],
)
def test_config_errors_name_the_key(idx_dir: Path, over: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        config_from_dict(tiny_raw(idx_dir, **over))


def test_open_set_section_needs_the_open_set_task(idx_dir: Path) -> None:
    raw = tiny_raw(idx_dir, task="single-label", methods=["erm"], method_params={})
    with pytest.raises(ConfigError, match="'open_set'"):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("splits", "match"),
    [
        ([[2, 4, 5, 9, 8, 13]], r"open_set\.splits\[0\]: class 13 is out of range"),
        ([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 10]], r"open_set\.splits\[1\]: class 10"),
        ([list(range(10))], r"open_set\.splits\[0\]: lists all 10 classes .* no unknown class"),
    ],
)
def test_data_errors_name_the_split(idx_dir: Path, splits: list[list[int]], match: str) -> None:
    cfg = config_from_dict(tiny_raw(idx_dir, **{"open_set.splits": splits}))
    with pytest.raises(ValueError, match=match):
        build_open_set_data(cfg, 0)


def test_bench_refuses_a_bad_split_before_writing(idx_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(idx_dir, **{"open_set.splits": [list(range(10))]})))
    out = tmp_path / "run"
    code = main(["bench", str(path), "--out", str(out), "--no-progress"])
    assert code != 0 and not out.exists()


def test_configs_in_the_repository_load() -> None:
    for path in (CONFIG, LT_CONFIG):
        cfg = load_config(path)
        assert cfg.task == "open-set" and cfg.seeds == [0, 1, 2, 3, 4]
        assert cfg.open_set is not None
        assert cfg.open_set.splits[0] == [2, 4, 5, 9, 8, 3]
        assert cfg.open_set.splits[4] == [6, 3, 4, 9, 8, 2]


def test_other_tasks_keep_their_config_dicts() -> None:
    from longtail.engine.config import config_to_dict

    assert "open_set" not in config_to_dict(config_from_dict({"name": "x"}))


# ------------------------------------------------------------------------ data


def test_data_builder_known_unknown_relabelled_and_standardised(idx_dir: Path) -> None:
    cfg = config_from_dict(tiny_raw(idx_dir, **{"data.max_per_class": 10}))
    data = build_open_set_data(cfg, 1)  # split 1: known [3, 2, 6, 9, 4, 0]
    assert data.class_names == ["3", "2", "6", "9", "4", "0"]
    assert data.class_counts == [10] * 6
    assert sorted(data.test_y.unique().tolist()) == list(range(6))
    x_unknown, y_unknown = data.eval_splits["unknown"]
    assert len(x_unknown) == 4 * 5 and bool((y_unknown == -1).all())
    assert len(data.test_y) == 6 * 5
    # standardised with the known classes' training images
    assert abs(float(data.train_x.mean())) < 1e-5 and float(data.train_x.std()) == pytest.approx(
        1.0
    )
    # relabelled: known class 3 (block at row 0, col 3) is label 0
    img = data.test_x[data.test_y == 0][0, 0]
    assert float(img[:7, 21:28].mean()) > float(img[14:21, 0:7].mean())


def test_data_builder_long_tailed_known_classes(idx_dir: Path) -> None:
    cfg = config_from_dict(
        tiny_raw(idx_dir, **{"data.imbalance_factor": 10, "data.max_per_class": 12})
    )
    data = build_open_set_data(cfg, 0)
    assert data.class_counts[0] == 12 and data.class_counts[-1] == 1
    assert data.class_counts == sorted(data.class_counts, reverse=True)


# ------------------------------------------------------------------------ task


def _task(idx_dir: Path, name: str, **over: Any) -> tuple[OpenSetTask, Any]:
    cfg = config_from_dict(tiny_raw(idx_dir, **over))
    data = build_open_set_data(cfg, 0)
    method = resolve_methods(None, "open-set")[name]
    params = method.resolve_params(cfg.method_params.get(name, {}))
    return OpenSetTask(method, data, cfg, params=params), cfg


@pytest.mark.parametrize("name", ["rpl", "arpl", "gcpl", "arpl-cs"])
def test_points_radius_and_prototypes_get_no_weight_decay(idx_dir: Path, name: str) -> None:
    task, cfg = _task(idx_dir, name, **{"train.weight_decay": 0.01})
    torch.manual_seed(0)
    setup = task.setup()
    head = setup.modules["model"].head
    assert setup.optimizers is not None
    opt = Optim("model", setup.optimizers["model"], cfg, steps_per_epoch=1).optimizer
    exempt = {id(p) for p in head.no_weight_decay_parameters()}
    assert len(exempt) == (1 if name == "gcpl" else 2)
    seen = 0
    for group in opt.param_groups:
        for p in group["params"]:
            seen += 1
            assert group["weight_decay"] == (0.0 if id(p) in exempt else 0.01)
    assert seen == len(list(setup.modules["model"].parameters()))


def test_points_do_not_decay_in_training(idx_dir: Path) -> None:
    """With a zero loss gradient on the points, a huge weight decay leaves them unchanged."""
    task, cfg = _task(idx_dir, "rpl", **{"train.weight_decay": 10.0})
    torch.manual_seed(0)
    setup = task.setup()
    model = setup.modules["model"]
    assert setup.optimizers is not None
    opt = Optim("model", setup.optimizers["model"], cfg, steps_per_epoch=1).optimizer
    before = model.head.points.detach().clone()
    weight_before = model.backbone.net[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(model.head.points, before)
    assert not torch.allclose(model.backbone.net[0].weight, weight_before)


def test_confusing_samples_three_updates_and_adam(idx_dir: Path) -> None:
    task, cfg = _task(idx_dir, "arpl-cs")
    torch.manual_seed(0)
    setup = task.setup()
    assert set(setup.modules) == {"model", "gen", "disc"}
    assert setup.optimizers is not None
    for name in ("gen", "disc"):
        spec = setup.optimizers[name]
        assert spec.kind == "adam" and spec.schedule is False and spec.lr == 2e-4
        opt = Optim(name, spec, cfg, steps_per_epoch=1).optimizer
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)
        assert opt.param_groups[0]["weight_decay"] == 0.0
    task.on_train_start(setup.modules, torch.device("cpu"))
    x, y = task.data.train_x[:6], task.data.train_y[:6]
    ups = task.training_step(setup.modules["model"], Batch(x, y, torch.arange(6)), 0, 0)
    assert isinstance(ups, list) and [u.optimizer for u in ups] == ["disc", "gen", "model"]
    for u in ups:
        assert isinstance(u, Update) and callable(u.step)
        out = u.step()  # type: ignore[operator]
        assert isinstance(out, StepOutput) and math.isfinite(float(out.loss.detach()))
        out.loss.backward()
    assert out.targets is y and out.logits is not None and out.logits.shape == (6, 6)


def test_generated_samples_leave_the_batch_norm_statistics(idx_dir: Path) -> None:
    task, _ = _task(idx_dir, "arpl-cs")
    torch.manual_seed(0)
    setup = task.setup()
    model = setup.modules["model"]
    task.on_train_start(setup.modules, torch.device("cpu"))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x, y = task.data.train_x[:6], task.data.train_y[:6]
    ups = task.training_step(model, Batch(x, y, torch.arange(6)), 0, 0)
    ups[0].step()  # type: ignore[union-attr, index, operator]
    before = bn.running_mean.clone()
    ups[1].step()  # type: ignore[union-attr, index, operator]  # generator: fakes only
    torch.testing.assert_close(bn.running_mean, before)
    assert model.training and bn.training


@pytest.mark.parametrize("name", sorted(OPEN_SET_METHODS))
def test_every_method_trains_and_evaluates(idx_dir: Path, name: str) -> None:
    task, cfg = _task(idx_dir, name)
    result = Trainer(task, task.data, cfg, seed=0).fit()
    assert result is not None
    assert set(result.metrics) == {m.name for m in OPEN_SET_METRICS}
    for key in ("auroc", "aupr_in", "aupr_out", "oscr", "closed_set_accuracy"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert result.metrics["oscr"] <= result.metrics["closed_set_accuracy"] + 1e-12
    assert all(math.isnan(result.metrics[k]) for k in ("many", "medium", "few"))  # balanced
    assert result.details["score"] == OPEN_SET_METHODS[name].composition()["score"]
    assert len(result.details["roc"]["tpr"]) == 101


def test_more_than_one_point_per_class_trains(idx_dir: Path) -> None:
    task, cfg = _task(idx_dir, "arpl", method_params={"arpl": {"num_points": 3}})
    result = Trainer(task, task.data, cfg, seed=0).fit()
    assert result is not None and result.model_state["head.points"].shape == (6, 3, 8)


def test_strong_recipe_doubles_the_steps(idx_dir: Path) -> None:
    plain, _ = _task(idx_dir, "mls")
    strong, _ = _task(idx_dir, "mls-strong")
    a = plain.sampler(0, seed=1, rank=0, world_size=1)
    b = strong.sampler(0, seed=1, rank=0, world_size=1)
    assert len(b) == 2 * len(a)
    assert sorted(b[: len(a)].tolist()) == sorted(b[len(a) :].tolist()) == list(range(len(a)))


def test_strong_augment_changes_images_reproducibly() -> None:
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(3)
    a = strong_augment(x)
    torch.manual_seed(3)
    b = strong_augment(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    assert strong_augment(x[:0]).shape == (0, 1, 28, 28)
    vec = torch.randn(3, 5)
    assert strong_augment(vec) is vec


# ------------------------------------------------------------------------ scores and metrics


def test_score_direction_and_metrics() -> None:
    """Known images get large logits, unknown ones small: AUROC 1 with either score; reversed 0."""
    known = torch.tensor([[5.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 7.0], [4.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 2, 1])  # the last one is misclassified
    unknown = torch.tensor([[0.5, 0.4, 0.3], [0.1, 0.2, 0.3]])
    for score in ("max-logit", "max-softmax"):
        m, d = open_set_evaluation(known, target, unknown, score=score, group_counts=[5, 5, 5])
        assert m["auroc"] == 1.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
        assert m["closed_set_accuracy"] == 0.75 and m["oscr"] == pytest.approx(0.75)
        assert math.isnan(m["many"]) and d["score"] == score
        assert d["auroc_by_score"] == {"max-softmax": 1.0, "max-logit": 1.0}
        assert d["roc"]["tpr"][0] == 1.0 and d["roc"]["fpr_at_95_tpr"] == 0.0
        assert sum(d["score_histogram"]["known"]) == 4 and sum(d["score_histogram"]["unknown"]) == 2
        m, _ = open_set_evaluation(
            unknown, torch.tensor([0, 1]), known, score=score, group_counts=[1, 1, 1]
        )
        assert m["auroc"] == 0.0
    assert known_score(known, "max-logit").tolist() == [5.0, 6.0, 7.0, 4.0]
    with pytest.raises(ValueError, match="score"):
        known_score(known, "entropy")


def test_shot_groups_when_known_classes_are_long_tailed() -> None:
    logits = torch.eye(6) * 5
    target = torch.tensor([0, 1, 2, 3, 4, 0])  # class 5's image taken as class 0: few-shot miss
    unknown = torch.full((2, 6), 2.0)  # max logit 2: between the known images' 5 and 0
    unknown[1, 3] = 6.0  # one unknown image scored above every known one
    m, d = open_set_evaluation(
        logits, target, unknown, score="max-logit", group_counts=[60, 50, 40, 30, 20, 10]
    )
    assert m["many"] == pytest.approx(0.75) and m["medium"] == 1.0 and m["few"] == 1.0
    # every known image has max logit 5: in each group, one unknown image is below, one above
    assert d["auroc_by_shot"] == {"many": 0.5, "medium": 0.5, "few": 0.5}
    low = logits.clone()
    low[4] *= 0.1  # the only few-shot (class 4) image now scores 0.5: below both unknown images
    _, d = open_set_evaluation(
        low, target, unknown, score="max-logit", group_counts=[60, 50, 40, 30, 20, 10]
    )
    assert d["auroc_by_shot"]["few"] == 0.0 and d["auroc_by_shot"]["many"] == 0.5


def test_maximum_softmax_and_maximum_logit_differ() -> None:
    """Scaling a row's logits changes its maximum logit, not the ranking of its softmax argmax:
    a sample whose logits are all large (but equal) has a top logit and the lowest MSP."""
    known = torch.tensor([[4.0, 0.0], [3.0, 0.0]])
    unknown = torch.tensor([[10.0, 10.0]])
    ml, _ = open_set_evaluation(
        known, torch.tensor([0, 0]), unknown, score="max-logit", group_counts=[1, 1]
    )
    sm, _ = open_set_evaluation(
        known, torch.tensor([0, 0]), unknown, score="max-softmax", group_counts=[1, 1]
    )
    assert ml["auroc"] == 0.0 and sm["auroc"] == 1.0


# ------------------------------------------------------------------------ end to end


def test_bench_end_to_end_results_and_report(idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "bench",
            str(CONFIG),
            "--data-dir",
            str(idx_dir),
            "--out",
            str(out),
            "--no-progress",
            "--jobs",
            "1",
            "--methods",
            "softmax,mls,rpl",
            "--seeds",
            "0,1",
            "--epochs",
            "1",
            "--set",
            "data.dataset=mnist",
            "--set",
            "data.max_per_class=6",
            "--set",
            "model.channels=[4, 8]",
            "--set",
            "train.batch_size=12",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "open-set"
    assert [s["name"] for s in results["metric_specs"]] == [m.name for m in OPEN_SET_METRICS]
    assert set(results["methods"]) == {"softmax", "mls", "rpl"}
    for name, entry in results["methods"].items():
        assert entry["seeds"] == [0, 1]
        assert entry["composition"]["score"] == ("max-logit" if name == "mls" else "max-softmax")
        auroc = entry["metrics"]["auroc"]
        assert len(auroc["values"]) == 2 and 0 <= auroc["mean"] <= 1 and auroc["std"] >= 0
        assert entry["metrics"]["many"]["mean"] is None  # balanced known classes
    # softmax and mls share their training: two stages (ce, rpl) per seed
    assert len(list((out / "stages").iterdir())) == 2
    assert results["stages_trained"] == 4
    r0 = json.loads((out / "softmax" / "seed_0" / "result.json").read_text())
    r1 = json.loads((out / "softmax" / "seed_1" / "result.json").read_text())
    assert r0["details"]["known_classes"] == ["2", "4", "5", "9", "8", "3"]  # split 0
    assert r1["details"]["known_classes"] == ["3", "2", "6", "9", "4", "0"]  # split 1
    sections = open_set_sections(out, results)
    assert [p.name for _, p in sections] == ["open_set_scores.png", "open_set_roc.png"]
    assert all(p.is_file() and p.stat().st_size > 1000 for _, p in sections)
    assert open_set_sections(out, {**results, "task": "single-label"}) == []


def test_oscr_thresholds_the_score_of_the_method() -> None:
    """OSCR thresholds the method's own score: here the two scores rank the unknown image at
    opposite ends, so OSCR is 2/3 (the correct share, every known image accepted before the
    unknown one) with the maximum softmax and 0 with the maximum logit (the unknown one first)."""
    known = torch.tensor([[4.0, 0.0], [3.0, 0.0], [0.0, 1.0]])  # two correct, one wrong
    target = torch.tensor([0, 0, 0])
    unknown = torch.tensor([[10.0, 10.0]])  # the largest logit, the smallest softmax maximum
    sm, _ = open_set_evaluation(known, target, unknown, score="max-softmax", group_counts=[1, 1])
    ml, _ = open_set_evaluation(known, target, unknown, score="max-logit", group_counts=[1, 1])
    assert sm["oscr"] == pytest.approx(2 / 3) and ml["oscr"] == 0.0
    assert sm["auroc"] == 1.0 and ml["auroc"] == 0.0


def test_a_shared_stage_is_evaluated_once(
    idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """softmax and mls share one stage: the finishing run of the second reuses the first's logits
    (one pass over the test and unknown images, not two), and the metrics equal a run without
    the reuse."""
    from longtail.engine.runner import train_method
    from longtail.tracks.open_set import task as open_task

    cfg = config_from_dict(tiny_raw(idx_dir))
    data = TASK_KINDS["open-set"].build_data(cfg, "long-tailed", 0)
    table = resolve_methods(cfg.recipes, cfg.task)
    calls: list[int] = []
    real = open_task.rule_logits

    def counting(rule: Any, model: Any, x: Any) -> Any:
        calls.append(len(x))
        return real(rule, model, x)

    monkeypatch.setattr(open_task, "rule_logits", counting)
    runs = Runs(cfg, tmp_path / "a", resume=False, tick=lambda *a, **k: None, data=data)
    first = runs.method("softmax", table["softmax"], "long-tailed", 0)
    after_first = len(calls)
    second = runs.method("mls", table["mls"], "long-tailed", 0)
    assert len(calls) == after_first  # the finishing run of mls read no image
    # the same metrics as an mls run that computes its own logits (a fresh process's state)
    monkeypatch.setattr(open_task, "_STAGE_LOGITS", open_task._StageLogits())
    alone = train_method(table["mls"], data, cfg, seed=0, out_dir=tmp_path / "b", label="mls")
    assert second["metrics"] == alone["metrics"]
    assert first["metrics"] != second["metrics"]  # the scores differ
