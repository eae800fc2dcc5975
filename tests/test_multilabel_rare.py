"""Rare labels in multi-label data (issue 20): a label without a training positive is kept and trains
as all-negative under every method, ``data.min_label_positives`` drops labels, the per-label metrics
average over the labels with an evaluated positive, and per-label thresholds are chosen on
validation only."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

import longtail.tracks.multi_label.task as task_module
from longtail.cli import main
from longtail.data import RepeatFactorSampler
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.datasets import DataWarning
from longtail.engine.methods import resolve_methods
from longtail.engine.trainer import Trainer
from longtail.losses import ClassBalancedLoss, class_balanced_weights
from longtail.metrics import (
    MultilabelPRF,
    f1_thresholds,
    mean_average_precision,
    multilabel_prf,
    scored_labels,
)
from longtail.tracks.multi_label import MULTILABEL_METHODS
from longtail.tracks.multi_label.task import MultiLabelTask, build_multilabel_data, tuned_prf
from test_engine_fixtures import LABELS, write_mulan

SAND, TREE = LABELS.index("sand"), LABELS.index("tree")


def _zero_label(path: Path, column: int) -> None:
    """Set label ``column`` (of the 4 trailing label fields) to 0 in every row of an ARFF file."""
    lines = path.read_text().splitlines()
    start = lines.index("@data") + 1
    for i in range(start, len(lines)):
        fields = lines[i].split(",")
        fields[len(fields) - len(LABELS) + column] = "0"
        lines[i] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def rare_mulan(tmp_path: Path) -> Path:
    """The toy Mulan set with ``sand`` without a training positive (it has test positives) and
    ``tree`` without a test positive (it has training positives)."""
    folder = write_mulan(tmp_path / "toy", n_train=120, n_test=60)
    _zero_label(folder / "toy-train.arff", SAND)
    _zero_label(folder / "toy-test.arff", TREE)
    return folder


def ml_config(data_dir: Path, **data: Any) -> dict[str, Any]:
    return {
        "name": "rare",
        "task": "multi-label",
        "methods": "all",
        "seeds": [0],
        "data": {"dataset": "mulan", "data_dir": str(data_dir), "imbalance_factor": None, **data},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "num_threads": 1},
    }


def _build(folder: Path, **data: Any) -> Any:
    cfg = config_from_dict(ml_config(folder, **data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return cfg, build_multilabel_data(cfg.data)


# ------------------------------------------------------------------ class-balanced weights, RFS


@pytest.mark.parametrize("beta", [0.9, 0.999, 0.9999])
def test_class_balanced_weight_of_a_zero_count_is_that_of_one(beta: float) -> None:
    counts = [300, 0, 12, 1, 0]
    w = class_balanced_weights(counts, beta=beta)
    # independent reference: E_n = (1 - beta^max(n, 1)) / (1 - beta), w ∝ 1 / E_n, sum C
    e = np.array([(1 - beta ** max(n, 1)) / (1 - beta) for n in counts])
    ref = (1 / e) * len(counts) / (1 / e).sum()
    assert torch.isfinite(w).all()
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)
    assert w[1] == w[3] == w[4] == w.max()
    assert math.isclose(float(w.sum()), len(counts), rel_tol=1e-6)
    assert class_balanced_weights([0, 0, 0], beta=beta).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="class_counts"):
        class_balanced_weights([3, -1], beta=beta)
    # the single-label loss still needs an example of every class
    with pytest.raises(ValueError, match="class_counts"):
        ClassBalancedLoss(class_counts=[3, 0], beta=beta)


def test_repeat_factors_with_a_zero_count_label_are_finite() -> None:
    y = torch.tensor([[1, 0, 0], [1, 0, 1], [0, 0, -1], [1, 0, 0]])
    s = RepeatFactorSampler(y, threshold=0.5)
    assert torch.isfinite(s.repeat_factors).all() and bool((s.repeat_factors >= 1).all())
    assert math.isnan(float(s.label_factors[1]))  # no positive: no factor, ignored
    assert s.repeat_factors[1] == pytest.approx(math.sqrt(0.5 / 0.25))  # from label 2
    assert len(s.global_indices()) == len(s)


def test_criterion_takes_zero_counts_only_when_allowed() -> None:
    bce = MULTILABEL_METHODS["cb-bce"]
    with pytest.raises(ValueError, match="class_counts must be positive"):
        bce.build_criterion([5, 0, 2], total_epochs=1)
    crit = bce.build_criterion([5, 0, 2], total_epochs=1, allow_zero_counts=True)
    z = torch.zeros(4, 3, requires_grad=True)
    loss = crit(z, torch.tensor([[1.0, 0.0, 0.0]] * 4), 0)
    assert torch.isfinite(loss)
    for bad in ([0, 0, 0], [5, -1, 2]):
        with pytest.raises(ValueError, match="non-negative with one positive"):
            bce.build_criterion(bad, total_epochs=1, allow_zero_counts=True)


# ------------------------------------------------------------------ every method trains


RECIPES = {
    "cb-focal-rfs": {"loss": "cb-focal", "sampler": "rfs"},
    "asl-rfs": {"loss": "asl", "sampler": "rfs"},
}


@pytest.mark.parametrize("hide", [0.0, 0.4])
@pytest.mark.parametrize("name", [*MULTILABEL_METHODS, *RECIPES])
def test_every_method_trains_a_label_without_positive_as_negative(
    name: str, hide: float, tmp_path: Path
) -> None:
    cfg, data = _build(rare_mulan(tmp_path), hide_fraction=hide)
    assert data.class_counts[SAND] == 0 and data.class_names == LABELS
    method = resolve_methods(RECIPES, "multi-label")[name]
    task = MultiLabelTask(method, data, cfg)
    result = Trainer(task, data, cfg, seed=0).fit()
    assert result is not None
    assert all(math.isfinite(row["train_loss"]) for row in result.history), name
    for key in ("mAP", "CF1", "OF1", "tail_mAP"):
        assert 0.0 <= result.metrics[key] <= 1.0, (name, key)
    ap = result.details["per_label_ap"]
    # sand has test positives: scored; tree has none: no AP, not scored
    assert ap[SAND] is not None and ap[TREE] is None
    assert result.details["scored_labels"] == [0, 1, 2]
    assert result.metrics["mAP"] == pytest.approx(np.mean([ap[0], ap[1], ap[2]]), abs=1e-12)
    # trained as all-negative: its probabilities fall below 0.5 (about 0.5 at initialisation; ASL
    # pushes negatives the least, gamma- 4)
    model = task.build_model()
    model.load_state_dict(result.model_state)
    model.eval()
    with torch.no_grad():
        p_sand = torch.sigmoid(model(data.train_x)[:, SAND])
    limit = 0.5 if "asl" in name else 0.45
    assert float(p_sand.mean()) < limit, (name, float(p_sand.mean()))


def test_unseen_label_probabilities_fall_under_every_loss(tmp_path: Path) -> None:
    """One step of each loss on the label without a positive lowers its logits (all negatives)."""
    cfg, data = _build(rare_mulan(tmp_path))
    for name, method in resolve_methods(RECIPES, "multi-label").items():
        crit = MultiLabelTask(method, data, cfg).criterion
        z = torch.zeros(len(data.train_y), len(LABELS), requires_grad=True)
        loss = crit(z, data.train_y, 0)
        assert torch.isfinite(loss), name
        loss.backward()
        assert z.grad is not None
        assert bool((z.grad[:, SAND] > 0).all()), name  # gradient descent lowers the logit


# ------------------------------------------------------------------ warning, dropping, records


def test_build_warns_naming_the_labels_without_positive(tmp_path: Path) -> None:
    folder = rare_mulan(tmp_path)
    cfg = config_from_dict(ml_config(folder))
    with pytest.warns(DataWarning, match="'sand'") as caught:
        data = build_multilabel_data(cfg.data)
    assert len(caught) == 1 and "all-negative" in str(caught[0].message)
    assert data.notes == [str(caught[0].message)]
    assert data.details["unseen_labels"] == [{"index": SAND, "name": "sand"}]
    assert data.details["dropped_labels"] == []
    assert data.details["scored_labels"] == [0, 1, 2]  # tree: no test positive
    assert data.details["scored_label_names"] == ["sky", "sea", "sand"]
    # hiding can leave a label without a visible positive: named with the fraction
    with pytest.warns(DataWarning, match="after hiding 0.95"):
        build_multilabel_data(config_from_dict(ml_config(folder, hide_fraction=0.95)).data)


@pytest.mark.parametrize("k", [1, 2, 12, 20])
def test_min_label_positives_drops_the_labels_with_fewer(k: int, tmp_path: Path) -> None:
    folder = rare_mulan(tmp_path)
    _, full = _build(folder, hide_fraction=0.3, validation_fraction=0.25)
    _, data = _build(folder, hide_fraction=0.3, validation_fraction=0.25, min_label_positives=k)
    # counted on the rows trained on: after the validation split and hiding
    counts = full.class_counts
    kept = [j for j, c in enumerate(counts) if c >= k]
    assert data.class_names == [LABELS[j] for j in kept]
    assert data.class_counts == [counts[j] for j in kept]
    assert torch.equal(data.train_y, full.train_y[:, kept])
    assert torch.equal(data.test_y, full.test_y[:, kept])
    assert data.details["min_label_positives"] == k
    assert data.details["dropped_labels"] == [
        {"column": j, "name": LABELS[j], "positives": c} for j, c in enumerate(counts) if c < k
    ]
    assert data.details["num_labels"] == len(kept)


def test_min_label_positives_errors(tmp_path: Path) -> None:
    folder = rare_mulan(tmp_path)
    cfg = config_from_dict(ml_config(folder, min_label_positives=10_000))
    with pytest.raises(ValueError, match=r"data\.min_label_positives"):
        build_multilabel_data(cfg.data)
    with pytest.raises(ConfigError, match=r"data\.min_label_positives"):
        config_from_dict({"task": "single-label", "data": {"min_label_positives": 1}})
    with pytest.raises(ConfigError, match=r"data\.min_label_positives"):
        config_from_dict(ml_config(folder, min_label_positives=-1))


def _bench(tmp_path: Path, raw: dict[str, Any], *extra: str) -> tuple[int, Path]:
    path = tmp_path / "rare.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    return main(["bench", str(path), "--out", str(out), "--no-progress", *extra]), out


def test_bench_keeps_the_label_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = ml_config(rare_mulan(tmp_path))
    raw["methods"] = ["bce", "cb-bce"]
    code, out = _bench(tmp_path, raw)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "'sand'" in notes[0] and "all-negative" in notes[0]
    assert "DataWarning" not in captured.err  # one note, not a Python warning as well
    results = json.loads((out / "results.json").read_text())
    details = results["data_details"]
    assert details["unseen_labels"] == [{"index": SAND, "name": "sand"}]
    assert details["scored_labels"] == [0, 1, 2]
    assert results["class_counts"][SAND] == 0
    for entry in results["methods"].values():
        assert all(
            v is not None for m in ("mAP", "CF1", "OF1") for v in entry["metrics"][m]["values"]
        )
    report = (out / "report.md").read_text()
    assert "mAP over 3 of 4 labels with a test positive" in report
    assert "(`sand`) trains as all-negative" in report


def test_bench_lists_the_dropped_labels(tmp_path: Path) -> None:
    raw = ml_config(rare_mulan(tmp_path), min_label_positives=1)
    raw["methods"] = ["bce"]
    code, out = _bench(tmp_path, raw)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["sky", "sea", "tree"]
    assert results["data_details"]["dropped_labels"] == [
        {"column": SAND, "name": "sand", "positives": 0}
    ]
    assert results["data_details"]["unseen_labels"] == []
    report = (out / "report.md").read_text()
    assert "Dropped by `data.min_label_positives: 1`" in report and "`sand` (0)" in report
    assert "mAP over 2 of 3 labels with a test positive" in report


# ------------------------------------------------------------------ metrics over scored labels


def _scores(seed: int, n: int = 50, labels: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, labels, generator=g, dtype=torch.float64)
    targets = (torch.rand(n, labels, generator=g) < 0.3).long()
    targets[:, 1] = 0  # no positive
    targets[:, 4] = torch.where(targets[:, 4] == 1, -1, targets[:, 4])  # only unknown positives
    targets[torch.rand(n, labels, generator=g) < 0.1] = -1
    return scores, targets


@pytest.mark.parametrize("seed", range(3))
def test_scored_map_equals_sklearn_over_labels_with_a_positive(seed: int) -> None:
    scores, targets = _scores(seed)
    scored = scored_labels(targets).tolist()
    assert 1 not in scored and 4 not in scored
    ref = []
    for j in range(scores.shape[1]):
        known = targets[:, j] >= 0
        y = targets[known, j].numpy()
        if y.sum() > 0:
            ref.append(average_precision_score(y, scores[known, j].numpy()))
    assert len(ref) == len(scored)
    assert mean_average_precision(scores, targets) == pytest.approx(float(np.mean(ref)), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_macro_prf_over_labels_with_a_positive_against_sklearn(seed: int) -> None:
    scores, targets = _scores(seed)
    got = multilabel_prf(scores, targets, macro_over="positive")
    every = multilabel_prf(scores, targets)
    scored = scored_labels(targets).tolist()
    pred = (torch.sigmoid(scores) >= 0.5).long()
    cp, cr = [], []
    for j in scored:
        known = targets[:, j] >= 0
        y, p = targets[known, j].numpy(), pred[known, j].numpy()
        cp.append(precision_score(y, p, zero_division=0))
        cr.append(recall_score(y, p, zero_division=0))
    assert got["CP"] == pytest.approx(float(np.mean(cp)))
    assert got["CR"] == pytest.approx(float(np.mean(cr)))
    cf1 = 2 * got["CP"] * got["CR"] / (got["CP"] + got["CR"])
    assert got["CF1"] == pytest.approx(cf1)
    assert got["CR"] > every["CR"]  # labels without a positive count 0 recall under "all"
    for key in ("OP", "OR", "OF1"):  # the overall (micro) values sum over every label
        assert got[key] == every[key]
    metric = MultilabelPRF(scores.shape[1], macro_over="positive")
    metric.update(scores[:20], targets[:20])
    metric.update(scores[20:], targets[20:])
    assert metric.compute() == pytest.approx(got)
    with pytest.raises(ValueError, match="macro_over"):
        multilabel_prf(scores, targets, macro_over="some")  # type: ignore[arg-type]
    nothing = multilabel_prf(scores[:, [1]], targets[:, [1]], macro_over="positive")
    assert math.isnan(nothing["CF1"])


# ------------------------------------------------------------------ thresholds on validation


def _brute_force_f1(prob: np.ndarray, y: np.ndarray) -> float:
    """The best F1 of a label over every threshold ``p >= v`` (v a value of p)."""
    return max(f1_score(y, (prob >= v).astype(int), zero_division=0) for v in np.unique(prob))


@pytest.mark.parametrize("seed", range(4))
def test_f1_thresholds_reach_the_best_f1_of_each_label(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, labels = 40, 5
    prob = torch.rand(n, labels, generator=g, dtype=torch.float64)
    prob[:, 2] = torch.round(prob[:, 2] * 4) / 4  # ties
    targets = (torch.rand(n, labels, generator=g) < prob * 0.8).long()
    targets[torch.rand(n, labels, generator=g) < 0.1] = -1
    targets[:, 4] = 0
    targets[:3, 4] = 1  # 3 positives: below min_positives=4
    thr = f1_thresholds(prob, targets, from_logits=False, min_positives=4, default=0.5)
    assert thr[4] == 0.5
    for j in range(4):
        known = targets[:, j] >= 0
        y, p = targets[known, j].numpy(), prob[known, j].numpy()
        got = f1_score(y, (p >= float(thr[j])).astype(int), zero_division=0)
        assert got == pytest.approx(_brute_force_f1(p, y)), j
    # logits: the same thresholds, as probabilities
    logits = torch.logit(prob.clamp(1e-6, 1 - 1e-6))
    again = f1_thresholds(logits, targets, min_positives=4)
    torch.testing.assert_close(again, thr, atol=1e-6, rtol=0)


def test_tuned_thresholds_fix_a_threshold_at_half_that_is_wrong() -> None:
    """Scores that rank perfectly but all sit below probability 0.5: at 0.5 nothing is predicted
    (CF1 0); thresholds chosen on the other half of the rows recover the ranking."""
    g = torch.Generator().manual_seed(0)
    n, labels = 200, 4
    targets = (torch.rand(n, labels, generator=g) < 0.2).long()
    targets[0, :] = 1
    logits = -4.0 + 2.0 * targets.double() + 0.3 * torch.randn(n, labels, generator=g)
    at_half = multilabel_prf(logits, targets, macro_over="positive")
    assert at_half["CF1"] == 0.0
    tuned, thresholds = tuned_prf(logits, targets, seed=5)
    assert tuned["CF1"] > 0.9 and tuned["OF1"] > 0.9
    assert bool((thresholds < 0.5).all())
    # the thresholds of the whole split are those of f1_thresholds
    torch.testing.assert_close(thresholds, f1_thresholds(logits, targets, min_positives=3))


def test_thresholds_are_chosen_on_validation_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validation run tunes thresholds on (halves of) the validation rows, never on the test
    rows; a run on the test set tunes nothing and reports no tuned columns."""
    calls: list[torch.Tensor] = []
    real = task_module.f1_thresholds

    def spy(scores: torch.Tensor, targets: torch.Tensor, **kw: Any) -> torch.Tensor:
        calls.append(targets.clone())
        return real(scores, targets, **kw)

    monkeypatch.setattr(task_module, "f1_thresholds", spy)
    folder = rare_mulan(tmp_path)
    cfg, data = _build(folder, validation_fraction=0.4)
    _, on_test = _build(folder)
    assert data.evaluated_on == "validation" and len(data.test_y) == 48
    task = MultiLabelTask(MULTILABEL_METHODS["cb-bce"], data, cfg)
    result = Trainer(task, data, cfg, seed=0).fit()
    assert result is not None
    # per evaluation (each epoch and the final one): each half, then the whole split
    assert len(calls) >= 3 and [len(t) for t in calls] == [24, 24, 48] * (len(calls) // 3)
    validation_rows = {tuple(r) for r in data.test_y.long().tolist()}
    for t in calls:
        assert {tuple(r) for r in t.tolist()} <= validation_rows
    assert torch.equal(calls[2], data.test_y.long())
    assert len(on_test.test_y) == 60 and not torch.equal(on_test.test_y, data.test_y)
    for key in ("CF1_tuned", "OF1_tuned"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert len(result.details["thresholds"]) == len(LABELS)
    calls.clear()
    cfg_test = config_from_dict(ml_config(folder))
    task = MultiLabelTask(MULTILABEL_METHODS["cb-bce"], on_test, cfg_test)
    res = Trainer(task, on_test, cfg_test, seed=0).fit()
    assert res is not None
    assert calls == [] and "CF1_tuned" not in res.metrics and "thresholds" not in res.details


def test_report_shows_tuned_columns_of_a_validation_run(tmp_path: Path) -> None:
    raw = ml_config(rare_mulan(tmp_path), validation_fraction=0.4)
    raw["methods"] = ["bce", "cb-bce"]
    code, out = _bench(tmp_path, raw)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    for entry in results["methods"].values():
        assert entry["metrics"]["CF1_tuned"]["mean"] is not None
    report = (out / "report.md").read_text()
    assert "| CF1 tuned | OF1 tuned |" in report
    assert "labels with a validation positive" in report and "cross-fitted" in report
    assert "Metrics **are of a validation split, not the test set**" in report


def test_label_reduction_sum_is_the_mean_times_known_entries_per_row() -> None:
    """multi_label.label_reduction: sum = sum over a row's known labels, mean over rows."""
    import torch

    from longtail.engine.config import config_from_dict
    from longtail.engine.datasets import DataBundle
    from longtail.engine.tasks import Batch
    from longtail.tracks.multi_label import MULTILABEL_METHODS, MultiLabelTask

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, generator=g)
    y = (torch.rand(8, 4, generator=g) < 0.4).float()
    y[0, 1] = -1.0  # a hidden entry: not counted
    y[:, 0] = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0])
    counts = [int((y[:, j] == 1).sum()) for j in range(4)]
    data = DataBundle("toy", x, y, x, y, list("abcd"), counts, counts, None)

    def task(reduction: str | None) -> MultiLabelTask:
        raw: dict[str, object] = {
            "task": "multi-label",
            "data": {"dataset": "mulan", "data_dir": "x", "imbalance_factor": None},
            "train": {"epochs": 1},
        }
        if reduction is not None:
            raw["multi_label"] = {"label_reduction": reduction}
        return MultiLabelTask(MULTILABEL_METHODS["bce"], data, config_from_dict(raw))

    model = torch.nn.Linear(5, 4)
    batch = Batch(x, y, torch.arange(8))
    logits = model(x)
    mask = y >= 0
    per_entry = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, y.clamp(min=0), reduction="none"
    )
    mean = per_entry[mask].mean()
    summed = per_entry[mask].sum() / 8
    assert torch.allclose(task(None).training_step(model, batch, 0, 0), mean, atol=1e-6)
    assert torch.allclose(task("mean").training_step(model, batch, 0, 0), mean, atol=1e-6)
    assert torch.allclose(task("sum").training_step(model, batch, 0, 0), summed, atol=1e-6)


@pytest.mark.slow
def test_worker_processes_and_the_reference_row_print_no_python_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """--jobs 2 and the scikit-learn row (whose unscaled data are built again): one note, no warning."""
    raw = ml_config(rare_mulan(tmp_path))
    raw["methods"] = ["bce", "asl"]
    with warnings.catch_warnings(record=True) as caught:  # what would reach a terminal
        warnings.simplefilter("always")
        code, _ = _bench(tmp_path, raw, "--jobs", "2", "--set", "data.sklearn_reference=true")
    assert not [w for w in caught if issubclass(w.category, DataWarning)]
    captured = capfd.readouterr()
    assert code == 0, captured.err
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "'sand'" in notes[0]
    assert "DataWarning" not in captured.err and "warnings.warn" not in captured.err
