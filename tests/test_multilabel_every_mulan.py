"""Every Mulan folder of the shared data runs through every Mulan config unchanged (issue 20),
with and without hidden labels: one method, one epoch, one seed each (real data: skipped without)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longtail.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["multilabel_scene.yaml", "multilabel_yeast.yaml"]


def _mulan_folders(data_dir: Path) -> list[Path]:
    root = data_dir / "multilabel"
    return sorted(p for p in root.iterdir() if p.is_dir() and list(p.glob("*.xml")))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("hide", [0.0, 0.5])
def test_every_mulan_folder_runs(data_dir: Path, tmp_path: Path, config: str, hide: float) -> None:
    folders = _mulan_folders(data_dir)
    assert {p.name for p in folders} >= {"scene", "yeast", "enron"}
    for folder in folders:
        out = tmp_path / f"{folder.name}-{hide}"
        args = ["bench", str(ROOT / "configs" / config), "--data-dir", str(folder)]
        args += ["--methods", "bce", "--seeds", "0", "--epochs", "1", "--jobs", "1"]
        args += ["--set", f"data.hide_fraction={hide}", "--out", str(out), "--no-progress"]
        assert main(args) == 0, folder
        results = json.loads((out / "results.json").read_text())
        value = results["methods"]["bce"]["metrics"]["mAP"]["mean"]
        assert value is not None and 0.0 < value <= 1.0, (folder, value)
