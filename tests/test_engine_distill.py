"""Knowledge distillation (task: distillation): the teacher stage, the students' loss, the frozen
teacher, checkpoint teachers, config errors and the bundled configs end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml

from data_fixtures import REPO_ROOT, write_tiny_idx
from longtail.cli import main
from longtail.engine.checkpoint import save_checkpoint
from longtail.engine.config import ConfigError, config_from_dict, load_config
from longtail.engine.datasets import DataBundle
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import resolve_methods
from longtail.engine.runner import run_benchmark
from longtail.engine.tasks import Batch
from longtail.engine.trainer import Trainer
from longtail.losses import dkd_loss, kd_loss, rkd_angle_loss, rkd_distance_loss
from longtail.tracks.distillation.task import (
    DISTILL_METHODS,
    DistillTask,
    build_distill_data,
    distill_stage_config,
    distill_stage_task,
)
from test_engine_fixtures import tiny_images

CONFIG = REPO_ROOT / "configs" / "distill_fashion_mnist_lt.yaml"
BALANCED_CONFIG = REPO_ROOT / "configs" / "distill_fashion_mnist_lt_balanced_teacher.yaml"


def _raw(**over: Any) -> dict[str, Any]:
    """A tiny distillation config on the tiny images (an 8x8 CNN teacher and student)."""
    raw: dict[str, Any] = {
        "name": "tiny_distill",
        "task": "distillation",
        "methods": ["teacher", "student", "kd"],
        "seeds": [0],
        "distill": {"teacher": {"model": {"arch": "cnn", "channels": [8, 16]}}},
        "model": {"arch": "cnn", "channels": [4, 8]},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "lr": 0.05,
            "warmup_epochs": 0,
            "eval_every": 0,
            "num_threads": 1,
        },
    }
    for key, value in over.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


def _cfg(**over: Any) -> Any:
    return config_from_dict(_raw(**over))


def _count_fits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = Trainer.fit

    def counted(self: Trainer, **kw: Any) -> Any:
        calls.append(f"{self.label}:{self.config.train.epochs}")
        return real(self, **kw)

    monkeypatch.setattr(Trainer, "fit", counted)
    return calls


def _teacher_state(data: DataBundle, cfg: Any, seed: int = 3) -> dict[str, torch.Tensor]:
    """A (random) teacher network's weights, as the teacher stage would hand them over."""
    stage_cfg = distill_stage_config(cfg, DISTILL_METHODS["teacher"], {})
    torch.manual_seed(seed)
    task = distill_stage_task(DISTILL_METHODS["teacher"], data, stage_cfg, {})
    model = task.setup().modules["model"]
    return {k: v.clone() for k, v in model.state_dict().items()}


def _student_task(
    data: DataBundle, cfg: Any, method: str = "kd", **params: Any
) -> tuple[DistillTask, torch.nn.Module, torch.nn.Module]:
    m = DISTILL_METHODS[method]
    task = DistillTask(
        m, data, cfg, teacher_state=_teacher_state(data, cfg), params=m.resolve_params(params)
    )
    setup = task.setup()
    student, teacher = setup.modules["model"], setup.frozen["teacher"]
    teacher.eval().requires_grad_(False)
    task.on_train_start({"model": student, "teacher": teacher}, torch.device("cpu"))
    return task, student, teacher


# ------------------------------------------------------------------------ registry and config


def test_registered_with_the_runner_and_the_config() -> None:
    assert TASK_KINDS["distillation"].methods is DISTILL_METHODS
    assert list(DISTILL_METHODS) == [
        "teacher",
        "student",
        "kd",
        "kd-std",
        "dkd",
        "rkd-da",
        "kd-rkd-da",
    ]
    kind = TASK_KINDS["distillation"]
    assert kind.stage_config is not None and kind.metrics[0].name == "balanced_accuracy"
    assert resolve_methods(None, "distillation")["kd"] is DISTILL_METHODS["kd"]
    # the paper defaults of the presets
    kd, std = DISTILL_METHODS["kd"].defaults, DISTILL_METHODS["kd-std"].defaults
    assert (kd["ce_weight"], kd["kd_weight"], kd["temperature"]) == (0.1, 0.9, 4.0)
    assert (std["kd_weight"], std["temperature"], std["standardize"]) == (9.0, 2.0, True)
    rkd = DISTILL_METHODS["kd-rkd-da"].defaults
    assert (rkd["rkd_distance"], rkd["rkd_angle"], rkd["kd_weight"]) == (25.0, 50.0, 1.0)
    assert DISTILL_METHODS["dkd"].defaults["dkd_beta"] == 8.0


def test_student_methods_share_the_teacher_stage_identity() -> None:
    idents = {
        json.dumps(m.stage_identity(m.defaults), sort_keys=True)
        for m in DISTILL_METHODS.values()
        if m.name != "student"
    }
    assert len(idents) == 1
    student = DISTILL_METHODS["student"]
    assert student.stage_identity({}) != DISTILL_METHODS["teacher"].stage_identity({})
    assert not DISTILL_METHODS["teacher"].needs_stage and not student.needs_stage
    assert DISTILL_METHODS["kd"].needs_stage


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"method_params": {"kd": {"temperature": 0.0}}}, "method_params.kd.temperature"),
        ({"method_params": {"dkd": {"temperature": -1.0}}}, "method_params.dkd.temperature"),
        ({"method_params": {"kd": {"kd_weight": -0.5}}}, "method_params.kd.kd_weight"),
        ({"method_params": {"rkd-da": {"rkd_angle": -1.0}}}, "method_params.rkd-da.rkd_angle"),
        ({"method_params": {"kd": {"ce_weight": -1.0}}}, "method_params.kd.ce_weight"),
        ({"distill.teacher.method": "no-such"}, "distill.teacher.method"),
        ({"distill.teacher.method": "la-posthoc"}, "distill.teacher.method"),
        ({"distill.teacher.method": "crt"}, "distill.teacher.method"),
        ({"distill.teacher.method": {"loss": "nope"}}, "distill.teacher.method.loss"),
        ({"distill.teacher.params": {"tau": 1.0}}, "distill.teacher.params.tau"),
        ({"distill.teacher.model.arch": "vgg"}, "distill.teacher.model.arch"),
        ({"distill.teacher.model.factory": "a.b:c"}, "distill.teacher.model.factory"),
        ({"distill.teacher.oops": 1}, "distill.teacher.oops"),
        ({"recipes": {"x": {"loss": "ce"}}}, "recipes"),
        ({"task": "single-label", "methods": ["erm"]}, "distill"),
    ],
)
def test_config_errors_name_the_key(over: dict[str, Any], key: str) -> None:
    raw = _raw()
    for k, v in over.items():
        node = raw
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    with pytest.raises(ConfigError, match=f"'{key}'"):
        config_from_dict(raw)


def test_teacher_method_can_be_a_recipe_with_parameters() -> None:
    cfg = _cfg(**{"distill.teacher.method": {"loss": "la", "sampler": "sqrt"}})
    assert cfg.distill.teacher.method == {"loss": "la", "sampler": "sqrt"}
    cfg = _cfg(**{"distill.teacher.method": "la-loss", "distill.teacher.params": {"tau": 1.5}})
    assert cfg.distill.teacher.params == {"tau": 1.5}


# ------------------------------------------------------------------------ the student's loss


def test_student_loss_is_ce_plus_the_weighted_library_terms() -> None:
    data = tiny_images()
    cfg = _cfg()
    weights = {
        "ce_weight": 0.7,
        "kd_weight": 0.9,
        "temperature": 3.0,
        "standardize": True,
        "dkd_weight": 0.5,
        "dkd_alpha": 2.0,
        "dkd_beta": 4.0,
        "dkd_warmup": 0.0,
        "rkd_distance": 2.0,
        "rkd_angle": 3.0,
        "rkd_normalize": True,
    }
    task, student, teacher = _student_task(data, cfg, "kd", **weights)
    x, y = data.train_x[:12], data.train_y[:12]
    out = task.training_step(student, Batch(x, y, torch.arange(12)), epoch=0, step=0)
    # independently: the networks' outputs, the library losses, the weights
    f_s = student.backbone(x)
    z_s = student.head(f_s)
    with torch.no_grad():
        f_t = teacher.backbone(x)
        z_t = teacher.head(f_t)
    n_s, n_t = F.normalize(f_s, dim=1), F.normalize(f_t, dim=1)
    expected = (
        0.7 * F.cross_entropy(z_s, y)
        + 0.9 * kd_loss(z_s, z_t, temperature=3.0, standardize=True)
        + 0.5 * dkd_loss(z_s, z_t, y, alpha=2.0, beta=4.0, temperature=3.0)
        + 2.0 * rkd_distance_loss(n_s, n_t)
        + 3.0 * rkd_angle_loss(n_s, n_t)
    )
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert set(out.logs) == {"ce", "kd", "dkd", "rkd_distance", "rkd_angle"}
    torch.testing.assert_close(out.logs["kd"], kd_loss(z_s, z_t, temperature=3.0, standardize=True))
    # the loss reaches the student only
    out.loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_each_preset_trains_on_its_own_terms() -> None:
    data = tiny_images()
    cfg = _cfg()
    x, y = data.train_x[:10], data.train_y[:10]
    expected_logs = {
        "kd": {"ce", "kd"},
        "kd-std": {"ce", "kd"},
        "dkd": {"ce", "dkd"},
        "rkd-da": {"ce", "rkd_distance", "rkd_angle"},
        "kd-rkd-da": {"ce", "kd", "rkd_distance", "rkd_angle"},
    }
    for name, logs in expected_logs.items():
        task, student, _ = _student_task(data, cfg, name)
        out = task.training_step(student, Batch(x, y, torch.arange(10)), epoch=0, step=0)
        assert set(out.logs) == logs, name
        assert torch.isfinite(out.loss)


def test_rkd_without_normalisation_and_small_batches() -> None:
    data = tiny_images()
    task, student, teacher = _student_task(
        data, _cfg(), "rkd-da", ce_weight=0.0, rkd_normalize=False
    )
    x, y = data.train_x[:6], data.train_y[:6]
    out = task.training_step(student, Batch(x, y, torch.arange(6)), epoch=0, step=0)
    f_s = student.backbone(x)
    with torch.no_grad():
        f_t = teacher.backbone(x)
    expected = 25.0 * rkd_distance_loss(f_s, f_t) + 50.0 * rkd_angle_loss(f_s, f_t)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    # a trailing batch of two samples has a pair but no triplet; of one sample, neither
    two = task.training_step(student, Batch(x[:2], y[:2], torch.arange(2)), epoch=0, step=0)
    assert set(two.logs) == {"rkd_distance"}
    one = task.training_step(student, Batch(x[:1], y[:1], torch.arange(1)), epoch=0, step=0)
    assert one.logs == {} and float(one.loss.detach()) == 0.0


def test_dkd_weight_ramps_up_over_the_warm_up() -> None:
    data = tiny_images()  # 28 images, batch 16: 2 steps per epoch; 10 epochs: 20 steps
    cfg = config_from_dict(_raw(**{"train.epochs": 10}))
    task, student, _ = _student_task(data, cfg, "dkd", dkd_warmup=0.5)  # 10 warm-up steps
    assert task.dkd_ramp(0, 0) == pytest.approx(0.1)
    assert task.dkd_ramp(2, 1) == pytest.approx(0.6)
    assert task.dkd_ramp(4, 1) == 1.0 and task.dkd_ramp(9, 1) == 1.0
    x, y = data.train_x[:8], data.train_y[:8]
    out = task.training_step(student, Batch(x, y, torch.arange(8)), epoch=0, step=0)
    z_s = student(x)
    expected = F.cross_entropy(z_s, y) + 0.1 * out.logs["dkd"]
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_teacher_is_frozen_and_unchanged_by_training() -> None:
    data = tiny_images()
    cfg = _cfg()
    state = _teacher_state(data, cfg)
    task = DistillTask(DISTILL_METHODS["kd-rkd-da"], data, cfg, teacher_state=state)
    result = Trainer(task, data, cfg, seed=0).fit()
    assert result is not None
    teacher = task.teacher
    assert teacher is not None and not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    # weights and batch-norm statistics as handed over
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    # while the student did train
    assert any(not torch.equal(v, state.get(k, v)) for k, v in result.model_state.items())
    assert result.history[-1]["train_kd"] > 0


# ------------------------------------------------------------------------ stages and checkpoints


@pytest.mark.slow
def test_teacher_stage_trained_once_and_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _count_fits(monkeypatch)
    cfg = config_from_dict(
        _raw(
            **{
                "methods": ["teacher", "student", "kd", "dkd", "rkd-da"],
                "seeds": [0, 1],
                "data.balanced_reference": True,  # erm with the student network, its own stage
            }
        )
    )
    data = tiny_images()
    kind = dataclasses.replace(TASK_KINDS["distillation"], build_data=lambda c, v, s: data)
    monkeypatch.setitem(TASK_KINDS, "distillation", kind)
    results = run_benchmark(cfg, tmp_path / "run", progress=False, echo=None)
    stage_fits = sorted(c for c in calls if c.startswith("stage "))
    # per seed: the teacher stage (wider network), the student-alone stage and the balanced
    # reference's erm stage, each once
    assert len(stage_fits) == 6, calls
    assert sum(c.startswith("stage teacher") for c in stage_fits) == 2
    assert sorted(c for c in calls if not c.startswith("stage ")) == sorted(
        f"{m}:2" for m in ("kd", "dkd", "rkd-da") for _ in (0, 1)
    )
    assert results["task"] == "distillation" and results["stages_trained"] == 6
    assert list(results["methods"]) == ["teacher", "student", "kd", "dkd", "rkd-da", "balanced"]
    rec = json.loads((tmp_path / "run" / "kd" / "seed_0" / "result.json").read_text())
    teacher = json.loads((tmp_path / "run" / "teacher" / "seed_0" / "result.json").read_text())
    assert rec["stage"] == teacher["stage"] and rec["stage"].startswith("teacher")
    assert [h.get("stage") for h in rec["history"]] == [None, None, 2.0, 2.0]
    # the teacher stage trained the teacher's network, the students the config's model
    t_state = torch.load(tmp_path / "run" / "teacher" / "seed_0" / "model.pt", weights_only=True)
    s_state = torch.load(tmp_path / "run" / "kd" / "seed_0" / "model.pt", weights_only=True)
    assert t_state["head.weight"].shape[1] == 16 and s_state["head.weight"].shape[1] == 8
    # a resumed run trains nothing
    calls.clear()
    again = run_benchmark(cfg, tmp_path / "run", resume=True, progress=False, echo=None)
    assert calls == [] and again["methods"] == results["methods"]
    # a change of the teacher's network trains a new teacher
    from longtail.engine.methods import resolve_methods as rm
    from longtail.engine.runner import stage_of

    wider = config_from_dict(_raw(**{"distill.teacher.model.channels": [8, 32]}))
    table = rm(None, "distillation")
    assert (
        stage_of(cfg, table["kd"], {}, "long-tailed").key
        != stage_of(wider, table["kd"], {}, "long-tailed").key
    )
    assert (
        stage_of(cfg, table["kd"], {}, "long-tailed").key
        == stage_of(cfg, table["dkd"], {}, "long-tailed").key
    )


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_idx(tmp_path_factory.mktemp("idx"), per_class=14, test_per_class=5)


def _bench_args(config: Path, idx: Path, out: Path, *extra: str) -> list[str]:
    return [
        "bench",
        str(config),
        "--data-dir",
        str(idx),
        "--out",
        str(out),
        "--no-progress",
        "--jobs",
        "1",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--set",
        "data.imbalance_factor=4",
        "--set",
        "data.max_per_class=12",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.eval_every=0",
        "--set",
        "model.channels=[4,8]",
        "--set",
        "distill.teacher.model.channels=[8,8]",
        *extra,
    ]


@pytest.mark.slow
def test_bundled_configs_end_to_end(idx_dir: Path, tmp_path: Path) -> None:
    for config in (CONFIG, BALANCED_CONFIG):
        cfg = load_config(config)
        assert cfg.task == "distillation" and cfg.distill is not None
        out = tmp_path / config.stem
        some = () if config == CONFIG else ("--methods", "teacher,kd-std")
        assert main(_bench_args(config, idx_dir, out, *some)) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["task"] == "distillation"
        assert list(results["methods"]) == (
            cfg.methods if config == CONFIG else ["teacher", "kd-std"]
        )
        for entry in results["methods"].values():
            assert set(entry["metrics"]) == {
                "balanced_accuracy",
                "accuracy",
                "many",
                "medium",
                "few",
                "ece",
            }
            assert entry["seeds"] == [0]
        assert results["methods"]["teacher"]["composition"]["role"] == "teacher"
        assert (out / "report.md").is_file()
        teacher = yaml.safe_load((out / "config.yaml").read_text())["distill"]["teacher"]
        assert teacher["method"] == ("erm" if config == CONFIG else "la-loss")


def test_checkpoint_teacher_is_loaded_not_trained(
    idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first"
    assert main(_bench_args(CONFIG, idx_dir, first, "--methods", "teacher")) == 0
    ckpt = first / "teacher" / "seed_0" / "model.pt"
    loads: list[bool] = []
    real_load = torch.load

    def spy(*args: Any, **kw: Any) -> Any:
        loads.append(bool(kw.get("weights_only")))
        return real_load(*args, **kw)

    monkeypatch.setattr(torch, "load", spy)
    calls = _count_fits(monkeypatch)
    second = tmp_path / "second"
    extra = ("--methods", "teacher,kd", "--set", f"distill.teacher.checkpoint={ckpt}")
    assert main(_bench_args(CONFIG, idx_dir, second, *extra)) == 0
    assert loads and all(loads)  # every torch.load with weights_only=True
    teacher_fit = [c for c in calls if c.startswith("stage teacher")]
    assert len(teacher_fit) == 1 and teacher_fit[0].endswith(":0")  # evaluated, not trained
    a = json.loads((first / "teacher" / "seed_0" / "result.json").read_text())
    b = json.loads((second / "teacher" / "seed_0" / "result.json").read_text())
    assert a["metrics"] == b["metrics"] and b["epochs"] == 0
    assert (second / "kd" / "seed_0" / "result.json").is_file()


def test_checkpoint_teacher_with_other_classes_is_refused(idx_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(
        CONFIG,
        {
            "data.data_dir": str(idx_dir),
            "data.max_per_class": 12,
            "data.imbalance_factor": 4,
            "distill.teacher.model.channels": [8, 8],
        },
    )
    data = build_distill_data(cfg, "long-tailed", None)
    # a teacher of 7 classes for data of 10
    torch.manual_seed(0)
    seven = dataclasses.replace(data, class_names=data.class_names[:7])
    state = _teacher_state(seven, cfg)
    path = tmp_path / "seven.pt"
    save_checkpoint(path, state)
    bad = cfg.with_section(
        "distill",
        dataclasses.replace(
            cfg.distill, teacher=dataclasses.replace(cfg.distill.teacher, checkpoint=str(path))
        ),
    )
    with pytest.raises(ConfigError, match=r"'distill\.teacher\.checkpoint'.*7 classes.*10"):
        build_distill_data(bad, "long-tailed", None)
    # the run stops before writing its folder
    out = tmp_path / "run"
    extra = ("--methods", "teacher,kd", "--set", f"distill.teacher.checkpoint={path}")
    assert main(_bench_args(CONFIG, idx_dir, out, *extra)) != 0
    assert not out.exists()
    # a file that is not there, or weights of another network
    missing = bad.with_section(
        "distill",
        dataclasses.replace(
            bad.distill,
            teacher=dataclasses.replace(bad.distill.teacher, checkpoint=str(tmp_path / "nope.pt")),
        ),
    )
    with pytest.raises(ConfigError, match=r"'distill\.teacher\.checkpoint'.*not found"):
        build_distill_data(missing, "long-tailed", None)
    other = bad.with_section(
        "distill",
        dataclasses.replace(
            bad.distill,
            teacher=dataclasses.replace(
                bad.distill.teacher,
                checkpoint=str(path),
                model=dataclasses.replace(bad.distill.teacher.model, channels=[8, 16]),
            ),
        ),
    )
    save_checkpoint(path, _teacher_state(data, cfg))  # 10 classes, channels [8, 8]
    with pytest.raises(
        ConfigError, match=r"'distill\.teacher\.checkpoint'.*distill\.teacher\.model"
    ):
        build_distill_data(other, "long-tailed", None)


def test_a_cosine_teacher_distils_its_logits_times_its_scale() -> None:
    """An LDAM-DRW teacher has a cosine head: its logits are cosines in [-1, 1], trained (and
    evaluated) times the loss's scale s; the student distils the scaled logits."""
    data = tiny_images()
    cfg = _cfg(**{"distill.teacher.method": "ldam-drw", "distill.teacher.params": {"scale": 20.0}})
    task, student, teacher = _student_task(
        data, cfg, "kd", ce_weight=0.0, kd_weight=1.0, temperature=4.0, standardize=False
    )
    assert type(teacher.head).__name__ == "CosineClassifier"
    x, y = data.train_x[:12], data.train_y[:12]
    out = task.training_step(student, Batch(x, y, torch.arange(12)), epoch=0, step=0)
    z_s = student(x)
    with torch.no_grad():
        cosines = teacher.head(teacher.backbone(x))
    assert float(cosines.abs().max()) <= 1.0 + 1e-6
    expected = kd_loss(z_s, 20.0 * cosines, temperature=4.0)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    unscaled = kd_loss(z_s, cosines, temperature=4.0)
    assert not torch.allclose(unscaled, expected, rtol=1e-3)  # the scale changes this loss
