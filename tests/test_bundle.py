"""Model bundles (issue 21): ``longtail fit`` / ``predict`` / ``export`` and ``longtail.load``.

The central check: for every method of every task kind, the bundle written by ``fit_bundle`` and
read back by ``load_bundle`` (network rebuilt from JSON, weights from safetensors) predicts what
the engine evaluated: the same logits (to 1e-6) and classes as the run's own network and rule on
the validation split, and for single-label the confusion matrix recorded in ``result.json``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import longtail
from data_fixtures import write_tiny_idx
from longtail.engine.bundle import (
    BundleError,
    fit_bundle,
    fit_temperature,
    label_thresholds,
    load_bundle,
    reject_threshold,
)
from longtail.engine.bundle.fit import _train, _with_validation
from longtail.engine.config import load_config
from longtail.engine.datasets import build_data
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import resolve_methods
from longtail.engine.prediction import rule_logits
from longtail.engine.runner.stages import run_dir_for

ROOT = Path(__file__).resolve().parents[1]
TINY = {"train.epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 32}


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_idx(tmp_path_factory.mktemp("idx"), per_class=12, test_per_class=4)


def _configs(idx: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """A small config per task kind: (config, overrides)."""
    d = str(idx)
    small_cnn = {"model.arch": "cnn", "model.channels": [4, 8]}
    return {
        "single-label": ("digits_lt", dict(TINY)),
        "sla": (
            str(ROOT / "configs/sla_fashion_mnist.yaml"),
            {**TINY, **small_cnn, "data.data_dir": d, "data.max_per_class": 12},
        ),
        "multi-label": (
            str(ROOT / "configs/multilabel_fashion_tiles.yaml"),
            {
                **TINY,
                **small_cnn,
                "data.data_dir": d,
                "data.tiles_train": 120,
                "data.tiles_test": 20,
            },
        ),
        "open-set": (
            str(ROOT / "configs/openset_fashion_mnist.yaml"),
            {**TINY, **small_cnn, "data.data_dir": d, "data.max_per_class": 12},
        ),
        "distillation": (
            str(ROOT / "configs/distill_fashion_mnist_lt.yaml"),
            {**TINY, "data.data_dir": d, "data.imbalance_factor": 2},
        ),
        "metric-learning": (
            str(ROOT / "configs/metric_fashion_mnist.yaml"),
            # P x K batches: P = 5 classes
            {**TINY, "data.data_dir": d, "train.batch_size": 30, "data.max_per_class": 12},
        ),
    }


def _cases() -> list[Any]:
    cases = []
    for kind in ("single-label", "multi-label", "open-set", "distillation", "metric-learning"):
        for name, method in TASK_KINDS[kind].methods.items():
            if kind == "single-label" and (
                getattr(method, "sla", None) is not None or getattr(method, "mix", None) == "cmo"
            ):
                continue  # they need images: below, on the image config
            cases.append(pytest.param(kind, name, id=f"{kind}:{name}"))
    for name in ("sla", "sla-da", "sla-mt", "sla-si", "sla-sd"):
        cases.append(pytest.param("sla", name, id=f"sla:{name}"))
    for name in ("cmo-drw", "bs-cmo"):
        cases.append(pytest.param("sla", name, id=f"images:{name}"))
    return cases


@pytest.mark.parametrize(("kind", "method"), _cases())
def test_bundle_predicts_what_the_engine_evaluated(
    kind: str, method: str, idx_dir: Path, tmp_path: Path
) -> None:
    config, overrides = _configs(idx_dir)[kind]
    cfg = load_config(config, overrides)
    table = resolve_methods(cfg.recipes, cfg.task)
    if method not in table:
        pytest.skip(f"{method} is not a method of {config}")
    info = fit_bundle(cfg, method, tmp_path / "bundle", run_dir=tmp_path / "runs")
    predictor = load_bundle(tmp_path / "bundle")
    # the engine's side: the run's trained network and the task's rule, read from the run folder
    cfg_val = _with_validation(cfg, info["validation_fraction"])
    data, network, rule = _train(cfg_val, method, 0, tmp_path / "runs" / "validation")
    x = data.test_x
    with torch.no_grad():
        engine = rule_logits(rule, network, x)
        bundle = predictor.logits(x)
    torch.testing.assert_close(bundle, engine, rtol=0, atol=1e-6)
    if predictor.output == "embedding":
        return
    # x are network inputs (preprocessed): the tensor API, not predict_proba's raw inputs
    probs = predictor(x).detach()
    t = predictor.rule.temperature
    expected = (
        torch.sigmoid(engine / t) if predictor.output == "labels" else torch.softmax(engine / t, 1)
    )
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)
    if predictor.output == "class":
        pred = predictor.decide(bundle)
        assert torch.equal(pred, engine.argmax(1))
        record = json.loads(
            (run_dir_for(tmp_path / "runs" / "validation", method, 0) / "result.json").read_text()
        )
        cm = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
        cm.index_put_((data.test_y, pred), torch.ones_like(pred), accumulate=True)
        assert cm.tolist() == record["details"]["confusion"]


@pytest.mark.slow
def test_image_preprocessing_of_raw_files_matches_the_engine(idx_dir: Path, tmp_path: Path) -> None:
    """Raw uint8 test images through the bundle's preprocessing equal the engine's test tensors,
    and `longtail predict` on the IDX file and on PNG files of the same images agree."""
    from longtail.data import load_idx

    cfg = load_config(
        str(ROOT / "configs/fashion_mnist_lt.yaml"),
        {**TINY, "data.data_dir": str(idx_dir), "data.imbalance_factor": 2},
    )
    fit_bundle(cfg, "la-posthoc", tmp_path / "b", run_dir=tmp_path / "r")
    p = longtail.load(tmp_path / "b")
    data = build_data(_with_validation(cfg, None).data)
    raw = load_idx(idx_dir, split="test").data  # uint8 (N, 28, 28)
    assert torch.equal(p.as_inputs(raw.unsqueeze(1)), data.test_x)
    from PIL import Image

    folder = tmp_path / "png"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(raw[i].numpy()).convert("RGB").save(folder / f"{i:02d}.png")
    out = tmp_path / "p.csv"
    res = _cli("predict", str(tmp_path / "b"), str(folder), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "converted to 1 channel" in res.stderr  # an RGB file: converted as in training, noted
    rows = out.read_text().splitlines()
    assert rows[0].startswith("input,prediction,class_name,probability,top1_class_name")
    expected = p.predict(raw[:6].unsqueeze(1))
    assert [int(r.split(",")[1]) for r in rows[1:]] == expected.tolist()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "longtail", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    cfg = load_config("digits_lt", TINY)
    fit_bundle(cfg, "ldam-drw", root / "bundle", run_dir=root / "runs")
    return root / "bundle"


@pytest.mark.slow
def test_bundle_loads_in_a_fresh_folder_without_run_or_data(
    digits_bundle: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "elsewhere" / "model"
    shutil.copytree(digits_bundle, fresh)
    assert sorted(p.name for p in fresh.iterdir()) == ["bundle.json", "model.safetensors"]
    x = np.random.default_rng(0).uniform(0, 16, size=(5, 64))
    np.save(tmp_path / "x.npy", x)
    code = (
        "import numpy as np, longtail; p = longtail.load('model'); "
        "x = np.load('../x.npy'); print(p.predict(x).tolist(), p.predict_proba(x).sum(1).round(6).tolist())"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "LONGTAIL_DATA_DIR": str(tmp_path / "none"),
    }
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=fresh.parent, env=env
    )
    assert res.returncode == 0, res.stderr
    p = load_bundle(digits_bundle)
    assert res.stdout.strip() == f"{p.predict(x).tolist()} {[1.0] * 5}"


def test_predictor_is_a_module_with_sklearn_habits(digits_bundle: Path) -> None:
    p = longtail.load(digits_bundle)
    assert isinstance(p, torch.nn.Module)
    x = torch.rand(7, 64) * 16
    probs = p(p.as_inputs(x))
    assert probs.shape == (7, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(7))
    assert np.array_equal(p.predict(x), probs.argmax(1).numpy())
    assert p.predict(x.numpy()).shape == (7,)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(x.numpy())
    assert np.array_equal(p.predict(frame), p.predict(x))
    with pytest.raises(ValueError, match=r"expected \(N, 64\)"):
        p.predict(torch.rand(3, 5))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "exported-program"])
def test_export_agrees_with_the_predictor(digits_bundle: Path, tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model.{fmt}"
    res = _cli("export", str(digits_bundle), "--format", fmt, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.is_file() and "same class for 100%" in res.stdout
    again = _cli("export", str(digits_bundle), "--format", fmt, "--out", str(out))
    assert again.returncode == 2 and "not overwritten" in again.stderr


@pytest.mark.slow
def test_cli_errors_are_one_line(digits_bundle: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(digits_bundle, old)
    rec = json.loads((old / "bundle.json").read_text())
    rec["format"] = 99
    (old / "bundle.json").write_text(json.dumps(rec))
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(f"c{i}" for i in range(64)) + "\n")
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes\n")
    cases = [
        (("predict", str(old), str(csv), "--out", str(tmp_path / "p.csv")), "format 99"),
        (
            ("predict", str(digits_bundle), str(csv), "--out", str(tmp_path / "p.csv")),
            "64 unnamed features",
        ),
        (("predict", str(digits_bundle), str(empty), "--out", str(tmp_path / "p.csv")), "no input"),
        (("predict", str(digits_bundle), str(empty), "--out", str(mine)), "not a predictions file"),
        (
            ("predict", str(tmp_path / "nope"), str(csv), "--out", str(tmp_path / "p.csv")),
            "not a folder",
        ),
        (
            ("fit", "--method", "nope", "--out", str(tmp_path / "b")),
            "unknown method 'nope'",
        ),
    ]
    for args, message in cases:
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert mine.read_text() == "my notes\n"
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_table_by_feature_name_in_any_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.5 * x[:, 2] > 0).astype(int)
    rows = ["f0,f1,f2,label"] + [f"{a},{b},{c},{k}" for (a, b, c), k in zip(x, y, strict=True)]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(rows) + "\n")
    cfg = load_config(
        str(ROOT / "configs/table.yaml"),
        {
            **TINY,
            "data.path": str(table),
            "data.label_column": "label",
            "data.imbalance_factor": None,
        },
    )
    fit_bundle(cfg, "erm", tmp_path / "b", run_dir=tmp_path / "r")
    p = load_bundle(tmp_path / "b")
    assert p.preprocessing is not None and p.preprocessing.feature_names == ("f0", "f1", "f2")
    shuffled = tmp_path / "in.csv"
    shuffled.write_text(
        "id,f2,extra,f0,f1\n"
        + "".join(f"r{i},{c},9,{a},{b}\n" for i, (a, b, c) in enumerate(x[:10]))
    )
    res = _cli("predict", str(tmp_path / "b"), str(shuffled), "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 0, res.stderr
    got = [int(r.split(",")[1]) for r in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert got == p.predict(x[:10]).tolist()
    missing = tmp_path / "m.csv"
    missing.write_text("f0,f2\n1,2\n")
    res = _cli("predict", str(tmp_path / "b"), str(missing), "--out", str(tmp_path / "q.csv"))
    assert res.returncode == 2 and "missing feature column(s) f1" in res.stderr


def test_fit_temperature_recovers_a_known_temperature() -> None:
    torch.manual_seed(0)
    z = torch.randn(4000, 5) * 3
    y = torch.distributions.Categorical(logits=z / 2.5).sample()
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.08)
    assert fit_temperature(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) == 1.0


def test_reject_threshold_keeps_the_asked_share() -> None:
    s = torch.linspace(0, 1, 1000)
    t = reject_threshold(s, 0.95)
    assert float((s >= t).double().mean()) == pytest.approx(0.95, abs=0.002)
    with pytest.raises(ValueError, match="keep"):
        reject_threshold(s, 0.0)


def test_label_thresholds_floor_and_global() -> None:
    z = torch.tensor([[2.0, -1.0], [1.5, -2.0], [1.0, 0.5], [-2.0, 0.2]])
    y = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]])
    per = label_thresholds(z, y, min_positives=2)
    assert per[1] == 0.5 and per[0] != 0.5  # label 1 has a single positive: the floor keeps 0.5
    glob = label_thresholds(z, y, mode="global")
    assert len(set(glob.tolist())) == 1


def test_bundle_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path / "x")


@pytest.mark.slow
def test_report_names_the_best_method_on_validation(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _cli(
        "bench",
        "--methods",
        "erm,la-posthoc",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--jobs",
        "1",
        "--set",
        "data.validation_fraction=0.2",
        "--out",
        str(out),
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    means = {m: r["metrics"]["balanced_accuracy"]["mean"] for m, r in results["methods"].items()}
    best = max(means, key=lambda m: means[m])
    md = (out / "report.md").read_text()
    assert f"Best on validation by Balanced acc.: **{best}**" in md
    assert f"longtail fit {out / 'config.yaml'} --method {best} --out model" in md
    assert f"--method {best} --out model" in (out / "report.html").read_text()


def test_mulan_bundle_on_raw_test_features(tmp_path: Path) -> None:
    """Real data (yeast): the raw ARFF test features through the bundle equal the engine's
    standardised test tensors, and `longtail predict` on them as a CSV writes the labels above
    the bundle's thresholds."""
    from conftest import shared_data_dir

    yeast = shared_data_dir() / "multilabel" / "yeast"
    if not yeast.is_dir():
        pytest.skip(f"real data not found at {yeast}")
    from longtail.data import load_mulan

    cfg = load_config(
        str(ROOT / "configs/multilabel_yeast.yaml"), {**TINY, "data.data_dir": str(yeast)}
    )
    info = fit_bundle(cfg, "bce", tmp_path / "b", run_dir=tmp_path / "r")
    assert {"CF1_at_0_5", "CF1_tuned", "OF1_at_0_5", "OF1_tuned"} <= set(info)
    p = load_bundle(tmp_path / "b")
    assert p.rule.thresholds is not None and len(p.rule.thresholds) == len(p.classes_)
    from longtail.engine.kinds import TASK_KINDS as KINDS

    full = KINDS["multi-label"].build_data(_with_validation(cfg, None), "long-tailed", 0)
    _, raw_test = load_mulan(yeast)
    assert torch.equal(p.as_inputs(raw_test.data), full.test_x)
    x = raw_test.data[:20].numpy()
    table = tmp_path / "x.csv"
    header = ",".join(f"c{j}" for j in range(x.shape[1]))
    table.write_text(
        header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n"
    )
    res = _cli("predict", str(tmp_path / "b"), str(table), "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 0, res.stderr
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert rows[0][:2] == ["input", "labels"] and len(rows) == 21
    decided = p.predict(x)
    for row, d in zip(rows[1:], decided.tolist(), strict=True):
        shown = row[1].split(";") if row[1] else []
        assert shown == [n for n, on in zip(p.classes_, d, strict=True) if on]


@pytest.mark.slow
def test_true_classes_in_the_input_are_scored_or_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    y = (x[:, 0] > 0).astype(int)
    table = tmp_path / "t.csv"
    table.write_text(
        "a,b,label\n" + "".join(f"{u},{v},{k}\n" for (u, v), k in zip(x, y, strict=True))
    )
    cfg = load_config(
        str(ROOT / "configs/table.yaml"),
        {
            **TINY,
            "data.path": str(table),
            "data.label_column": "label",
            "data.imbalance_factor": None,
        },
    )
    fit_bundle(cfg, "erm", tmp_path / "b", run_dir=tmp_path / "r")
    res = _cli(
        "predict",
        str(tmp_path / "b"),
        str(table),
        "--label-column",
        "label",
        "--out",
        str(tmp_path / "p.csv"),
    )
    assert res.returncode == 0, res.stderr
    assert "against the true classes: accuracy" in res.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].endswith(",true_class") and rows[1].endswith(f",{y[0]}")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n0.1,0.2,0\n0.3,0.1,7\n")
    res = _cli(
        "predict",
        str(tmp_path / "b"),
        str(bad),
        "--label-column",
        "label",
        "--out",
        str(tmp_path / "q.csv"),
    )
    assert res.returncode == 2 and "the true class '7' is not a class of the bundle" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "q.csv").exists()


@pytest.mark.parametrize("method", ["la-posthoc", "tau-norm", "lws", "ldam-drw", "smote"])
def test_refit_bundle_predicts_the_test_confusion_the_engine_recorded(
    method: str, tmp_path: Path
) -> None:
    """With --refit the bundle's network is the one the engine trained on all the training data
    and evaluated on the test split: the bundle's classes on the test split give the confusion
    matrix of that run's result.json, class for class."""
    cfg = load_config("digits_lt", dict(TINY))
    fit_bundle(cfg, method, tmp_path / "b", run_dir=tmp_path / "r", refit=True)
    p = load_bundle(tmp_path / "b")
    data = TASK_KINDS["single-label"].build_data(_with_validation(cfg, None), "long-tailed", 0)
    pred = p.decide(p.logits(data.test_x))
    cm = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    cm.index_put_((data.test_y, pred), torch.ones_like(pred), accumulate=True)
    record = json.loads(
        (run_dir_for(tmp_path / "r" / "all", method, 0) / "result.json").read_text()
    )
    assert cm.tolist() == record["details"]["confusion"]
    assert p.meta["calibration"]["refit"] is True
