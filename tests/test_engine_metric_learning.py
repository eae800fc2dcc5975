"""Metric learning (task: metric-learning): seen / unseen class data, P x K batches, the triplet
teacher, RKD students against the frozen teacher, Recall@K, config errors, the bundled config."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from data_fixtures import REPO_ROOT, write_tiny_idx
from longtail.cli import main
from longtail.engine.checkpoint import save_checkpoint
from longtail.engine.config import ConfigError, config_from_dict, load_config
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.tasks import Batch
from longtail.engine.trainer import Trainer
from longtail.losses import mine_triplets, rkd_angle_loss, rkd_distance_loss
from longtail.metrics import recall_at_k
from longtail.tracks.metric_learning.task import (
    METRIC_LEARNING_METHODS,
    EmbeddingNet,
    MetricLearningTask,
    build_metric_learning_data,
    metric_stage_config,
    metric_stage_task,
    pk_batches,
)

CONFIG = REPO_ROOT / "configs" / "metric_fashion_mnist.yaml"


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_idx(tmp_path_factory.mktemp("idx"), per_class=12, test_per_class=6, seed=1)


def _raw(idx: Path, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "tiny_metric",
        "task": "metric-learning",
        "methods": ["teacher", "triplet", "rkd-da"],
        "seeds": [0],
        "metric_learning": {
            "embedding_dim": 8,
            "classes_per_batch": 5,
            "teacher": {"model": {"arch": "cnn", "channels": [8, 8]}, "embedding_dim": 16},
        },
        "data": {"dataset": "mnist", "data_dir": str(idx), "imbalance_factor": None},
        "model": {"arch": "cnn", "channels": [4, 8]},
        "train": {
            "epochs": 2,
            "batch_size": 20,
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


def _teacher_state(data: Any, cfg: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    task = metric_stage_task(METRIC_LEARNING_METHODS["teacher"], data, cfg, {})
    return {k: v.clone() for k, v in task.setup().modules["model"].state_dict().items()}


# ------------------------------------------------------------------------ registry, config, data


def test_registered_with_the_runner() -> None:
    assert TASK_KINDS["metric-learning"].methods is METRIC_LEARNING_METHODS
    assert list(METRIC_LEARNING_METHODS) == ["teacher", "triplet", "rkd-d", "rkd-a", "rkd-da"]
    kind = TASK_KINDS["metric-learning"]
    assert [m.name for m in kind.metrics] == [f"recall_at_{k}" for k in (1, 2, 4, 8)]
    d = {n: m.defaults for n, m in METRIC_LEARNING_METHODS.items() if m.needs_stage}
    assert d["rkd-d"]["rkd_distance"] == 1 and d["rkd-d"]["rkd_angle"] == 0
    assert d["rkd-a"]["rkd_distance"] == 0 and d["rkd-a"]["rkd_angle"] == 2
    assert (d["rkd-da"]["rkd_distance"], d["rkd-da"]["rkd_angle"]) == (1, 2)
    assert all(v["triplet_weight"] == 0 for v in d.values())


def test_data_seen_classes_train_unseen_classes_test(idx_dir: Path) -> None:
    cfg = config_from_dict(
        _raw(
            idx_dir,
            **{"metric_learning.train_classes": [7, 1, 3], "metric_learning.classes_per_batch": 2},
        )
    )
    data = build_metric_learning_data(cfg)
    assert data.class_names == ["7", "1", "3"] and data.class_counts == [12, 12, 12]
    assert sorted(data.train_y.unique().tolist()) == [0, 1, 2]
    assert sorted(data.test_y.unique().tolist()) == [0, 2, 4, 5, 6, 8, 9]
    assert len(data.test_y) == 7 * 6
    # standardised with the seen classes' training images
    assert abs(float(data.train_x.mean())) < 1e-4 and abs(float(data.train_x.std()) - 1) < 1e-3


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"metric_learning.train_classes": [0]}, "metric_learning.train_classes"),
        ({"metric_learning.train_classes": [0, 1, 1]}, "metric_learning.train_classes"),
        ({"metric_learning.classes_per_batch": 6}, "metric_learning.classes_per_batch"),
        ({"metric_learning.classes_per_batch": 1}, "metric_learning.classes_per_batch"),
        ({"train.batch_size": 21}, "train.batch_size"),
        ({"train.batch_size": 5}, "train.batch_size"),
        ({"metric_learning.margin": 0.0}, "metric_learning.margin"),
        ({"metric_learning.mining": "semi_hard"}, "metric_learning.mining"),
        ({"metric_learning.teacher.embedding_dim": 0}, "metric_learning.teacher.embedding_dim"),
        ({"method_params": {"rkd-da": {"rkd_angle": -2.0}}}, "method_params.rkd-da.rkd_angle"),
        (
            {"method_params": {"rkd-d": {"triplet_weight": -1}}},
            "method_params.rkd-d.triplet_weight",
        ),
        ({"data.balanced_reference": True}, "data.balanced_reference"),
        ({"data.dataset": "image-folder"}, "data.dataset"),
        ({"recipes": {"x": {"loss": "ce"}}}, "recipes"),
        ({"methods": ["teacher", "kd"]}, "methods[1]"),
        ({"task": "distillation", "methods": ["teacher"]}, "metric_learning"),
    ],
)
def test_config_errors_name_the_key(idx_dir: Path, over: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        config_from_dict(_raw(idx_dir, **over))


def test_data_errors_name_the_key(idx_dir: Path) -> None:
    cfg = config_from_dict(
        _raw(
            idx_dir,
            **{"metric_learning.train_classes": [0, 12], "metric_learning.classes_per_batch": 2},
        )
    )
    with pytest.raises(ConfigError, match=r"'metric_learning\.train_classes'.*12 is out of range"):
        build_metric_learning_data(cfg)
    cfg = config_from_dict(_raw(idx_dir, **{"metric_learning.train_classes": list(range(9))}))
    with pytest.raises(ConfigError, match=r"'metric_learning\.train_classes'.*1 unseen"):
        build_metric_learning_data(cfg)


# ------------------------------------------------------------------------ sampler


def test_pk_batches_hold_k_images_of_p_classes() -> None:
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7 + [3] * 5)
    g = torch.Generator().manual_seed(0)
    order = pk_batches(labels, 12, 3, 6, g)
    assert order.shape == (6 * 12,)
    for batch in order.view(6, 12):
        classes = labels[batch]
        assert len(classes.unique()) == 3
        assert all(int((classes == c).sum()) == 4 for c in classes.unique())
    # a class with fewer than K images repeats them; a bigger one is cycled without repeats
    zeros = order[labels[order] == 0]
    first = zeros[: min(len(zeros), 10)]
    assert len(first.unique()) == len(first)


def test_sampler_is_deterministic_and_sharded(idx_dir: Path) -> None:
    cfg = config_from_dict(_raw(idx_dir))
    data = build_metric_learning_data(cfg)
    task = metric_stage_task(METRIC_LEARNING_METHODS["triplet"], data, cfg, {})
    a = task.sampler(3, seed=1, rank=0, world_size=1)
    assert torch.equal(a, task.sampler(3, seed=1, rank=0, world_size=1))
    assert not torch.equal(a, task.sampler(4, seed=1, rank=0, world_size=1))
    assert len(a) == (len(data.train_y) // 20) * 20
    r0 = task.sampler(3, seed=1, rank=0, world_size=2)
    r1 = task.sampler(3, seed=1, rank=1, world_size=2)
    # the k-th batch of each rank (10 = 20 / 2) together is the k-th global batch
    for k in range(len(a) // 20):
        union = torch.cat([r0[10 * k : 10 * k + 10], r1[10 * k : 10 * k + 10]])
        assert sorted(union.tolist()) == sorted(a[20 * k : 20 * k + 20].tolist())


# ------------------------------------------------------------------------ losses


def test_teacher_and_triplet_student_use_torch_triplet_loss(idx_dir: Path) -> None:
    assert config_from_dict(_raw(idx_dir)).metric_learning.mining == "all"  # the default
    cfg = config_from_dict(_raw(idx_dir, **{"metric_learning.mining": "batch_hard"}))
    data = build_metric_learning_data(cfg)
    for name, dim in (("teacher", 16), ("triplet", 8)):
        stage_cfg = metric_stage_config(cfg, METRIC_LEARNING_METHODS[name], {})
        task = metric_stage_task(METRIC_LEARNING_METHODS[name], data, stage_cfg, {})
        model = task.setup().modules["model"]
        assert isinstance(model, EmbeddingNet) and model.normalize
        x, y = data.train_x[:20], data.train_y[:20]
        out = task.training_step(model, Batch(x, y, torch.arange(20)), 0, 0)
        e = model(x)
        assert e.shape == (20, dim)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(20))
        a, p, n = mine_triplets(y, e, strategy="batch_hard")
        expected = F.triplet_margin_loss(e[a], e[p], e[n], margin=0.2)
        torch.testing.assert_close(out.loss, expected)
    # all triplets; a batch of one class has none: the loss is 0, not NaN
    cfg = config_from_dict(_raw(idx_dir))
    task = metric_stage_task(METRIC_LEARNING_METHODS["triplet"], data, cfg, {})
    model = task.setup().modules["model"]
    mixed = torch.arange(0, 60, 5)  # 12 images of the 5 classes (the data are sorted by class)
    x, y = data.train_x[mixed], data.train_y[mixed]
    e = model(x)
    a, p, n = mine_triplets(y, strategy="all")
    assert len(a) > 0
    torch.testing.assert_close(
        task.triplet_loss(e, y), F.triplet_margin_loss(e[a], e[p], e[n], margin=0.2)
    )
    one_class = task.triplet_loss(e[:4], torch.zeros(4, dtype=torch.long))
    assert float(one_class.detach()) == 0.0


def test_rkd_student_loss_and_frozen_teacher(idx_dir: Path) -> None:
    cfg = config_from_dict(
        _raw(idx_dir, method_params={"rkd-da": {"rkd_distance": 1.5, "triplet_weight": 0.5}})
    )
    data = build_metric_learning_data(cfg)
    state = _teacher_state(data, cfg)
    method = METRIC_LEARNING_METHODS["rkd-da"]
    params = method.resolve_params(cfg.method_params["rkd-da"])
    task = MetricLearningTask(method, data, cfg, params=params, teacher_state=state)
    setup = task.setup()
    student, teacher = setup.modules["model"], setup.frozen["teacher"]
    assert not student.normalize  # the official distillation students: unnormalised
    teacher.eval().requires_grad_(False)
    task.on_train_start({"model": student, "teacher": teacher}, torch.device("cpu"))
    x, y = data.train_x[:20], data.train_y[:20]
    out = task.training_step(student, Batch(x, y, torch.arange(20)), 0, 0)
    e = student(x)
    with torch.no_grad():
        t = teacher(x)
    a, p, n = mine_triplets(y, strategy="all")
    expected = (
        1.5 * rkd_distance_loss(e, t)
        + 2.0 * rkd_angle_loss(e, t)
        + 0.5 * F.triplet_margin_loss(e[a], e[p], e[n], margin=0.2)
    )
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert set(out.logs) == {"rkd_distance", "rkd_angle", "triplet"}
    # training changes the student only
    task = MetricLearningTask(method, data, cfg, params=params, teacher_state=state)
    result = Trainer(task, data, cfg, seed=0).fit()
    assert result is not None and task.teacher is not None
    assert all(not q.requires_grad and q.grad is None for q in task.teacher.parameters())
    for k, v in task.teacher.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert result.history[-1]["train_rkd_angle"] > 0


def test_student_without_teacher_state_is_refused(idx_dir: Path) -> None:
    cfg = config_from_dict(_raw(idx_dir))
    data = build_metric_learning_data(cfg)
    with pytest.raises(ValueError, match="teacher_state"):
        MetricLearningTask(METRIC_LEARNING_METHODS["rkd-d"], data, cfg)


def test_evaluation_is_recall_at_k_of_the_unseen_classes(idx_dir: Path) -> None:
    cfg = config_from_dict(_raw(idx_dir))
    data = build_metric_learning_data(cfg)
    task = metric_stage_task(METRIC_LEARNING_METHODS["triplet"], data, cfg, {})
    model = task.setup().modules["model"]
    ev = task.evaluate(model, {"test": [Batch(data.test_x, data.test_y, torch.arange(30))]})
    with torch.no_grad():
        e = model.eval()(data.test_x)
    expected = recall_at_k(e, data.test_y, (1, 2, 4, 8))
    assert ev.metrics == {f"recall_at_{k}": pytest.approx(v) for k, v in expected.items()}
    assert ev.details["test_classes"] == [5, 6, 7, 8, 9]


# ------------------------------------------------------------------------ runs


def _bench(idx: Path, out: Path, *extra: str) -> list[str]:
    return [
        "bench",
        str(CONFIG),
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
        "data.max_per_class=12",
        "--set",
        "train.batch_size=20",
        "--set",
        "train.eval_every=0",
        "--set",
        "model.channels=[4,8]",
        "--set",
        "metric_learning.teacher.model.channels=[8,8]",
        *extra,
    ]


def test_bundled_config_end_to_end_with_a_shared_teacher(
    idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(CONFIG)
    assert cfg.task == "metric-learning" and cfg.metric_learning is not None
    assert cfg.metric_learning.margin == 0.2 and cfg.metric_learning.train_classes == [
        0,
        1,
        2,
        3,
        4,
    ]
    calls: list[str] = []
    real = Trainer.fit

    def counted(self: Trainer, **kw: Any) -> Any:
        calls.append(f"{self.label}:{self.config.train.epochs}")
        return real(self, **kw)

    monkeypatch.setattr(Trainer, "fit", counted)
    out = tmp_path / "run"
    assert main(_bench(idx_dir, out)) == 0
    # teacher and triplet student: a stage each; the three RKD students share the teacher's
    assert sorted(c.split("-")[0] for c in calls if c.startswith("stage ")) == [
        "stage student",
        "stage teacher",
    ]
    assert sorted(c for c in calls if not c.startswith("stage ")) == [
        "rkd-a:1",
        "rkd-d:1",
        "rkd-da:1",
    ]
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "metric-learning"
    assert list(results["methods"]) == ["teacher", "triplet", "rkd-d", "rkd-a", "rkd-da"]
    for entry in results["methods"].values():
        assert set(entry["metrics"]) == {f"recall_at_{k}" for k in (1, 2, 4, 8)}
        assert 0 <= entry["metrics"]["recall_at_1"]["mean"] <= 1
    assert results["num_test"] == 5 * 6 and results["class_counts"] == [12] * 5
    # a checkpoint teacher: loaded and evaluated, not trained
    ckpt = out / "teacher" / "seed_0" / "model.pt"
    calls.clear()
    second = tmp_path / "second"
    extra = ("--methods", "teacher,rkd-d", "--set", f"metric_learning.teacher.checkpoint={ckpt}")
    assert main(_bench(idx_dir, second, *extra)) == 0
    assert next(c for c in calls if c.startswith("stage ")).endswith(":0")
    a = json.loads((out / "teacher" / "seed_0" / "result.json").read_text())
    b = json.loads((second / "teacher" / "seed_0" / "result.json").read_text())
    assert a["metrics"] == b["metrics"]


def test_checkpoint_of_another_embedding_size_is_refused(idx_dir: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_raw(idx_dir))
    data = build_metric_learning_data(cfg)
    path = tmp_path / "t.pt"
    save_checkpoint(path, _teacher_state(data, cfg))  # 16-d embeddings
    t = dataclasses.replace(cfg.metric_learning.teacher, checkpoint=str(path), embedding_dim=32)
    bad = cfg.with_section("metric_learning", dataclasses.replace(cfg.metric_learning, teacher=t))
    with pytest.raises(ConfigError, match=r"'metric_learning\.teacher\.checkpoint'.*16 dim"):
        build_metric_learning_data(bad)
