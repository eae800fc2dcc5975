"""Every task track under ``torchrun`` (two CPU processes, gloo): open set (with ARPL+CS's three
optimisers), SLA, M2m, distillation and metric learning train, evaluate every test example once,
and learn on data a one-process run learns.

The single-label engine's exact two-process = one-process equivalence is in
``test_engine_distributed.py`` (an MLP without batch norm). These tracks use the CNN (batch norm
statistics are per process) and some draw random numbers per process (GAN noise, M2m's slots), so
their runs are compared by what must hold anyway: the evaluation counts and learning well above
chance. All the tracks run in one torchrun launch (``dist_helpers.TorchrunMany``), each compared in
its own test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from data_fixtures import REPO_ROOT, write_idx_folder
from dist_helpers import TorchrunMany, once_per_run

_TRAIN = {
    "epochs": 6,
    "batch_size": 16,
    "lr": 0.1,
    "warmup_epochs": 0,
    "eval_every": 3,
    "num_threads": 1,
    "augment": False,
}
_SMALL_CNN = {"arch": "cnn", "channels": [4, 8]}


def _write_brightness_idx(folder: Path) -> Path:
    """10 classes of 28x28 noise whose brightness is the class (a global-pooling CNN learns it)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        labels = np.repeat(np.arange(10), n).astype(np.uint8)
        images = rng.integers(0, 40, size=(10 * n, 28, 28)) + 20 * labels[:, None, None]
        write_idx_folder(folder, images.clip(0, 255).astype(np.uint8), labels, split=split)
    return folder


def _config(track: str, data_dir: Path) -> dict[str, Any]:
    data = {"dataset": "mnist", "data_dir": str(data_dir), "subset_seed": 0}
    if track == "open-set":
        raw = yaml.safe_load((REPO_ROOT / "configs" / "openset_fashion_mnist.yaml").read_text())
        raw.update(methods=["rpl", "arpl-cs"], seeds=[0], model=_SMALL_CNN, train=_TRAIN)
        raw["data"] = {**data, "imbalance_factor": 1}
        return raw
    if track == "distillation":
        raw = yaml.safe_load((REPO_ROOT / "configs" / "distill_fashion_mnist_lt.yaml").read_text())
        raw["distill"]["teacher"]["model"]["channels"] = [8, 16]
        raw.update(methods=["teacher", "kd", "rkd-da"], seeds=[0], model=_SMALL_CNN, train=_TRAIN)
        raw["data"] = {**data, "imbalance_factor": 4}
        return raw
    if track == "metric-learning":
        raw = yaml.safe_load((REPO_ROOT / "configs" / "metric_fashion_mnist.yaml").read_text())
        raw["metric_learning"]["teacher"]["model"]["channels"] = [8, 16]
        train = {**_TRAIN, "batch_size": raw["train"]["batch_size"]}
        raw.update(methods=["teacher", "rkd-da"], seeds=[0], model=_SMALL_CNN, train=train)
        raw["data"] = {**data, "imbalance_factor": 1}
        return raw
    m2m = {"m2m_start_fraction": 0.5, "m2m_gamma": 0.01, "m2m_beta": 0.5, "m2m_steps": 2}
    methods = {"sla": ["sla", "sla-mt", "sla-sd"], "m2m": ["m2m"]}[track]
    return {
        "name": track,
        "methods": methods,
        "seeds": [0],
        "recipes": {"sla-sd": {"loss": "ce", "sla": "joint", "params": {"inference": "sd"}}}
        if track == "sla"
        else {},
        "method_params": {"m2m": m2m} if track == "m2m" else {},
        "data": {**data, "imbalance_factor": 2},
        "model": _SMALL_CNN,
        "train": _TRAIN,
    }


def _counts(track: str, result: dict[str, Any]) -> tuple[int, ...]:
    """How many test examples the evaluation saw, from a method's ``result.json``."""
    details = result["details"]
    if track == "open-set":
        return (details["num_known"], details["num_unknown"])
    if track == "metric-learning":
        return (details["num_test"],)
    return (sum(map(sum, details["confusion"])),)


_MAIN = {
    "open-set": "closed_set_accuracy",
    "metric-learning": "recall_at_1",
    "sla": "balanced_accuracy",
    "m2m": "balanced_accuracy",
    "distillation": "balanced_accuracy",
}


TRACKS = ["open-set", "sla", "m2m", "distillation", "metric-learning"]


@pytest.fixture(scope="module")
def track_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, int]]:
    """Every track's bench under one torchrun launch (``root/TRACK/ddp``) and in this process
    (``root/TRACK/one``), once per pytest run (xdist workers share it)."""
    root, out = once_per_run(tmp_path_factory, "ddp_tracks", _launch_and_one_process)
    return root, subprocess.CompletedProcess([], out["returncode"], "", out["stderr"]), out["one"]


def _launch_and_one_process(root: Path) -> dict[str, Any]:
    from longtail.cli import main

    data_dir = _write_brightness_idx(root / "idx")
    runs, configs = [], {}
    for track in TRACKS:
        (root / track).mkdir()
        cfg = root / track / "c.yaml"
        cfg.write_text(yaml.safe_dump(_config(track, data_dir)))
        runs.append(["bench", str(cfg), "--out", str(root / track / "ddp")])
        configs[track] = cfg
    launch = TorchrunMany(runs, root / "launch")
    one = {
        track: main(
            ["bench", str(cfg), "--out", str(root / track / "one"), "--no-progress", "--jobs", "1"]
        )
        for track, cfg in configs.items()
    }
    proc = launch.wait()
    return {"returncode": proc.returncode, "stderr": proc.stderr, "one": one}


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("track", TRACKS)
def test_track_under_torchrun(
    track_runs: tuple[Path, subprocess.CompletedProcess[str], dict[str, int]], track: str
) -> None:
    root, proc, one = track_runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = root / track / "ddp"
    raw = yaml.safe_load((root / track / "c.yaml").read_text())
    run = json.loads((ddp / "run.json").read_text())
    assert run["world_size"] == 2
    assert one[track] == 0
    metric = _MAIN[track]
    for method in raw["methods"]:
        a = json.loads((ddp / method / "seed_0" / "result.json").read_text())
        b = json.loads((root / track / "one" / method / "seed_0" / "result.json").read_text())
        assert _counts(track, a) == _counts(track, b), method  # every test example, once
        chance = 0.1 if track != "open-set" else 1 / 6
        assert b["metrics"][metric] > chance + 0.15, (method, b["metrics"][metric])
        assert a["metrics"][metric] > chance + 0.15, (method, a["metrics"][metric])
