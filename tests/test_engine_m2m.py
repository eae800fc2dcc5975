"""M2m in the engine: g is the shared ERM stage, f trains from scratch with translated minority
samples from ``m2m_start_fraction`` of the epochs on, with class-balanced over-sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from longtail import data as ltdata
from longtail.engine.checkpoint import save_checkpoint
from longtail.engine.runner import train_method
from longtail.engine.trainer import Trainer
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.m2m import M2mTask
from longtail.tracks.single_label.task import SingleLabelTask, single_label_finish_task
from test_engine_fixtures import tiny_config, tiny_vectors

# accept nearly every translation (beta 0.5: the Bernoulli passes), generate from epoch 2 of 4
_FAST = {"m2m_start_fraction": 0.5, "m2m_gamma": 0.01, "m2m_steps": 3, "m2m_beta": 0.5}


def _g_state(data: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    task = SingleLabelTask(METHODS["erm"], data, tiny_config())
    return {k: v.clone() for k, v in task.build_model().state_dict().items()}


def test_sampler_switches_to_class_balanced_at_generation() -> None:
    data = tiny_vectors()
    task = M2mTask(
        METHODS["m2m"], data, tiny_config(epochs=4), stage_state=_g_state(data), params=_FAST
    )
    assert task.start_epoch == 2
    inst = ltdata.InstanceBalancedSampler(data.train_y, seed=1)
    inst.set_epoch(1)
    assert torch.equal(task.sampler(1, seed=1, rank=0, world_size=1), inst.global_indices())
    cb = ltdata.ClassBalancedSampler(data.train_y, seed=1)
    cb.set_epoch(2)
    assert torch.equal(task.sampler(2, seed=1, rank=0, world_size=1), cb.global_indices())


@pytest.mark.parametrize("f_method", ["drs", "sqrt-resample"])
def test_m2m_without_oversampling_draws_as_its_f_method(f_method: str) -> None:
    """Without over-sampling, f's batches are f's method's (a deferred re-sampling f switches as
    drs does; it used to fail with "unknown kind 'drs'")."""
    data = tiny_vectors()
    params = {**_FAST, "m2m_f_method": f_method, "m2m_oversample": False}
    cfg = tiny_config(epochs=4)
    task = M2mTask(METHODS["m2m"], data, cfg, stage_state=_g_state(data), params=params)
    own = SingleLabelTask(METHODS[f_method], data, cfg)
    for epoch in range(4):
        assert torch.equal(
            task.sampler(epoch, seed=1, rank=0, world_size=1),
            own.sampler(epoch, seed=1, rank=0, world_size=1),
        )


@pytest.mark.parametrize("oversample", [None, True, False])
def test_m2m_ldam_drw_keeps_instance_sampling_unless_asked(oversample: bool | None) -> None:
    """LDAM-DRW re-weights from the same epoch on; by default its M2m keeps instance-balanced
    batches (the official LDAM-DRW command runs with --no_over), ``m2m_oversample`` switches."""
    data = tiny_vectors()
    params = dict(_FAST) if oversample is None else {**_FAST, "m2m_oversample": oversample}
    task = M2mTask(
        METHODS["m2m-ldam-drw"],
        data,
        tiny_config(epochs=4),
        stage_state=_g_state(data),
        params=params,
    )
    inst = ltdata.InstanceBalancedSampler(data.train_y, seed=1)
    cb = ltdata.ClassBalancedSampler(data.train_y, seed=1)
    for epoch in (1, 2, 3):
        inst.set_epoch(epoch)
        cb.set_epoch(epoch)
        expected = cb if oversample and epoch >= task.start_epoch else inst
        assert torch.equal(
            task.sampler(epoch, seed=1, rank=0, world_size=1), expected.global_indices()
        )
    plain = M2mTask(
        METHODS["m2m"], data, tiny_config(epochs=4), stage_state=_g_state(data), params=_FAST
    )
    assert plain.m2m["m2m_oversample"] is True and task.start_epoch == 2


def test_f_trains_with_its_method_and_g_stays_frozen() -> None:
    data = tiny_vectors()
    g_state = _g_state(data)
    task = single_label_finish_task(
        METHODS["m2m-ldam-drw"],
        data,
        tiny_config(epochs=4),
        g_state,
        {**_FAST, "m2m_f_method": "ldam-drw"},
    )
    assert isinstance(task, M2mTask)
    assert task.method.name == "ldam-drw"  # f's loss and head
    trainer = Trainer(task, data, tiny_config(epochs=4), seed=0)
    result = trainer.fit()
    assert result is not None
    assert type(task.build_model().head).__name__ == "CosineClassifier"  # type: ignore[union-attr]
    g = task._g
    assert g is not None
    for k, v in g.state_dict().items():
        torch.testing.assert_close(v, g_state[k])
    info = result.details["m2m"]
    assert info["start_epoch"] == 2
    assert sorted(info["per_epoch"]) == ["2", "3"]
    for row in info["per_epoch"].values():
        gen, acc = row["generated"], row["accepted"]
        assert gen[0] == 0  # the largest class is never a target
        assert all(0 <= a <= b for a, b in zip(acc, gen, strict=True))
    assert sum(sum(r["generated"]) for r in info["per_epoch"].values()) > 0
    samples = info["samples"]
    assert samples is not None and len(samples["images"]) == len(samples["target_class"]) > 0
    counts = data.class_counts
    for s, t in zip(samples["seed_class"], samples["target_class"], strict=True):
        assert counts[s] > counts[t]  # seeds come from larger classes
    history = result.history
    assert history[1].get("train_m2m_generated", 0.0) == 0.0
    assert history[3]["train_m2m_generated"] > 0.0


def test_m2m_end_to_end_shares_the_erm_stage(tmp_path: Path) -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=2)
    erm = train_method(METHODS["erm"], data, cfg, seed=0, out_dir=tmp_path)
    rec = train_method(METHODS["m2m"], data, cfg, seed=0, out_dir=tmp_path, resume=True)
    assert rec["stage"] == erm["stage"]
    assert len(rec["history"]) == 4  # the ERM stage, then f from scratch over the full schedule
    assert 0.0 <= rec["metrics"]["balanced_accuracy"] <= 1.0


def test_g_from_a_checkpoint(tmp_path: Path) -> None:
    data = tiny_vectors()
    good = tmp_path / "g.pt"
    save_checkpoint(good, _g_state(data))
    task = M2mTask(
        METHODS["m2m"],
        data,
        tiny_config(),
        stage_state={},
        params={"m2m_g_checkpoint": str(good)},
    )
    assert isinstance(task.setup().frozen["g"], torch.nn.Module)
    other = tiny_vectors(counts=(8, 6, 4))  # 3 classes
    bad = tmp_path / "g3.pt"
    save_checkpoint(bad, _g_state(other))
    task = M2mTask(
        METHODS["m2m"], data, tiny_config(), stage_state={}, params={"m2m_g_checkpoint": str(bad)}
    )
    with pytest.raises(ValueError, match=r"m2m_g_checkpoint: g has 3 classes, the data 4"):
        task.setup()
    with pytest.raises(ValueError, match=r"m2m_g_checkpoint: checkpoint not found"):
        M2mTask(
            METHODS["m2m"],
            data,
            tiny_config(),
            stage_state={},
            params={"m2m_g_checkpoint": str(tmp_path / "nope.pt")},
        )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"m2m_gamma": 1.0}, r"method_params\.m2m\.m2m_gamma"),
        ({"m2m_gamma": 0.0}, r"method_params\.m2m\.m2m_gamma"),
        ({"m2m_beta": 1.0}, r"method_params\.m2m\.m2m_beta"),
        ({"m2m_step_size": 0.0}, r"method_params\.m2m\.m2m_step_size"),
        ({"m2m_f_method": "nope"}, r"method_params\.m2m\.m2m_f_method: unknown method"),
        ({"m2m_f_method": "crt"}, r"method_params\.m2m\.m2m_f_method: 'crt' is not"),
    ],
)
def test_bad_parameters_name_the_key(params: dict[str, Any], match: str) -> None:
    data = tiny_vectors()
    with pytest.raises(ValueError, match=match):
        M2mTask(METHODS["m2m"], data, tiny_config(), stage_state=_g_state(data), params=params)


def test_step_size_and_noise_are_scaled_to_the_standardised_range() -> None:
    """The official step size (0.1) and random start (0.5) are in [0, 1]-pixel units; on the
    standardised inputs both are multiplied by the width of the training inputs' range, and every
    step is clipped to that range (the generator's settings once ``on_train_start`` has run)."""
    data = tiny_vectors()
    lo, hi = float(data.train_x.min()), float(data.train_x.max())
    assert hi - lo > 5.0  # the fixture's range is wide: unscaled settings would be far too small
    params = {"m2m_step_size": 0.2, "m2m_init_noise": 0.3}
    task = M2mTask(METHODS["m2m"], data, tiny_config(), stage_state=_g_state(data), params=params)
    setup = task.setup()
    task.on_train_start({**setup.modules, **setup.frozen}, torch.device("cpu"))
    gen = task._generator
    assert gen is not None and gen.g is setup.frozen["g"]
    assert gen.step_size == pytest.approx(0.2 * (hi - lo))
    assert gen.init_noise == pytest.approx(0.3 * (hi - lo))
    assert gen.input_range == pytest.approx((lo, hi))
