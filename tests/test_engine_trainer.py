"""Trainer: determinism, exact resume, atomic checkpoints, the non-finite-loss stop, SIGKILL resume."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from longtail.engine.checkpoint import load_checkpoint
from longtail.engine.methods import LossContext, Method
from longtail.engine.trainer import NonFiniteLossError, RunResult, Trainer
from longtail.tracks.single_label import METHODS, SingleLabelTask
from test_engine_fixtures import tiny_config, tiny_images, tiny_vectors

REPO_ROOT = Path(__file__).resolve().parents[1]


def _fit(method: str, run_dir: Path | None, **kw: Any) -> tuple[Trainer, Any]:
    data = tiny_images() if kw.pop("images", False) else tiny_vectors()
    cfg = tiny_config(**kw.pop("train", {}))
    trainer = Trainer(
        SingleLabelTask(METHODS[method], data, cfg), data, cfg, seed=3, run_dir=run_dir
    )
    return trainer, trainer.fit(**kw)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    timing = ("epoch_seconds", "eval_seconds")
    return [{k: v for k, v in row.items() if k not in timing} for row in history]


def test_same_seed_same_weights() -> None:
    train = {"epochs": 3, "batch_size": 8, "augment": True}
    _, a = _fit("erm", None, images=True, train=train)
    _, b = _fit("erm", None, images=True, train=train)
    assert _same_state(a.model_state, b.model_state)
    assert a.metrics == b.metrics


@pytest.mark.parametrize(
    ("method", "images"),
    [("erm", True), ("ldam-drw", False), ("cb-resample", False)],
)
def test_resume_gives_the_same_result(tmp_path: Path, method: str, images: bool) -> None:
    """4 epochs straight == 2 epochs, stop, resume to 4: identical weights, metrics and log."""
    train = {
        "epochs": 4,
        "batch_size": 8,
        "augment": images,
        "crop_padding": 1,
        "eval_every": 1,
        "warmup_epochs": 1,
    }
    _, straight = _fit(method, tmp_path / "a", images=images, train=train)
    _, none = _fit(method, tmp_path / "b", images=images, train=train, stop_after_epoch=2)
    assert none is None
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2
    _, resumed = _fit(method, tmp_path / "b", images=images, train=train, resume=True)
    assert isinstance(straight, RunResult) and isinstance(resumed, RunResult)
    assert _same_state(straight.model_state, resumed.model_state)
    assert straight.metrics == resumed.metrics
    assert _strip_time(straight.history) == _strip_time(resumed.history)
    assert straight.details == resumed.details


def test_checkpoint_is_weights_only_loadable(tmp_path: Path) -> None:
    _fit("erm", tmp_path, train={"epochs": 2})
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    assert set(state) >= {"model", "modules", "optimizers", "scheduler", "history", "fingerprint"}
    # every epoch re-seeds the global RNG from (seed, epoch): no RNG state to save or restore
    assert "rng" not in state
    assert set(state["optimizers"]) == {"default"}
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,lr,train_loss,train_accuracy")
    assert len(log) == 3


def test_resume_refuses_another_configuration(tmp_path: Path) -> None:
    _fit("erm", tmp_path, train={"epochs": 2})
    with pytest.raises(ValueError, match="different configuration"):
        _fit("erm", tmp_path, train={"epochs": 2, "lr": 0.2}, resume=True)


def test_resume_of_a_finished_checkpoint_only_evaluates(tmp_path: Path) -> None:
    _, a = _fit("erm", tmp_path, train={"epochs": 2})
    _, b = _fit("erm", tmp_path, train={"epochs": 2}, resume=True)
    assert _same_state(a.model_state, b.model_state)


def _nan_at_epoch(epoch: int) -> Any:
    """A cross-entropy loss that turns NaN in ``epoch`` (0-based)."""

    def loss_fn(z: torch.Tensor, y: torch.Tensor, ctx: LossContext) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(z, y)
        return loss * float("nan") if ctx.epoch == epoch else loss

    return loss_fn


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = Method("nan-at-epoch-1", "test", "none", _nan_at_epoch(1))
    monkeypatch.setitem(METHODS, bad.name, bad)
    data = tiny_vectors()
    cfg = tiny_config(epochs=3, batch_size=16)
    trainer = Trainer(SingleLabelTask(bad, data, cfg), data, cfg, seed=0, run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2/3, step 1/3") as info:
        trainer.fit()
    assert "last good checkpoint (end of epoch 1)" in str(info.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_non_finite_loss_message_without_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def always_nan(z: torch.Tensor, y: torch.Tensor, ctx: LossContext) -> torch.Tensor:
        return z.sum() * float("inf")

    bad = Method("inf", "test", "none", always_nan)
    data = tiny_vectors()
    cfg = tiny_config(epochs=1)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        Trainer(SingleLabelTask(bad, data, cfg), data, cfg, seed=0).fit()


def test_bf16_autocast_trains() -> None:
    _, r = _fit("la-loss", None, train={"epochs": 2, "precision": "bf16"})
    assert math.isfinite(r.metrics["balanced_accuracy"])


def test_fp16_needs_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="precision"):
        _fit("erm", None, train={"precision": "fp16"})


# ---- SIGKILL ------------------------------------------------------------------------------------


def _digits_config(path: Path, epochs: int) -> Path:
    raw = {
        "name": "killed",
        "methods": ["drw"],
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [256, 256]},
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            "lr": 0.05,
            "eval_every": 0,
            "num_threads": 1,
        },
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _run_cli(args: list[str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "longtail", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    # the victim is killed once a checkpoint of epoch KILL_AFTER exists; the epochs after it (each
    # tens of milliseconds, the deferred re-weighting in the last fifth) leave the poll below a
    # window of about a second on an idle machine, longer under load (the victim slows down too)
    epochs, kill_after = 24, 2
    cfg = _digits_config(tmp_path / "c.yaml", epochs)
    ref = _run_cli(["train", str(cfg), "--out", str(tmp_path / "ref"), "--no-progress"])
    victim = _run_cli(["train", str(cfg), "--out", str(tmp_path / "kill"), "--no-progress"])
    stage_dirs = tmp_path / "kill" / "stages"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and victim.poll() is None:
        found = list(stage_dirs.glob("*/seed_0/checkpoint.pt"))
        if found:
            ckpt = found[0]
            try:
                epoch = int(load_checkpoint(ckpt)["epoch"])
            except Exception:  # being replaced right now; os.replace makes this rare
                epoch = 0
            if epoch >= kill_after:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed_at = epoch
                break
        time.sleep(0.01)
    assert killed_at is not None, "the run finished or never checkpointed before the kill"
    assert not (tmp_path / "kill" / "drw" / "seed_0" / "result.json").exists()
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode() if ref.stderr else ""
    resumed = _run_cli(
        ["train", str(cfg), "--out", str(tmp_path / "kill"), "--resume", "--no-progress"]
    )
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    a = json.loads((tmp_path / "ref" / "drw" / "seed_0" / "result.json").read_text())
    b = json.loads((tmp_path / "kill" / "drw" / "seed_0" / "result.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert a["details"] == b["details"]
    wa = torch.load(tmp_path / "ref" / "drw" / "seed_0" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "kill" / "drw" / "seed_0" / "model.pt", weights_only=True)
    assert _same_state(wa, wb)


# ---- per-step cost, exact non-finite step, corrupt checkpoints -----------------------------------


def test_no_host_sync_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Losses and logits are read on the host every SYNC_EVERY steps, not after every step."""
    from longtail.engine import epoch_stats
    from longtail.engine.tasks import Evaluation

    reads = {"n": 0}
    for name in ("__float__", "__int__", "__bool__", "item", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *a: Any, _real: Any = real, **k: Any) -> Any:
            reads["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    monkeypatch.setattr(Trainer, "evaluate", lambda self, model: Evaluation({}, {}))
    data = tiny_vectors()  # 45 samples, batch 1: 45 steps per epoch
    cfg = tiny_config(epochs=2, batch_size=1)
    result = Trainer(SingleLabelTask(METHODS["erm"], data, cfg), data, cfg, seed=0).fit()
    assert result is not None and len(result.history) == 2
    steps = 2 * 45
    flushes = 2 * math.ceil(45 / epoch_stats.SYNC_EVERY)
    # a few reads per flush, a constant few at set-up (the sampler's class counts); a per-step
    # float(loss) would be >= 90 reads
    assert reads["n"] <= 3 * flushes + 4 < steps


def test_running_statistics_do_not_depend_on_the_sync_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from longtail.engine import epoch_stats  # where the buffered statistics read SYNC_EVERY

    train = {"epochs": 2, "batch_size": 4}
    _, a = _fit("la-loss", None, train=train)
    monkeypatch.setattr(epoch_stats, "SYNC_EVERY", 1)
    _, b = _fit("la-loss", None, train=train)
    assert _strip_time(a.history) == _strip_time(b.history)
    assert _same_state(a.model_state, b.model_state)


def _nan_from_call(k: int) -> Any:
    calls = {"n": 0}

    def loss(z: torch.Tensor, y: torch.Tensor, ctx: LossContext) -> torch.Tensor:
        calls["n"] += 1
        out = torch.nn.functional.cross_entropy(z, y)
        return out * float("nan") if calls["n"] >= k else out

    return loss


def test_non_finite_loss_names_the_exact_step_inside_a_sync_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 45 samples, batch 1: 45 steps per epoch; the 51st loss (epoch 2, step 6) is NaN
    bad = Method("nan-late", "test", "none", _nan_from_call(51))
    monkeypatch.setitem(METHODS, bad.name, bad)
    data = tiny_vectors()
    cfg = tiny_config(epochs=3, batch_size=1)
    trainer = Trainer(SingleLabelTask(bad, data, cfg), data, cfg, seed=0, run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2/3, step 6/45") as info:
        trainer.fit()
    assert "last good checkpoint (end of epoch 1)" in str(info.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    from longtail.engine.checkpoint import CheckpointError

    _fit("erm", tmp_path, train={"epochs": 2})
    ckpt = tmp_path / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt is truncated or corrupt"):
        _fit("erm", tmp_path, train={"epochs": 2}, resume=True)


def test_checkpoint_without_required_keys_is_a_clear_error(tmp_path: Path) -> None:
    from longtail.engine.checkpoint import REQUIRED_KEYS, CheckpointError, save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(tmp_path / "checkpoint.pt", required=REQUIRED_KEYS)


def test_cli_resume_over_a_truncated_checkpoint_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from longtail.cli import main

    cfg = _digits_config(tmp_path / "c.yaml", 2)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0
    (ckpt,) = out.glob("stages/*/seed_0/checkpoint.pt")
    (out / "drw" / "seed_0" / "result.json").unlink()  # as if killed before the end
    (ckpt.parent / "stage.json").unlink()
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    # main returns instead of raising: the user sees one line, not a traceback
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and str(ckpt) in err and "delete it" in err


def test_cli_resume_over_a_corrupt_result_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from longtail.cli import main

    cfg = _digits_config(tmp_path / "c.yaml", 1)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0
    result = out / "drw" / "seed_0" / "result.json"
    result.write_text(result.read_text()[:50])
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "result.json is truncated or corrupt" in capsys.readouterr().err


# ---- synchronised batch norm ---------------------------------------------------------------------


def test_cpu_sync_batchnorm_equals_batchnorm_in_one_process(tmp_path: Path) -> None:
    """With a (1-process) group, the synchronised layer gives BatchNorm2d's outputs, grads, stats."""
    import torch.distributed as dist

    from longtail.engine.distributed import CPUSyncBatchNorm, convert_sync_batchnorm
    from longtail.engine.models import build_model

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        torch.manual_seed(0)
        ref = torch.nn.BatchNorm2d(3, momentum=0.2)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
        sync = convert_sync_batchnorm(torch.nn.Sequential(ref.__class__(3)), torch.device("cpu"))
        layer = sync[0]
        assert isinstance(layer, CPUSyncBatchNorm)
        layer.load_state_dict(ref.state_dict())
        layer.momentum = 0.2
        x = torch.randn(5, 3, 4, 4) * 3 + 1
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(5, 3, 4, 4)
        ya, yb = ref(xa), layer(xb)
        (ya * g).sum().backward()
        (yb * g).sum().backward()
        assert torch.allclose(ya, yb, atol=1e-5)
        assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
        assert torch.allclose(ref.weight.grad, layer.weight.grad, atol=1e-4)
        assert torch.allclose(ref.running_mean, layer.running_mean, atol=1e-6)
        assert torch.allclose(ref.running_var, layer.running_var, atol=1e-5)
        ref.eval()
        layer.eval()
        assert torch.allclose(ref(x), layer(x), atol=1e-5)
        # conversion keeps the parameter objects (an optimiser built before still applies)
        model = build_model("cnn", (1, 8, 8), 3, channels=(4, 8))
        params = list(model.parameters())
        keys = set(model.state_dict())
        converted = convert_sync_batchnorm(model, torch.device("cpu"))
        assert all(a is b for a, b in zip(params, converted.parameters(), strict=True))
        assert set(converted.state_dict()) == keys
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in converted.modules())
    finally:
        dist.destroy_process_group()


def _written_epochs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The epochs whose checkpoint the trainer snapshots (recorded, then written as usual)."""
    import longtail.engine.trainer as trainer_mod

    epochs: list[int] = []
    real = trainer_mod.snapshot_checkpoint

    def spy(*args: Any, **kwargs: Any) -> None:
        epochs.append(int(args[6]))  # (writer, run_dir, fingerprint, task, modules, optims, epoch,
        real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "snapshot_checkpoint", spy)
    return epochs


def test_checkpoints_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a checkpoint at most every CHECKPOINT_EVERY_SECONDS and after the last epoch (of
    the run, or of a session stopped early); $LONGTAIL_CHECKPOINT_SECONDS=0: after every epoch."""
    import longtail.engine.trainer as trainer_mod

    train = {"epochs": 5, "batch_size": 8}
    monkeypatch.delenv("LONGTAIL_CHECKPOINT_SECONDS")
    assert trainer_mod.checkpoint_interval() == trainer_mod.CHECKPOINT_EVERY_SECONDS == 2.0
    monkeypatch.setattr(trainer_mod, "_clock", lambda: 0.0)  # epochs take no time at all
    written = _written_epochs(monkeypatch)
    _fit("erm", tmp_path / "a", train=train)  # 5 epochs in far less than 2 s
    assert written == [5]
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["epoch"] == 5

    written.clear()
    _fit("erm", tmp_path / "b", train=train, stop_after_epoch=3)
    assert written == [3]  # the session's last epoch: --resume continues from it
    written.clear()
    _, resumed = _fit("erm", tmp_path / "b", train=train, resume=True)
    assert written == [5]
    _, straight = _fit("erm", None, train=train)
    assert _same_state(resumed.model_state, straight.model_state)

    # a clock that moves 1.5 s per epoch: a checkpoint every second epoch, and the last
    clock = iter(range(0, 1000, 1))
    monkeypatch.setattr(trainer_mod, "_clock", lambda: 1.5 * next(clock))
    written.clear()
    _fit("erm", tmp_path / "c", train=train)
    assert written == [2, 4, 5]

    monkeypatch.setenv("LONGTAIL_CHECKPOINT_SECONDS", "0")
    written.clear()
    _fit("erm", tmp_path / "d", train=train)
    assert written == [1, 2, 3, 4, 5]

    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("LONGTAIL_CHECKPOINT_SECONDS", bad)
        with pytest.raises(ValueError, match=rf"LONGTAIL_CHECKPOINT_SECONDS: .*'{bad}'"):
            _fit("erm", tmp_path / "e", train=train)


def test_non_finite_loss_names_the_checkpoint_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With checkpoints every 2 s the one on disk may be older than the last epoch: the message
    names its epoch (2: the session stopped there; epoch 3 of the resumed run wrote none)."""
    import longtail.engine.trainer as trainer_mod

    monkeypatch.delenv("LONGTAIL_CHECKPOINT_SECONDS")
    monkeypatch.setattr(trainer_mod, "_clock", lambda: 0.0)
    bad = Method("nan-at-epoch-3", "test", "none", _nan_at_epoch(3))
    monkeypatch.setitem(METHODS, bad.name, bad)
    data = tiny_vectors()
    cfg = tiny_config(epochs=5, batch_size=16)

    def trainer() -> Trainer:
        return Trainer(SingleLabelTask(bad, data, cfg), data, cfg, seed=0, run_dir=tmp_path)

    assert trainer().fit(stop_after_epoch=2) is None
    with pytest.raises(NonFiniteLossError, match=r"epoch 4/5") as info:
        trainer().fit(resume=True)
    assert "last good checkpoint (end of epoch 2)" in str(info.value)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_a_bad_checkpoint_interval_stops_the_command_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from longtail.cli import main

    monkeypatch.setenv("LONGTAIL_CHECKPOINT_SECONDS", "often")
    assert main(["bench", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: LONGTAIL_CHECKPOINT_SECONDS: expected a number >= 0, got 'often'"]
    assert not (tmp_path / "run").exists()  # nothing built or written
