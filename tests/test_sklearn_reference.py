"""The scikit-learn reference row (``data.sklearn_reference``): a direct scikit-learn fit scored
with the same metric functions gives the row's numbers; refused for images; in results.json and the
report; resumed without refitting."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn.linear_model
import torch
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score

from longtail.cli import main
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.kinds import TASK_KINDS
from longtail.metrics import MeanAveragePrecision, MultilabelPRF, SingleLabelMetrics
from longtail.tracks.multi_label.sklearn import one_vs_rest_logits
from longtail.tracks.multi_label.task import tail_labels
from longtail.tracks.single_label.sklearn import sklearn_logits

TOL = 1e-9
#: The settings the row states: scikit-learn's defaults with max_iter raised.
DIRECT = {"C": 1.0, "solver": "lbfgs", "max_iter": 1000}


def _multilabel_csv(path: Path, n: int = 80) -> Path:
    rng = np.random.default_rng(0)
    y = (rng.random((n, 3)) < [0.5, 0.3, 0.2]).astype(int)
    y[:4] = 1  # every label has positives
    x = rng.normal(size=(n, 5)) + 1.2 * np.pad(y, ((0, 0), (0, 2)))
    x[:, 4] = rng.poisson(0.3, size=n)  # a sparse count feature
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "e", "sky", "sea", "sand"])
        for i in range(n):
            w.writerow([f"{v:.4f}" for v in x[i]] + [str(v) for v in y[i]])
    return path


def _single_label_csv(path: Path, n: int = 90) -> Path:
    rng = np.random.default_rng(1)
    labels = np.array(["x"] * 50 + ["y"] * 25 + ["z"] * 15)[:n]
    shift = np.array([{"x": 0.0, "y": 1.5, "z": 3.0}[v] for v in labels])
    x = rng.normal(size=(n, 3)) + np.stack([shift, -shift, 0.5 * shift], axis=1)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f1", "f2", "f3", "label"])
        for i in range(n):
            w.writerow([f"{v:.4f}" for v in x[i]] + [labels[i]])
    return path


def _config(tmp_path: Path, task: str, data: dict[str, Any], methods: list[str]) -> Path:
    raw: dict[str, Any] = {
        "name": "skl",
        "task": task,
        "methods": methods,
        "seeds": [0, 1],
        "data": {"imbalance_factor": None, "test_fraction": 0.25, **data},
        "model": {"arch": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.05, "num_threads": 1},
    }
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _bench(cfg: Path, out: Path, *args: str) -> int:
    return main(["bench", str(cfg), "--out", str(out), "--no-progress", "--jobs", "1", *args])


def _bundle(cfg_path: Path, data_path: Path) -> tuple[Any, Any]:
    """The run's config and data, built as the runner builds them (the same split), with the
    features as loaded: the reference row is fitted on unscaled features, as a user would."""
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["path"] = str(data_path)
    raw["data"]["feature_scaling"] = "none"
    cfg = config_from_dict(raw)
    return cfg, TASK_KINDS[cfg.task].build_data(cfg, "long-tailed", None)


def _row(out: Path) -> dict[str, Any]:
    results = json.loads((out / "results.json").read_text())
    entry: dict[str, Any] = results["methods"]["sklearn-logreg"]
    return {m: s["values"] for m, s in entry["metrics"].items()}


# ---- the numbers are those of a direct scikit-learn fit ----------------------------------------


def test_multilabel_row_equals_a_direct_fit(tmp_path: Path) -> None:
    data_path = _multilabel_csv(tmp_path / "ml.csv")
    labels = {"dataset": "table", "label_columns": ["sky", "sea", "sand"], "hide_fraction": 0.2}
    cfg = _config(tmp_path, "multi-label", labels, ["bce"])
    out = tmp_path / "run"
    assert (
        _bench(cfg, out, "--data-path", str(data_path), "--set", "data.sklearn_reference=true") == 0
    )
    _, bundle = _bundle(cfg, data_path)
    x = bundle.train_x.double().numpy()
    y = bundle.train_y.numpy()
    assert (y == -1).any()  # hidden entries: left out of their label's fit
    test_x, test_y = bundle.test_x.double().numpy(), bundle.test_y.numpy()
    scores = np.empty(test_y.shape)
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        clf = LogisticRegression(**DIRECT).fit(x[known], y[known, j])
        scores[:, j] = clf.decision_function(test_x)
    s, t = torch.from_numpy(scores).float(), torch.from_numpy(test_y).long()
    ap = MeanAveragePrecision(y.shape[1])
    ap.update(s, t)
    prf = MultilabelPRF(y.shape[1])
    prf.update(s, t)
    per_label = ap.per_label()
    f1 = prf.compute()
    tail = tail_labels(bundle.class_counts)
    row = _row(out)
    for seed in (0, 1):  # deterministic: both seeds hold the one fit
        assert row["mAP"][seed] == pytest.approx(float(per_label.nanmean()), abs=TOL)
        assert row["CF1"][seed] == pytest.approx(float(f1["CF1"]), abs=TOL)
        assert row["OF1"][seed] == pytest.approx(float(f1["OF1"]), abs=TOL)
        assert row["tail_mAP"][seed] == pytest.approx(float(per_label[tail].nanmean()), abs=TOL)
    # and an independent formula: scikit-learn's average precision of the same scores
    independent = np.mean(
        [average_precision_score(test_y[:, j], scores[:, j]) for j in range(y.shape[1])]
    )
    assert row["mAP"][0] == pytest.approx(independent, abs=1e-6)


def test_single_label_row_equals_a_direct_fit(tmp_path: Path) -> None:
    data_path = _single_label_csv(tmp_path / "t.csv")
    cfg = _config(tmp_path, "single-label", {"dataset": "table", "label_column": "label"}, ["erm"])
    out = tmp_path / "run"
    assert (
        _bench(cfg, out, "--data-path", str(data_path), "--set", "data.sklearn_reference=true") == 0
    )
    config, bundle = _bundle(cfg, data_path)
    x, y = bundle.train_x.double().numpy(), bundle.train_y.numpy()
    test_x, test_y = bundle.test_x.double().numpy(), bundle.test_y.numpy()
    clf = LogisticRegression(**DIRECT).fit(x, y)
    logits = torch.from_numpy(clf.decision_function(test_x)).float()
    metric = SingleLabelMetrics(
        3, bundle.group_counts, shot_mode=config.metrics.shot_mode, n_bins=config.metrics.n_bins
    )
    metric.update(logits, torch.from_numpy(test_y))
    expected = {k: float(v) for k, v in metric.compute().items()}
    row = _row(out)
    for name, value in expected.items():
        for seed in (0, 1):
            got = row[name][seed]
            assert (got is None and math.isnan(value)) or got == pytest.approx(value, abs=TOL)
    # independent: scikit-learn's own predictions and balanced accuracy
    assert row["balanced_accuracy"][0] == pytest.approx(
        balanced_accuracy_score(test_y, clf.predict(test_x)), abs=TOL
    )


def test_logits_are_the_estimators_probabilities() -> None:
    """Single-label logits: softmax = predict_proba, also for two classes and an unseen class."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    y = np.where(x[:, 0] > 0, 2, 0)  # classes 0 and 2 seen, class 1 never
    clf = LogisticRegression(**DIRECT).fit(x, y)
    probs = torch.softmax(sklearn_logits(clf, x, 3), dim=1).numpy()
    assert np.allclose(probs[:, [0, 2]], clf.predict_proba(x), atol=1e-12)
    assert probs[:, 1].max() < 1e-40


def test_a_label_without_positives_gets_its_smoothed_rate() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2))
    y = np.stack([(x[:, 0] > 0).astype(int), np.zeros(30, dtype=int)], axis=1)
    y[:5, 1] = -1  # hidden: 25 known negatives
    logits, info = one_vs_rest_logits(x, y, x[:7])
    assert info["constant_labels"] == [1] and info["converged"]
    assert torch.all(logits[:, 1] == math.log(0.5 / 25.5))
    direct = LogisticRegression(**DIRECT).fit(x, y[:, 0]).decision_function(x[:7])
    assert np.array_equal(logits[:, 0].numpy(), direct)


# ---- refused where it makes no sense -----------------------------------------------------------


def test_refused_for_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"data\.sklearn_reference.*'digits' holds images"):
        config_from_dict({"data": {"dataset": "digits", "sklearn_reference": True}})
    cfg = tmp_path / "digits.yaml"
    cfg.write_text(yaml.safe_dump({"name": "d", "data": {"dataset": "digits"}}))
    out = tmp_path / "x"
    assert _bench(cfg, out, "--set", "data.sklearn_reference=true") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.sklearn_reference" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_refused_for_a_task_without_one() -> None:
    assert TASK_KINDS["single-label"].sklearn_reference is not None
    assert TASK_KINDS["multi-label"].sklearn_reference is not None
    without = [k for k in TASK_KINDS.values() if k.sklearn_reference is None]
    assert {k.name for k in without} >= {"open-set", "distillation", "metric-learning"}
    raw = {
        "task": "metric-learning",
        "data": {"dataset": "digits", "sklearn_reference": True},
        "train": {"batch_size": 20},
    }
    with pytest.raises(ConfigError, match=r"data\.sklearn_reference.*no scikit-learn reference"):
        config_from_dict(raw)


# ---- in the files, resumed ----------------------------------------------------------------------


def test_in_results_and_report_and_resumed_without_refit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_path = _single_label_csv(tmp_path / "t.csv")
    cfg = _config(tmp_path, "single-label", {"dataset": "table", "label_column": "label"}, ["erm"])
    out = tmp_path / "run"
    args = ["--data-path", str(data_path)]
    # a run without the row, then resumed with it: only the row is added (the methods are reused)
    assert _bench(cfg, out, *args) == 0
    erm_file = out / "erm" / "seed_0" / "result.json"
    erm_before = erm_file.read_bytes()
    assert _bench(cfg, out, *args, "--resume", "--set", "data.sklearn_reference=true") == 0
    assert erm_file.read_bytes() == erm_before
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["erm", "sklearn-logreg"]
    info = results["sklearn_reference"]
    assert info["method"] == "sklearn-logreg" and info["seeds"] == [0, 1]
    assert {k: info["settings"][k] for k in DIRECT} == DIRECT
    assert info["feature_scaling"] == "none"  # fitted on the features as loaded
    entry = results["methods"]["sklearn-logreg"]
    assert entry["seeds"] == [0, 1] and "composition" not in entry
    values = entry["metrics"]["balanced_accuracy"]["values"]
    assert (
        len(values) == 2
        and values[0] == values[1]
        and entry["metrics"]["balanced_accuracy"]["std"] == pytest.approx(0.0)
    )
    copy = json.loads((out / "sklearn-logreg" / "seed_1" / "result.json").read_text())
    assert copy["copied_from_seed"] == 0 and copy["seed"] == 1
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| sklearn-logreg"))
    assert "(reference) †" in row and "**" not in row  # never bold
    assert "† `sklearn-logreg`: a reference" in report and "C=1.0" in report
    assert "sklearn-logreg" not in " ".join(p.name for p in (out / "plots").glob("*.png"))
    html = (out / "report.html").read_text()
    assert '<tr class="reference"><td>sklearn-logreg (reference) †</td>' in html

    # resumed once more: the row is read back, never refitted
    def no_fit(*a: Any, **k: Any) -> Any:
        raise AssertionError("refitted on --resume")

    monkeypatch.setattr(sklearn.linear_model.LogisticRegression, "fit", no_fit)
    stamp = (out / "sklearn-logreg" / "seed_0" / "result.json").read_bytes()
    assert _bench(cfg, out, *args, "--resume", "--set", "data.sklearn_reference=true") == 0
    assert (out / "sklearn-logreg" / "seed_0" / "result.json").read_bytes() == stamp
    assert json.loads((out / "results.json").read_text())["methods"] == results["methods"]
