"""The multi-label track: data, every registry method, hidden labels, reports and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from longtail.cli import main
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import resolve_methods
from longtail.engine.trainer import Trainer
from longtail.tracks.multi_label import MULTILABEL_METHODS
from longtail.tracks.multi_label.task import (
    MultiLabelTask,
    build_multilabel_data,
    hide_labels,
    tail_labels,
)
from test_engine_fixtures import LABELS, write_mulan


def ml_config(data_dir: Path, **data: Any) -> dict[str, Any]:
    return {
        "name": "ml",
        "task": "multi-label",
        "methods": "all",
        "seeds": [0],
        "data": {"dataset": "mulan", "data_dir": str(data_dir), "imbalance_factor": None, **data},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "num_threads": 1},
    }


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "ml.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ------------------------------------------------------------------ registry and contract


def test_registry_has_the_issue_methods() -> None:
    assert set(MULTILABEL_METHODS) == {"bce", "focal", "asl", "cb-bce", "cb-focal", "hill", "rfs"}
    assert TASK_KINDS["multi-label"].methods is MULTILABEL_METHODS
    for m in MULTILABEL_METHODS.values():
        assert m.task == "multi-label" and m.description and m.paper
    assert MULTILABEL_METHODS["asl"].defaults == {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}
    assert MULTILABEL_METHODS["hill"].defaults == {"lamb": 1.5, "margin": 1.0, "gamma": 2.0}
    assert MULTILABEL_METHODS["rfs"].sampler == "rfs"
    assert MULTILABEL_METHODS["rfs"].loss_name == "bce"


@pytest.mark.parametrize("name", list(MULTILABEL_METHODS))
def test_contract_every_multilabel_method_trains(name: str, tmp_path: Path) -> None:
    """Every registered multi-label method trains on tiny data with hidden labels: finite loss and
    metrics in [0, 1]."""
    folder = write_mulan(tmp_path / "toy")
    cfg = config_from_dict(ml_config(folder, hide_fraction=0.3))
    data = build_multilabel_data(cfg.data)
    result = Trainer(MultiLabelTask(MULTILABEL_METHODS[name], data, cfg), data, cfg, seed=0).fit()
    assert result is not None
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    for key in ("mAP", "CF1", "OF1", "tail_mAP"):
        assert 0.0 <= result.metrics[key] <= 1.0, key
    assert len(result.details["per_label_ap"]) == 4


def test_the_losses_ignore_hidden_entries(tmp_path: Path) -> None:
    """A hidden entry's logit gets no gradient, whatever the method."""
    folder = write_mulan(tmp_path / "toy")
    cfg = config_from_dict(ml_config(folder))
    data = build_multilabel_data(cfg.data)
    for name, method in MULTILABEL_METHODS.items():
        crit = MultiLabelTask(method, data, cfg).criterion
        z = torch.randn(6, 4, requires_grad=True)
        y = torch.tensor([[1.0, 0.0, -1.0, 1.0]] * 6)
        crit(z, y, 0).backward()
        assert z.grad is not None
        assert torch.all(z.grad[:, 2] == 0), name
        assert torch.all(z.grad[:, [0, 1, 3]] != 0), name


# ------------------------------------------------------------------ data


def test_mulan_data_standardised_with_training_statistics(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    data = build_multilabel_data(config_from_dict(ml_config(folder)).data)
    assert data.train_x.shape == (80, 5) and data.test_x.shape == (40, 5)
    assert data.train_y.shape == (80, 4) and data.test_y.shape == (40, 4)
    assert data.class_names == LABELS
    assert torch.allclose(data.train_x.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(data.train_x.std(0), torch.ones(5), atol=1e-4)
    assert not torch.allclose(data.test_x.mean(0), torch.zeros(5), atol=1e-3)
    assert data.class_counts == [int(c) for c in (data.train_y == 1).sum(0)]
    assert data.name == "toy"


def test_hide_labels_hides_the_fraction_and_only_training_entries(tmp_path: Path) -> None:
    y = (torch.rand(400, 10, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    hidden = hide_labels(y, 0.5, seed=7)
    frac = float((hidden == -1).float().mean())
    assert abs(frac - 0.5) < 0.03
    keep = hidden != -1
    assert torch.equal(hidden[keep], y[keep])
    assert torch.equal(hide_labels(y, 0.5, seed=7), hidden)
    assert not torch.equal(hide_labels(y, 0.5, seed=8), hidden)
    assert torch.equal(hide_labels(y, 0.0, seed=7), y)
    folder = write_mulan(tmp_path / "toy")
    full = build_multilabel_data(config_from_dict(ml_config(folder)).data)
    half = build_multilabel_data(config_from_dict(ml_config(folder, hide_fraction=0.5)).data)
    assert torch.equal(half.test_y, full.test_y)
    assert bool((half.train_y == -1).any())
    assert half.class_counts == [int(c) for c in (half.train_y == 1).sum(0)]
    assert all(h <= f for h, f in zip(half.class_counts, full.class_counts, strict=True))


def test_tail_labels_are_the_rarest_third() -> None:
    assert tail_labels([50, 3, 20, 3, 8, 100]) == [1, 3]
    assert tail_labels([5, 1, 9, 4]) == [1, 3]


# ------------------------------------------------------------------ the command


def test_bench_writes_multilabel_results_and_report(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    raw = ml_config(folder)
    raw["seeds"] = [0, 1]
    raw["methods"] = ["bce", "asl", "rfs"]
    cfg = write_config(tmp_path, raw)
    out = tmp_path / "run"
    assert main(["bench", str(cfg), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "multi-label"
    assert results["dataset"] == "toy"
    assert list(results["methods"]) == ["bce", "asl", "rfs"]
    names = [s["name"] for s in results["metric_specs"]]
    assert names == ["mAP", "CF1", "OF1", "tail_mAP", "CF1_tuned", "OF1_tuned"]
    # the tuned columns need a validation split: absent here, and left out of the table silently
    assert all(e["metrics"]["CF1_tuned"]["mean"] is None for e in results["methods"].values())
    for entry in results["methods"].values():
        for key in ("mAP", "CF1", "OF1"):
            st = entry["metrics"][key]
            assert len(st["values"]) == 2 and st["mean"] is not None and st["std"] is not None
    assert results["class_names"] == LABELS
    report = (out / "report.md").read_text()
    assert "mAP" in report and "CF1" in report and str(folder) in report
    assert "CF1 tuned" not in report and "undefined for every method" not in report
    assert (out / "plots" / "per_label_ap.png").is_file()
    assert (out / "plots" / "training_curves.png").is_file()
    assert not (out / "plots" / "confusion.png").exists()


def test_set_override_and_resume_with_hidden_labels(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    raw = ml_config(folder)
    raw["methods"] = ["hill"]
    cfg = write_config(tmp_path, raw)
    out = tmp_path / "run"
    args = ["bench", str(cfg), "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "data.hide_fraction=0.5"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["hide_fraction"] == 0.5
    first = json.loads((out / "hill" / "seed_0" / "result.json").read_text())
    assert main([*args, "--set", "data.hide_fraction=0.5", "--resume"]) == 0
    again = json.loads((out / "hill" / "seed_0" / "result.json").read_text())
    assert again == first
    # a different hidden fraction is a different configuration
    assert main([*args, "--set", "data.hide_fraction=0.25", "--resume"]) == 2


def test_methods_lists_the_multilabel_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--task", "multi-label"]) == 0
    out = capsys.readouterr().out
    for name in MULTILABEL_METHODS:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "sampler {instance, rfs}" in out


def _run_error(tmp_path: Path, raw: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    cfg = write_config(tmp_path, raw)
    code = main(["bench", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_label_value_outside_01_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mulan(tmp_path / "toy", label_override={1: "2"})
    err = _run_error(tmp_path, ml_config(folder), capsys)
    assert "toy-train.arff" in err


def test_test_file_with_other_attributes_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mulan(tmp_path / "toy", test_features=4)
    err = _run_error(tmp_path, ml_config(folder), capsys)
    assert "toy-test.arff" in err


def test_xml_label_missing_from_arff_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mulan(tmp_path / "toy")
    xml = (folder / "toy.xml").read_text().replace('"tree"', '"grass"')
    (folder / "toy.xml").write_text(xml)
    err = _run_error(tmp_path, ml_config(folder), capsys)
    assert "grass" in err


def test_bad_override_and_bad_task_data_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mulan(tmp_path / "toy")
    raw = ml_config(folder)
    raw["data"]["dataset"] = "digits"
    err = _run_error(tmp_path, raw, capsys)
    assert "data.dataset" in err
    raw = ml_config(folder)
    raw["task"] = "single-label"
    err = _run_error(tmp_path, raw, capsys)
    assert "task" in err
    raw = ml_config(folder)
    raw["methods"] = ["la-loss"]
    err = _run_error(tmp_path, raw, capsys)
    assert "methods[0]" in err
    raw = ml_config(folder)
    raw["data"]["hide_fraction"] = 1.0
    err = _run_error(tmp_path, raw, capsys)
    assert "data.hide_fraction" in err


def test_set_without_equals_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mulan(tmp_path / "toy")
    cfg = write_config(tmp_path, ml_config(folder))
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(cfg), "--set", "nonsense"])
    assert exc.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    code = main(["bench", str(cfg), "--set", "data.no_such_key=1", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "data.no_such_key" in capsys.readouterr().err


def test_multilabel_recipes_compose_a_loss_and_a_sampler() -> None:
    table = resolve_methods({"asl-rfs": {"loss": "asl", "sampler": "rfs"}}, "multi-label")
    assert table["asl-rfs"].sampler == "rfs" and table["asl-rfs"].loss_name == "asl"
    assert "rfs_threshold" in table["asl-rfs"].params
    with pytest.raises(ValueError, match=r"recipes\.x\.drw"):
        resolve_methods({"x": {"loss": "bce", "drw": True}}, "multi-label")
    with pytest.raises(ValueError, match=r"recipes\.x\.sampler"):
        resolve_methods({"x": {"loss": "bce", "sampler": "sqrt"}}, "multi-label")
    with pytest.raises(ValueError, match=r"recipes\.x\.loss"):
        resolve_methods({"x": {"loss": "la"}}, "multi-label")
    with pytest.raises(ConfigError, match="balanced_reference"):
        config_from_dict(
            {
                "task": "multi-label",
                "data": {
                    "dataset": "mulan",
                    "data_dir": "x",
                    "imbalance_factor": None,
                    "balanced_reference": True,
                },
            }
        )


def test_rfs_repeats_examples_with_rare_labels(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy", n_train=200)
    cfg = config_from_dict(ml_config(folder))
    data = build_multilabel_data(cfg.data)
    task = MultiLabelTask(MULTILABEL_METHODS["rfs"], data, cfg)
    drawn = torch.cat([task.sampler(e, seed=0, rank=0, world_size=1) for e in range(50)])
    rare = data.train_y[:, 3] == 1
    freq = torch.bincount(drawn, minlength=len(rare)).double() / 50
    assert float(freq[rare].mean()) > 1.2 * float(freq[~rare].mean())
    plain = MultiLabelTask(MULTILABEL_METHODS["bce"], data, cfg)
    order = plain.sampler(0, seed=0, rank=0, world_size=1)
    assert sorted(order.tolist()) == list(range(len(rare)))


def test_task_rejects_targets_outside_0_1_minus1(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    cfg = config_from_dict(ml_config(folder))
    data = build_multilabel_data(cfg.data)
    data.train_y[3, 2] = 0.5
    with pytest.raises(ValueError, match=r"train_y: .*0\.5 at row 3, label column 2"):
        MultiLabelTask(MULTILABEL_METHODS["bce"], data, cfg)
    data.train_y[3, 2] = 1.0
    data.test_y[0, 0] = 2.0
    with pytest.raises(ValueError, match=r"test_y: .*2\.0 at row 0"):
        MultiLabelTask(MULTILABEL_METHODS["asl"], data, cfg)
    data.test_y = data.test_y[:, :3]
    with pytest.raises(ValueError, match=r"test_y: expected an \(N, 4\)"):
        MultiLabelTask(MULTILABEL_METHODS["asl"], data, cfg)


def test_hidden_as_negative_turns_hidden_positives_into_false_negatives(tmp_path: Path) -> None:
    folder = write_mulan(tmp_path / "toy")
    full = build_multilabel_data(config_from_dict(ml_config(folder)).data)
    unknown = build_multilabel_data(config_from_dict(ml_config(folder, hide_fraction=0.5)).data)
    negative = build_multilabel_data(
        config_from_dict(ml_config(folder, hide_fraction=0.5, hidden_as="negative")).data
    )
    hidden = unknown.train_y == -1
    assert torch.equal(negative.train_y[~hidden], full.train_y[~hidden])
    assert bool((negative.train_y[hidden] == 0).all())
    assert bool(((full.train_y == 1) & hidden).any())  # some positives became negatives
    assert negative.class_counts == unknown.class_counts
    with pytest.raises(ConfigError, match=r"data\.hidden_as"):
        config_from_dict(ml_config(folder, hidden_as="negative"))  # nothing hidden


@pytest.mark.parametrize("name", ["rfs", "bce"])
def test_sampler_draws_anew_every_epoch(tmp_path: Path, name: str) -> None:
    """Each epoch is the library sampler's draw at that epoch: repeat-factor sampling rounds the
    fractional repeat factors anew (another multiset of examples), the plain shuffle reorders."""
    from longtail.data import InstanceBalancedSampler, RepeatFactorSampler

    folder = write_mulan(tmp_path / "toy", n_train=200)
    cfg = config_from_dict(ml_config(folder))
    data = build_multilabel_data(cfg.data)
    task = MultiLabelTask(MULTILABEL_METHODS[name], data, cfg)
    if name == "rfs":
        ref: Any = RepeatFactorSampler(data.train_y, threshold=1.0 / data.num_classes, seed=3)
    else:
        ref = InstanceBalancedSampler(torch.zeros(len(data.train_y), dtype=torch.long), seed=3)
    draws = []
    for epoch in range(3):
        ref.set_epoch(epoch)
        drawn = task.sampler(epoch, seed=3, rank=0, world_size=1)
        assert torch.equal(drawn, ref.global_indices()), epoch
        draws.append(drawn)
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    if name == "rfs":  # not only another order: other examples repeated
        assert sorted(draws[0].tolist()) != sorted(draws[1].tolist())
