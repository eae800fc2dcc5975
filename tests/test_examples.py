"""The examples run, and what they print and log is right. In-process through runpy (no interpreter
and torch start-up per example)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import torch

from longtail.metrics import Metric, balanced_accuracy, shot_accuracy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_quickstart_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    found = re.findall(r"^\s*([\w-]+): balanced accuracy ([\d.]+)%$", out, flags=re.M)
    assert [name for name, _ in found] == ["cross-entropy", "logit-adjusted", "focal"]
    assert all(50 < float(value) <= 100 for _, value in found)  # 10 classes: chance is 10 %


@pytest.mark.slow
def test_lightning_style_runs_and_logs_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    ns = runpy.run_path(str(EXAMPLES / "lightning_style.py"))
    module, history = ns["main"]()
    out = capsys.readouterr().out
    assert re.search(r"^metric states on (\S+) \(the model's device: \1\)$", out, flags=re.M)
    assert len(re.findall(r"^epoch +\d+: loss", out, flags=re.M)) == 5  # epochs 1, 5, ..., 20

    # what on_validation_epoch_end logged after the last epoch is the metric of the final model
    last = history[-1]
    assert set(last) == {
        "train/loss",
        "val/balanced_accuracy",
        "val/many",
        "val/medium",
        "val/few",
        "val/ece",
        "val/tm_macro_accuracy",
    }
    _, val_set = ns["long_tailed_digits"]()
    x, y = val_set.tensors
    device = next(module.parameters()).device
    with torch.no_grad():
        logits = module(x.to(device)).cpu()
    assert last["val/balanced_accuracy"] == pytest.approx(balanced_accuracy(logits, y), abs=1e-12)
    shots = shot_accuracy(logits, y, module.class_counts.cpu(), mode="terciles")
    assert {k: last[f"val/{k}"] for k in shots} == pytest.approx(shots, abs=1e-12)
    # every class occurs in the balanced validation set: torchmetrics' macro accuracy is ours
    assert last["val/tm_macro_accuracy"] == pytest.approx(last["val/balanced_accuracy"], abs=1e-6)
    assert last["val/balanced_accuracy"] > 0.8

    # the metrics are sub-modules of the classifier: moving it moves every metric state
    ours = [m for m in module.modules() if isinstance(m, Metric)]
    assert len(ours) == 3
    module.to("meta")
    for m in ours:
        for value in m.metric_state.values():
            for t in value if isinstance(value, list) else [value]:
                assert t.device.type == "meta"
