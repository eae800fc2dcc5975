"""Self-supervised label augmentation in the engine: joint / multi-task / augmentation training and
single, aggregated and self-distilled inference, against formulas written here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from longtail.engine.methods import recipe_from_dict
from longtail.engine.runner import train_method
from longtail.engine.tasks import Batch
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.sla import SLATask
from longtail.tracks.single_label.task import single_label_task
from test_engine_fixtures import tiny_config, tiny_images, tiny_vectors

N, M = 3, 4  # tiny_images: 3 classes; rotations


def _rotations(x: torch.Tensor) -> torch.Tensor:
    """(B, 4, C, H, W): x rotated by 0, 90, 180, 270 degrees (counter-clockwise, torch.rot90)."""
    return torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=1)


def _task(name: str, **params: Any) -> SLATask:
    method = METHODS[name] if name in METHODS else recipe_from_dict(name, _RECIPES[name])
    task = single_label_task(method, tiny_images(), tiny_config(epochs=4), params or None)
    assert isinstance(task, SLATask)
    return task


_RECIPES = {"sla-la": {"loss": "la", "sla": "joint", "params": {"inference": "si"}}}


def _step(task: SLATask, seed: int = 0) -> tuple[torch.nn.Module, Batch, torch.Tensor]:
    torch.manual_seed(seed)
    model = task.build_model()
    data = task.data
    batch = Batch(data.train_x[:10], data.train_y[:10], torch.arange(10))
    loss = task.training_step(model, batch, 0, 0).loss
    return model, batch, loss


def _all(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model outputs on every rotated copy: (B, 4, outputs)."""
    r = _rotations(x)
    return model(r.flatten(0, 1)).unflatten(0, (x.shape[0], 4))


def test_joint_loss_is_cross_entropy_on_pairs() -> None:
    model, b, loss = _step(_task("sla"))
    z = _all(model, b.x)  # (B, 4, N*M)
    joint = b.y[:, None] * M + torch.arange(M)
    ref = F.cross_entropy(z.flatten(0, 1), joint.flatten())
    torch.testing.assert_close(loss, ref)


def test_joint_loss_with_logit_adjustment_uses_the_class_prior() -> None:
    task = _task("sla-la")
    model, b, loss = _step(task)
    counts = torch.tensor(task.data.class_counts, dtype=torch.float32)
    joint_prior = (counts / counts.sum() / M).repeat_interleave(M)
    z = _all(model, b.x).flatten(0, 1)
    joint = (b.y[:, None] * M + torch.arange(M)).flatten()
    torch.testing.assert_close(loss, F.cross_entropy(z + joint_prior.log(), joint))


@pytest.mark.parametrize("inference", ["si", "ag", "sd"])
def test_inference(inference: str) -> None:
    task = _task("sla", inference=inference)
    model, b, _ = _step(task)
    model.eval()  # inference: batch norm with running statistics (each copy's output its own)
    got = task.predict_logits(model, b.x)
    if inference == "si":
        ref = model(b.x)[:, : N * M].unflatten(1, (N, M))[:, :, 0]
    elif inference == "ag":
        z = _all(model, b.x)[..., : N * M].unflatten(2, (N, M))  # [b, j, i, j']
        ref = torch.stack([z[:, j, :, j] for j in range(M)], dim=-1).mean(-1)
    else:
        ref = model(b.x)[:, N * M :]
        assert ref.shape == (10, N)
    torch.testing.assert_close(got, ref)


def test_self_distillation_loss() -> None:
    model, b, loss = _step(_task("sla", inference="sd"))
    z = _all(model, b.x)
    joint = b.y[:, None] * M + torch.arange(M)
    ce_joint = F.cross_entropy(z[..., : N * M].flatten(0, 1), joint.flatten())
    blocks = z[..., : N * M].unflatten(2, (N, M))
    agg = torch.stack([blocks[:, j, :, j] for j in range(M)], dim=-1).mean(-1)
    h = z[:, 0, N * M :]  # the class head on the identity copies
    kl = (F.softmax(agg, 1) * (F.log_softmax(agg, 1) - F.log_softmax(h, 1))).sum(1).mean()
    torch.testing.assert_close(loss, ce_joint + F.cross_entropy(h, b.y) + kl)


def test_multitask_and_augmentation_baselines() -> None:
    model, b, loss = _step(_task("sla-mt"))
    z = _all(model, b.x)  # (B, 4, N + M)
    ref = F.cross_entropy(z[..., :N].flatten(0, 1), b.y.repeat_interleave(M)) + F.cross_entropy(
        z[..., N:].flatten(0, 1), torch.arange(M).repeat(10)
    )
    torch.testing.assert_close(loss, ref)
    model, b, loss = _step(_task("sla-da"))
    z = _all(model, b.x)
    torch.testing.assert_close(loss, F.cross_entropy(z.flatten(0, 1), b.y.repeat_interleave(M)))


def test_outputs_per_kind() -> None:
    assert _task("sla").num_outputs == N * M
    assert _task("sla", inference="sd").num_outputs == N * M + N
    assert _task("sla-mt").num_outputs == N + M
    assert _task("sla-da").num_outputs == N


def test_bad_data_and_configs_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"method_params\.sla\.sla_family.*images"):
        single_label_task(METHODS["sla"], tiny_vectors(), tiny_config())
    with pytest.raises(ValueError, match="RGB"):
        single_label_task(
            METHODS["sla"], tiny_images(), tiny_config(), {"sla_family": "channel_permutation"}
        )
    with pytest.raises(ValueError, match=r"method_params\.sla\.inference.*'si', 'ag', 'sd'"):
        METHODS["sla"].resolve_params({"inference": "mean"})
    with pytest.raises(ValueError, match=r"recipes\.x\.mix"):
        recipe_from_dict("x", {"loss": "ce", "sla": "joint", "mix": "mixup"})
    with pytest.raises(ValueError, match=r"recipes\.x\.sla"):
        recipe_from_dict("x", {"loss": "ce", "sla": "rotation"})


@pytest.mark.parametrize("inference", ["ag", "sd"])
def test_end_to_end(inference: str, tmp_path: Path) -> None:
    method = recipe_from_dict(
        "s", {"loss": "ce", "sla": "joint", "params": {"inference": inference}}
    )
    record = train_method(method, tiny_images(), tiny_config(epochs=2), seed=0, out_dir=tmp_path)
    v = record["metrics"]["balanced_accuracy"]
    assert v is not None and 0.0 <= v <= 1.0
    assert all(math.isfinite(r["train_loss"]) for r in record["history"])
