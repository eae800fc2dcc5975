"""Two CPU processes under torchrun (gloo) give the same metrics as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from longtail.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("method", ["drw", "cb-resample"])
def test_two_processes_match_one(tmp_path: Path, method: str) -> None:
    cfg = tmp_path / "c.yaml"
    # MLP without batch norm, no augmentation: the union of the two per-process batches of a step
    # is the single-process batch, and DDP averages the two mean gradients, so training matches
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "ddp",
                "methods": [method],
                "seeds": [0],
                "data": {"dataset": "digits", "imbalance_factor": 10},
                "model": {"arch": "mlp", "hidden": [32]},
                "train": {
                    "epochs": 4,
                    "batch_size": 32,
                    "lr": 0.05,
                    "eval_every": 2,
                    "num_threads": 1,
                },
            }
        )
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "longtail",
            "train",
            str(cfg),
            "--out",
            str(tmp_path / "ddp"),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["train", str(cfg), "--out", str(tmp_path / "single"), "--no-progress"]) == 0
    a = json.loads((tmp_path / "ddp" / method / "seed_0" / "result.json").read_text())
    b = json.loads((tmp_path / "single" / method / "seed_0" / "result.json").read_text())
    run = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert run["world_size"] == 2
    for key, value in b["metrics"].items():
        assert a["metrics"][key] == pytest.approx(value, abs=0.02), key
    # the confusion matrix is summed over both shards of the test set: all test images counted
    assert sum(map(sum, a["details"]["confusion"])) == sum(map(sum, b["details"]["confusion"]))
    wa = torch.load(tmp_path / "ddp" / method / "seed_0" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "single" / method / "seed_0" / "model.pt", weights_only=True)
    for k in wb:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k
