"""The task interface: several modules and optimisers, updates per batch, frozen models, eval-mode
parts, steps per epoch from the sampler, the running accuracy's targets, and no host reads per step."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from host_reads import count_host_reads
from longtail.engine.checkpoint import load_checkpoint
from longtail.engine.methods import recipe_from_dict
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MetricSpec,
    OptimizerSpec,
    Setup,
    StepOutput,
    Task,
    Update,
)
from longtail.engine.trainer import Trainer
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import (
    SecondStageTask,
    SingleLabelTask,
    second_stage_config,
    single_label_finish_task,
)
from test_engine_fixtures import tiny_config, tiny_images, tiny_vectors


class ToyTask(Task):
    """A generator ``gen`` and a classifier ``model``, each with its own optimiser, two updates per
    batch (the generator, then the classifier on the new generator's samples), and a frozen teacher."""

    kind = "toy"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("accuracy", "Acc."),)

    def __init__(self, data: Any) -> None:
        self.data = data
        self.calls: list[str] = []
        self.gen_seen: list[Tensor] = []
        self.teacher_modes: list[bool] = []

    def setup(self) -> Setup:
        d = self.data.train_x.shape[1]
        c = self.data.num_classes
        self.teacher = nn.Sequential(nn.Linear(d, c), nn.Dropout(0.5))
        model, gen = nn.Linear(d, c), nn.Linear(d, d)
        return Setup(
            modules={"model": model, "gen": gen},
            optimizers={
                "model": OptimizerSpec(list(model.parameters())),
                "gen": OptimizerSpec(list(gen.parameters()), kind="adam", lr=1e-2, schedule=False),
            },
            frozen={"teacher": self.teacher},
        )

    def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
        self.models = dict(models)

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        g = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(len(self.data.train_y), generator=g)[rank::world_size]

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> list[Update]:
        gen = self.models["gen"]
        teacher = self.models["teacher"]
        self.teacher_modes.append(teacher.training)

        def gen_step() -> StepOutput:
            self.calls.append("gen")
            fake = gen(batch.x)
            # the generator wants the classifier to be unsure on its samples
            return StepOutput(loss=-F.log_softmax(model(fake), 1).mean(), logs={"gen_norm": 1.0})

        def cls_step() -> StepOutput:
            self.calls.append("model")
            self.gen_seen.append(gen.weight.detach().clone())
            with torch.no_grad():
                fake = gen(batch.x)
                soft = teacher(batch.x).softmax(1)
            z = model(torch.cat([batch.x, fake]))
            loss = F.cross_entropy(z[: len(batch.y)], batch.y) + 0.0 * soft.sum()
            return StepOutput(loss=loss, logits=z[: len(batch.y)].detach(), targets=batch.y)

        return [Update("gen", gen_step), Update("model", cls_step)]

    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        hits = n = 0
        for b in splits["test"]:
            hits += int((model(b.x).argmax(1) == b.y).sum())
            n += len(b.y)
        return Evaluation({"accuracy": hits / max(n, 1)})


def test_two_modules_two_optimizers_two_updates_per_batch(tmp_path: Path) -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=2, batch_size=16)  # 45 samples: 3 steps per epoch
    task = ToyTask(data)
    trainer = Trainer(task, data, cfg, seed=0, run_dir=tmp_path)
    result = trainer.fit()
    assert result is not None
    # the updates run in order, the classifier step sees the generator after its step
    assert task.calls == ["gen", "model"] * 6
    assert not torch.equal(task.gen_seen[0], task.gen_seen[1])
    # the frozen teacher: evaluation mode during training, no gradients, not trained, not saved
    assert task.teacher_modes and not any(task.teacher_modes)
    assert all(not p.requires_grad for p in task.teacher.parameters())
    teacher_before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert set(state["optimizers"]) == {"model", "gen"}
    assert set(state["modules"]) == {"gen"}  # plus "model" at the top level; no teacher
    assert "teacher" not in state["modules"]
    assert state["optimizers"]["gen"]["param_groups"][0]["lr"] == pytest.approx(1e-2)  # no schedule
    # per-update losses are logged, and the task's logs
    row = result.history[-1]
    assert {"train_loss", "train_loss_gen", "train_loss_model", "train_gen_norm"} <= set(row)
    assert math.isfinite(row["train_accuracy"])
    # a second identical run: the teacher was never touched (same init from the same seed)
    task2 = ToyTask(data)
    Trainer(task2, data, cfg, seed=0).fit()
    for k, v in task2.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k])


def test_toy_task_resumes_exactly(tmp_path: Path) -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=3, batch_size=16)
    a = Trainer(ToyTask(data), data, cfg, seed=1, run_dir=tmp_path / "a").fit()
    assert (
        Trainer(ToyTask(data), data, cfg, seed=1, run_dir=tmp_path / "b").fit(stop_after_epoch=1)
        is None
    )
    b = Trainer(ToyTask(data), data, cfg, seed=1, run_dir=tmp_path / "b").fit(resume=True)
    assert a is not None and b is not None
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    sa = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    sb = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert all(
        torch.equal(sa["modules"]["gen"][k], sb["modules"]["gen"][k]) for k in sa["modules"]["gen"]
    )


def test_one_loss_with_several_optimizers_is_an_error() -> None:
    class Bad(ToyTask):
        def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> Any:
            return F.cross_entropy(model(batch.x), batch.y)

    data = tiny_vectors()
    with pytest.raises(ValueError, match="2 optimizers"):
        Trainer(Bad(data), data, tiny_config(epochs=1), seed=0).fit()


def test_unknown_optimizer_in_an_update_is_an_error() -> None:
    class Bad(ToyTask):
        def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> Any:
            return [Update("nope", F.cross_entropy(model(batch.x), batch.y))]

    data = tiny_vectors()
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        Trainer(Bad(data), data, tiny_config(epochs=1), seed=0).fit()


# ---- steps per epoch, running accuracy ------------------------------------------------------------


class _Plain(Task):
    kind = "plain"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("accuracy", "Acc."),)

    def __init__(self, data: Any, repeat: int = 1, out: str = "scored") -> None:
        self.data, self.repeat, self.out = data, repeat, out

    def build_model(self) -> nn.Module:
        return nn.Linear(self.data.train_x.shape[1], self.data.num_classes)

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        n = len(self.data.train_y)
        return torch.arange(n).repeat(self.repeat)[rank::world_size]

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> Any:
        z = model(batch.x)
        loss = F.cross_entropy(z, batch.y)
        if self.out == "scored":
            return StepOutput(loss, logits=z.detach(), targets=batch.y)
        if self.out == "joint":  # 4 copies with joint labels y * 4 + j, scored on the joint labels
            zz = torch.cat([z] * 4, 1)
            yy = torch.cat([batch.y * 4 + j for j in range(4)])
            return StepOutput(loss, logits=torch.cat([zz] * 4).detach(), targets=yy)
        if self.out == "bad":
            return StepOutput(loss, logits=z.detach(), targets=batch.y.float())
        return StepOutput(loss, logits=z.detach())  # no targets: no accuracy

    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        return Evaluation({"accuracy": 0.0})


def test_steps_per_epoch_follow_the_sampler_length() -> None:
    """A sampler of length 2N takes 2N / batch steps: the cosine schedule is not over in epoch 1."""
    data = tiny_vectors()  # 45 samples
    cfg = tiny_config(epochs=2, batch_size=15, schedule="cosine")
    r = Trainer(_Plain(data, repeat=2), data, cfg, seed=0).fit()
    assert r is not None
    # 6 steps per epoch, 12 in all: the last step of epoch 1 is step 5 of 12
    expected = 0.05 * 0.5 * (1 + math.cos(math.pi * 5 / 12))
    assert r.history[0]["lr"] == pytest.approx(expected)
    assert r.history[1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 11 / 12)))


def test_running_accuracy_scores_the_given_targets() -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=1, batch_size=16)
    joint = Trainer(_Plain(data, out="joint"), data, cfg, seed=0).fit()
    assert joint is not None and 0.0 <= joint.history[0]["train_accuracy"] <= 1.0
    none = Trainer(_Plain(data, out="none"), data, cfg, seed=0).fit()
    assert none is not None and math.isnan(none.history[0]["train_accuracy"])
    with pytest.raises(ValueError, match=r"StepOutput\.targets"):
        Trainer(_Plain(data, out="bad"), data, cfg, seed=0).fit()


def test_mixup_scores_the_dominant_label() -> None:
    """With replaced labels the accuracy is scored against what the step says, not batch.y."""
    data = tiny_vectors()
    cfg = tiny_config(epochs=1, batch_size=64)
    task = SingleLabelTask(METHODS["mixup-drw"], data, cfg)
    model = task.build_model()
    batch = Batch(data.train_x, data.train_y, torch.arange(len(data.train_y)))
    replaced = 0
    for seed in range(10):
        torch.manual_seed(seed)
        out = task.training_step(model, batch, 0, 0)
        assert out.targets is not None and out.targets.shape == data.train_y.shape
        replaced += not torch.equal(out.targets, data.train_y)  # the partner dominates (lam < 0.5)
    assert replaced > 0


# ---- frozen BatchNorm in the second stage --------------------------------------------------------


def test_crt_keeps_features_and_batchnorm_statistics_frozen(tmp_path: Path) -> None:
    data = tiny_images()
    cfg = tiny_config(epochs=2, batch_size=8)
    first = Trainer(SingleLabelTask(METHODS["erm"], data, cfg), data, cfg, seed=0).fit()
    assert first is not None
    method = METHODS["crt"]
    params = method.defaults
    cfg2 = second_stage_config(cfg, method, params)
    assert cfg2.train.epochs == 1  # ceil(0.1 * 2)
    task = SecondStageTask(method, data, cfg2, stage_state=first.model_state, params=params)
    second = Trainer(task, data, cfg2, seed=0).fit()
    assert second is not None
    for k, v in first.model_state.items():
        if k.startswith("backbone."):  # weights and running statistics
            assert torch.equal(v, second.model_state[k]), k
    assert not torch.equal(first.model_state["head.weight"], second.model_state["head.weight"])


def test_lws_trains_only_the_scales_and_wb_projects_after_every_step() -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=3, batch_size=8)
    first = Trainer(SingleLabelTask(METHODS["erm"], data, cfg), data, cfg, seed=0).fit()
    assert first is not None
    lws = METHODS["lws"]
    task = SecondStageTask(
        lws, data, second_stage_config(cfg, lws, lws.defaults), stage_state=first.model_state
    )
    r = Trainer(task, data, second_stage_config(cfg, lws, lws.defaults), seed=0).fit()
    assert r is not None
    assert torch.equal(r.model_state["head.linear.weight"], first.model_state["head.weight"])
    assert not torch.equal(r.model_state["head.scales"], torch.ones(data.num_classes))
    wb = METHODS["weight-balancing"]
    params = wb.resolve_params({"maxnorm": 0.0})  # radius = the smallest stage-1 norm
    cfg2 = second_stage_config(cfg, wb, params)
    task = SecondStageTask(wb, data, cfg2, stage_state=first.model_state, params=params)
    projected: list[float] = []
    setup = task.setup

    def spy() -> Setup:
        s = setup()
        assert s.optimizers is not None
        spec = s.optimizers["classifier"]
        inner = spec.after_step
        assert inner is not None
        w = s.modules["model"].head.weight  # type: ignore[union-attr]

        def after() -> None:
            inner()
            projected.append(float(w.detach().norm(dim=1).max()))

        spec.after_step = after
        assert spec.weight_decay == pytest.approx(0.01)
        return s

    task.setup = spy  # type: ignore[method-assign]
    r = Trainer(task, data, cfg2, seed=0).fit()
    assert r is not None
    radius = float(first.model_state["head.weight"].norm(dim=1).min())
    assert len(projected) == cfg2.train.epochs * math.ceil(len(data.train_y) / 8)
    assert max(projected) <= radius + 1e-5


# ---- no host reads in the training step ------------------------------------------------------------

_COMPOSED = recipe_from_dict(
    "sqrt-la-crt", {"loss": "la", "sampler": "sqrt", "second_stage": "crt", "params": {"tau": 0.5}}
)


@pytest.mark.parametrize("name", [*METHODS, "composed"])
def test_no_host_reads_in_the_training_step(name: str) -> None:
    """After the first step of an epoch (which builds the epoch's loss context), a training step of
    every method reads nothing back to the host (on a GPU: no synchronisation)."""
    method = _COMPOSED if name == "composed" else METHODS[name]
    data = tiny_images() if method.head == "linear" else tiny_vectors()
    cfg = tiny_config(epochs=10)
    task: SingleLabelTask = SingleLabelTask(method, data, cfg)
    model = task.setup().modules["model"]
    if method.second_stage is not None:
        params = method.defaults
        # M2m: f's own step (without on_train_start no generator is built; the generation itself
        # reads the host: the number of selected slots sets the size of the translated batch)
        task = single_label_finish_task(
            method, data, second_stage_config(cfg, method, params), model.state_dict(), params
        )
        model = task.setup().modules["model"]
    batch = Batch(data.train_x[:8], data.train_y[:8], torch.arange(8))
    for epoch in (0, 9):  # before and during deferred re-weighting
        task.training_step(model, batch, epoch, 0).loss.backward()  # builds the epoch's context
        reads, out = count_host_reads(lambda e=epoch: task.training_step(model, batch, e, 1))
        assert reads == 0, (name, epoch, reads)
        reads, _ = count_host_reads(lambda o=out: o.loss.backward())
        assert reads == 0, (name, epoch, "backward", reads)


def test_batchnorm_a_task_freezes_in_on_train_start_stays_frozen() -> None:
    """Sub-modules a task puts in evaluation mode in on_train_start keep it every epoch."""
    data = tiny_images()
    cfg = tiny_config(epochs=3, batch_size=8, eval_every=1)

    class FreezeBN(SingleLabelTask):
        def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
            for m in models["model"].modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
                    self.bn = m

    task = FreezeBN(METHODS["erm"], data, cfg)
    torch.manual_seed(0)
    before = task.build_model().state_dict()
    r = Trainer(task, data, cfg, seed=0).fit()
    assert r is not None
    key = next(k for k in before if k.endswith("running_mean"))
    assert torch.equal(r.model_state[key], before[key])  # same init: seed 0 in both
