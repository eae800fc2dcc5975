"""The ``longtail`` command: bench / train / report / methods on tiny settings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtail.cli import main
from longtail.tracks.single_label import METHODS

REPO_ROOT = Path(__file__).resolve().parents[1]
METRICS = ("balanced_accuracy", "accuracy", "many", "medium", "few", "ece")


def _config(tmp_path: Path, **extra: Any) -> Path:
    raw: dict[str, Any] = {
        "name": "tiny_digits",
        "data": {"dataset": "digits", "imbalance_factor": 10, "balanced_reference": True},
        "model": {"arch": "mlp", "hidden": [32]},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "eval_every": 1, "num_threads": 1},
    }
    raw.update(extra)
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _check_schema(results: dict[str, Any], methods: list[str], seeds: list[int]) -> None:
    assert set(results) == {
        "dataset",
        "task",
        "imbalance_factor",
        "class_counts",
        "metric_specs",
        "methods",
        "stages_trained",
        "class_names",
        "num_train",
        "num_test",
        "data_source",
        "evaluated_on",
        "feature_scaling",
    }
    assert results["feature_scaling"] is None  # the digits are used as loaded
    assert results["data_source"] is None  # the bundled digits: no file read
    assert results["evaluated_on"] == "test"  # no data.validation_fraction
    specs = {s["name"]: s for s in results["metric_specs"]}
    assert specs["balanced_accuracy"]["higher_is_better"] and not specs["ece"]["higher_is_better"]
    assert results["dataset"] == "digits"
    assert results["task"] == "single-label"
    assert results["imbalance_factor"] == 10.0
    counts = results["class_counts"]
    assert all(isinstance(c, int) for c in counts) and len(counts) == 10
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.15)
    assert list(results["methods"]) == methods
    for entry in results["methods"].values():
        assert set(entry) == {"seeds", "train_seconds", "metrics", "composition", "params"}
        assert entry["seeds"] == seeds
        assert isinstance(entry["train_seconds"], float) and entry["train_seconds"] > 0
        assert set(entry["metrics"]) == set(METRICS)
        for stats in entry["metrics"].values():
            assert set(stats) == {"mean", "std", "values"}
            assert len(stats["values"]) == len(seeds)
            assert all(0.0 <= v <= 1.0 for v in stats["values"])
            assert stats["mean"] == pytest.approx(sum(stats["values"]) / len(seeds))
            if len(seeds) > 1:
                m = stats["mean"]
                var = sum((v - m) ** 2 for v in stats["values"]) / (len(seeds) - 1)
                assert stats["std"] == pytest.approx(math.sqrt(var), abs=1e-12)


@pytest.mark.slow
def test_bench_writes_the_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    out = tmp_path / "run"
    code = main(
        [
            "bench",
            str(cfg),
            "--methods",
            "erm,la-posthoc",
            "--reference",
            "--seeds",
            "0,1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "la-posthoc" in printed and "balanced (reference)" in printed
    results = json.loads((out / "results.json").read_text())
    _check_schema(results, ["erm", "la-posthoc", "balanced"], [0, 1])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["methods"] == ["erm", "la-posthoc"] and saved["seeds"] == [0, 1]
    report = (out / "report.md").read_text()
    assert "| Method |" in report and "Gap closed" in report
    assert "longtail bench" in report and "--methods erm,la-posthoc" in report
    assert "**" in report  # best values in bold
    for png in ("per_class_accuracy", "confusion", "reliability", "training_curves"):
        f = out / "plots" / f"{png}.png"
        assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{png}.png" in report
    assert "data:image/png;base64," in (out / "report.html").read_text()
    for m in ("erm", "la-posthoc", "balanced"):
        for s in (0, 1):
            d = out / m / f"seed_{s}"
            assert {"model.pt", "result.json"} <= {p.name for p in d.iterdir()}
            stage = json.loads((d / "result.json").read_text())["stage"]
            sd = out / "stages" / stage / f"seed_{s}"
            assert {"checkpoint.pt", "log.csv", "model.pt", "stage.json"} <= {
                p.name for p in sd.iterdir()
            }
            assert len((sd / "log.csv").read_text().splitlines()) == 3
    # erm and la-posthoc share one stage; the balanced reference has its own
    assert len(list((out / "stages").iterdir())) == 2
    # the balanced reference trains on the same number of images, spread evenly
    bal = json.loads((out / "balanced" / "seed_0" / "result.json").read_text())
    assert sum(bal["class_counts"]) // 10 * 10 == sum(bal["class_counts"])
    assert len(set(bal["class_counts"])) == 1
    assert abs(sum(bal["class_counts"]) - sum(results["class_counts"])) < 10

    # a second run into the same folder without --resume is refused
    assert main(["bench", str(cfg), "--methods", "erm", "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err

    # --resume skips finished pairs and runs only the new seed
    before = (out / "erm" / "seed_0" / "result.json").stat().st_mtime_ns
    code = main(
        [
            "bench",
            str(cfg),
            "--methods",
            "erm,la-posthoc",
            "--reference",
            "--seeds",
            "0,1,2",
            "--out",
            str(out),
            "--resume",
            "--no-progress",
        ]
    )
    assert code == 0
    assert (out / "erm" / "seed_0" / "result.json").stat().st_mtime_ns == before
    assert (out / "erm" / "seed_2" / "result.json").is_file()
    _check_schema(
        json.loads((out / "results.json").read_text()), ["erm", "la-posthoc", "balanced"], [0, 1, 2]
    )

    # report rebuilds from the files
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()


def test_resume_continues_an_interrupted_pair(tmp_path: Path) -> None:
    from longtail.engine.config import load_config
    from longtail.engine.datasets import build_data
    from longtail.engine.runner import stage_dir_for, stage_of
    from longtail.engine.trainer import Trainer
    from longtail.tracks.single_label import SingleLabelTask

    cfg_path = _config(tmp_path, data={"dataset": "digits", "imbalance_factor": 10})
    cfg = load_config(cfg_path, {"methods": ["erm"], "seeds": [0], "train.epochs": 3})
    out = tmp_path / "run"
    data = build_data(cfg.data)
    stage = stage_of(cfg, METHODS["erm"], METHODS["erm"].defaults, "long-tailed")
    partial = Trainer(
        SingleLabelTask(METHODS["erm"], data, cfg),
        data,
        cfg,
        seed=0,
        run_dir=stage_dir_for(out, stage, 0),
        fingerprint=stage.fingerprint(cfg, 0),
        label="erm",
    )
    assert partial.fit(stop_after_epoch=1) is None
    args = [
        "bench",
        str(cfg_path),
        "--methods",
        "erm",
        "--seeds",
        "0",
        "--epochs",
        "3",
        "--no-progress",
    ]
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    a = json.loads((out / "erm" / "seed_0" / "result.json").read_text())
    b = json.loads((tmp_path / "straight" / "erm" / "seed_0" / "result.json").read_text())
    assert a["metrics"] == b["metrics"]


def test_train_runs_one_method(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    out = tmp_path / "one"
    assert (
        main(
            [
                "train",
                str(cfg),
                "--method",
                "focal",
                "--seed",
                "4",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["focal"]
    assert results["methods"]["focal"]["seeds"] == [4]


def test_methods_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 * len(METHODS) + 2  # a description and a composition line each
    for i, (name, m) in enumerate(METHODS.items()):
        assert lines[2 * i].startswith(name) and m.citation in lines[2 * i]
        comp = m.composition()
        assert f"loss={comp['loss']}" in lines[2 * i + 1]
        assert f"sampler={comp['sampler']}" in lines[2 * i + 1]
        for key in ("mix", "second_stage", "posthoc"):
            if comp[key] is not None:
                assert f"{key}={comp[key]}" in lines[2 * i + 1]
    assert "recipes:" in lines[-1]


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, train={"epochs": 2, "lr": -1.0})
    assert main(["bench", str(cfg), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_method_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    assert main(["bench", str(cfg), "--methods", "erm,magic", "--out", str(tmp_path / "x")]) == 2
    assert "methods[1]" in capsys.readouterr().err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_report_without_results(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 2


def test_bad_seeds_argument() -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--seeds", "a,b"])


@pytest.mark.slow
def test_python_dash_m_entry_point() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-m", "longtail", "methods"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ldam-drw" in out.stdout


def test_resume_refuses_results_of_another_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, data={"dataset": "digits", "imbalance_factor": 10})
    out = tmp_path / "run"
    args = [
        "bench",
        str(cfg),
        "--methods",
        "erm",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    saved = (out / "config.yaml").read_text()
    assert main([*args, "--resume", "--epochs", "3"]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == saved  # the run folder is left as it was


def test_resume_without_out_picks_the_latest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, data={"dataset": "digits", "imbalance_factor": 10})
    monkeypatch.chdir(tmp_path)
    args = ["bench", str(cfg), "--methods", "erm", "--seeds", "0", "--no-progress"]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("tiny_digits-")
    before = (run / "erm" / "seed_0" / "result.json").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert (run / "erm" / "seed_0" / "result.json").stat().st_mtime_ns == before
