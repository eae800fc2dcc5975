"""Validation scores between epochs (``train.eval_every``) do not change what is trained.

The run fingerprints leave ``train.eval_every`` out, so a run folder trained without evaluations
between epochs resumes under a config that has them (``configs/openset_fashion_mnist_full.yaml``
sets 2 for ``longtail tune``'s pruning). That holds only if an evaluation draws nothing from the
training's random streams and leaves the model as it found it (train mode, BatchNorm statistics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from data_fixtures import REPO_ROOT, write_tiny_idx
from longtail.cli import main

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, raw: dict[str, Any], every: int) -> dict[str, Any]:
    raw = {**raw, "train": {**raw["train"], "eval_every": every}}
    cfg = tmp_path / f"every{every}.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / f"every{every}"
    assert main(["bench", str(cfg), "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    return _trained(out, json.loads((out / "results.json").read_text()), evaluated=every > 0)


def _trained(out: Path, results: dict[str, Any], evaluated: bool) -> dict[str, Any]:
    """Per method: the final test metrics and every epoch's training loss (seed 0)."""
    found: dict[str, Any] = {}
    for name, m in results["methods"].items():
        history = json.loads((out / name / "seed_0" / "result.json").read_text())["history"]
        assert history and all(any(k.startswith("test_") for k in row) for row in history) is (
            evaluated
        )
        found[name] = (
            {k: v["mean"] for k, v in m["metrics"].items() if not k.endswith("_seconds")},
            [row["train_loss"] for row in history],
        )
    return found


def test_single_label_evaluations_between_epochs_change_nothing(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "name": "every",
        "methods": ["erm", "drw", "crt"],  # a deferred schedule and a second stage
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [32]},
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.05, "num_threads": 1},
    }
    assert _run(tmp_path, raw, 0) == _run(tmp_path, raw, 1)


def test_open_set_evaluations_between_epochs_change_nothing(tmp_path: Path) -> None:
    idx = write_tiny_idx(tmp_path / "idx", per_class=12, test_per_class=5)
    raw: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / "configs" / "openset_fashion_mnist.yaml").read_text()
    )
    raw["data"].update(data_dir=str(idx), max_per_class=8, dataset="mnist")
    raw["model"]["channels"] = [4, 8]  # a CNN with BatchNorm
    raw["train"].update(epochs=3, warmup_epochs=0, batch_size=16)
    raw.update(seeds=[0], methods=["softmax", "arpl", "gcpl"])
    assert _run(tmp_path, raw, 0) == _run(tmp_path, raw, 1)
