"""Runs that degenerate into another method (issue 23, point 3): ``result.json`` and ``results.json``
record it, the table footnotes it.

M2m that accepted no translation is ``drs`` (the bundled digits); a one-epoch run makes deferred
re-weighting / re-sampling start at once (``drw`` is ``cb-softmax``, ``drs`` is ``cb-resample``);
DRW that never starts and a second stage of 0 epochs cannot be configured (the engine clamps both),
so their tests force them into the engine's code paths with ``monkeypatch``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from longtail.engine import report as R
from longtail.engine.config import config_from_dict
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.runner import run_benchmark, train_method
from longtail.engine.runner.results import aggregate
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import SINGLE_LABEL_METRICS
from test_engine_fixtures import tiny_config, tiny_vectors


def _same_metrics(a: dict[str, Any], b: dict[str, Any]) -> None:
    for k, v in a["metrics"].items():
        assert v == pytest.approx(b["metrics"][k], abs=1e-6), k


def test_m2m_that_accepts_nothing_is_drs_in_result_json(tmp_path: Path) -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=5)  # M2m generates and DRS re-samples from epoch 5 (index 4)
    m2m = train_method(METHODS["m2m"], data, cfg, seed=0, out_dir=tmp_path)
    drs = train_method(METHODS["drs"], data, cfg, seed=0, out_dir=tmp_path, resume=True)
    info = m2m["details"]["m2m"]
    assert info["start_epoch"] == 4 and sorted(info["per_epoch"]) == ["4"]
    generated = sum(info["per_epoch"]["4"]["generated"])
    assert generated > 0 and sum(info["per_epoch"]["4"]["accepted"]) == 0
    assert m2m["degenerate"] == {
        "equals": "drs",
        "why": "M2m accepted none of the samples it translated (epoch 5 of 5)",
        "measured": {
            "m2m_start_epoch": 4,
            "generating_epochs": 1,
            "generated": generated,
            "accepted": 0,
        },
    }
    assert drs["degenerate"] is None
    _same_metrics(m2m, drs)  # it did train drs's function
    # accepting translations (nearly every one: gamma 0.01, beta 0.5) is no degeneration
    fast = {"m2m": {"m2m_gamma": 0.01, "m2m_beta": 0.5, "m2m_steps": 2}}
    cfg2 = dataclasses.replace(cfg, method_params=fast)
    live = train_method(METHODS["m2m"], data, cfg2, seed=0, out_dir=tmp_path / "live")
    assert sum(sum(r["accepted"]) for r in live["details"]["m2m"]["per_epoch"].values()) > 0
    assert live["degenerate"] is None


def test_m2m_ldam_drw_that_accepts_nothing_is_ldam_drw(tmp_path: Path) -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=5)
    rec = train_method(METHODS["m2m-ldam-drw"], data, cfg, seed=0, out_dir=tmp_path)
    assert sum(sum(r["accepted"]) for r in rec["details"]["m2m"]["per_epoch"].values()) == 0
    assert rec["degenerate"]["equals"] == "ldam-drw"  # no over-sampling: f's own method
    ldam = train_method(METHODS["ldam-drw"], data, cfg, seed=0, out_dir=tmp_path, resume=True)
    _same_metrics(rec, ldam)


@pytest.mark.parametrize(
    ("name", "equals", "why"),
    [
        ("drw", "cb-softmax", "deferred re-weighting starts at the first epoch (of 1)"),
        ("drs", "cb-resample", "deferred re-sampling starts at the first epoch (of 1)"),
        ("ldam-drw", None, "deferred re-weighting starts at the first epoch (of 1)"),
        ("m2m", "erm", "M2m never translated (its generation starts after epoch 1)"),
        ("erm", "-", ""),
        ("crt", "-", ""),
    ],
)
def test_one_epoch_runs_whose_deferred_schedule_does_not_defer(
    tmp_path: Path, name: str, equals: str | None, why: str
) -> None:
    data = tiny_vectors()
    cfg = tiny_config(epochs=1)
    rec = train_method(METHODS[name], data, cfg, seed=0, out_dir=tmp_path)
    if equals == "-":
        assert rec["degenerate"] is None
        return
    assert rec["degenerate"]["equals"] == equals and why in rec["degenerate"]["why"]
    if equals is not None:
        twin = train_method(METHODS[equals], data, cfg, seed=0, out_dir=tmp_path, resume=True)
        _same_metrics(rec, twin)


def test_drw_that_never_starts_is_the_method_without_drw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import longtail.engine.methods.method as method_module

    # the engine starts DRW by the last epoch; a start past it is what this test forces
    monkeypatch.setattr(method_module, "drw_start_epoch", lambda fraction, total: total)
    data = tiny_vectors()
    cfg = tiny_config(epochs=3)
    rec = train_method(METHODS["drw"], data, cfg, seed=0, out_dir=tmp_path)
    assert rec["details"]["schedule"] == {"epochs": 3, "drw_start_epoch": 3}
    assert rec["degenerate"]["equals"] == "erm"
    assert "would start at epoch 4 of 3: it never re-weights" in rec["degenerate"]["why"]
    erm = train_method(METHODS["erm"], data, cfg, seed=0, out_dir=tmp_path, resume=True)
    _same_metrics(rec, erm)


@pytest.mark.parametrize(
    ("name", "equals"), [("lws", "erm"), ("crt", None), ("weight-balancing", None)]
)
def test_a_second_stage_of_zero_epochs_is_its_first_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, equals: str | None
) -> None:
    import longtail.engine.runner.runs as runs_module

    kind = TASK_KINDS["single-label"]

    def zero(cfg: Any, method: Any, params: Any) -> Any:
        out = kind.finish_config(cfg, method, params)
        return dataclasses.replace(out, train=dataclasses.replace(out.train, epochs=0))

    # the engine trains a second stage for at least one epoch; 0 is what this test forces
    monkeypatch.setattr(
        runs_module, "TASK_KINDS", {"single-label": dataclasses.replace(kind, finish_config=zero)}
    )
    data = tiny_vectors()
    cfg = tiny_config(epochs=2)
    rec = train_method(METHODS[name], data, cfg, seed=0, out_dir=tmp_path)
    assert rec["epochs"] == 2 and rec["degenerate"]["equals"] == equals
    assert rec["degenerate"]["measured"] == {"second_stage_epochs": 0}
    assert "second stage trained 0 epochs" in rec["degenerate"]["why"]
    if equals is not None:
        erm = train_method(METHODS[equals], data, cfg, seed=0, out_dir=tmp_path, resume=True)
        _same_metrics(rec, erm)


def _run(seed: int, value: float, degenerate: dict[str, Any] | None) -> dict[str, Any]:
    metrics = {m.name: value for m in SINGLE_LABEL_METRICS}
    return {"seed": seed, "train_seconds": 1.0, "metrics": metrics, "degenerate": degenerate}


def test_results_json_groups_the_seeds_and_the_table_footnotes_them() -> None:
    why = "M2m accepted none of the samples it translated (epochs 25-30 of 30)"
    per_run = {
        "erm": [_run(0, 0.5, None), _run(1, 0.5, None)],
        "la-loss": [_run(0, 0.6, None), _run(1, 0.6, None)],
        "balanced-softmax": [_run(0, 0.6, None), _run(1, 0.6, None)],
        "m2m": [
            _run(0, 0.7, {"equals": "drs", "why": why, "measured": {"generated": 9}}),
            _run(1, 0.7, {"equals": "drs", "why": why, "measured": {"generated": 7}}),
        ],
        "crt": [
            _run(0, 0.4, None),
            _run(1, 0.4, {"equals": None, "why": "its second stage trained 0 epochs"}),
        ],
        "drs": [_run(0, 0.7, None), _run(1, 0.7, None)],
    }
    comps = {n: METHODS[n].composition() for n in per_run}
    res = aggregate(
        per_run,
        dataset="tiny",
        task="single-label",
        imbalance_factor=10.0,
        class_counts=[10, 1],
        metric_specs=SINGLE_LABEL_METRICS,
        compositions=comps,
    )
    for n in per_run:
        res["methods"][n]["params"] = METHODS[n].resolve_params(None)
    assert res["methods"]["m2m"]["degenerate"] == [{"equals": "drs", "why": why, "seeds": [0, 1]}]
    assert res["methods"]["crt"]["degenerate"] == [
        {"equals": None, "why": "its second stage trained 0 epochs", "seeds": [1]}
    ]
    assert "degenerate" not in res["methods"]["erm"]
    md = R.format_table(res)
    names = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    # la-loss = balanced-softmax keeps its mark; the degenerate methods get the next ones
    assert names[1:] == ["erm", "la-loss ¹", "balanced-softmax ¹", "m2m ²", "crt ³", "drs"]
    notes = {line[0]: line for line in md.splitlines() if line and line[0] in "¹²³"}
    assert notes["²"].startswith(f"² `m2m` is `drs` in every seed: {why}, so it trained what `drs`")
    assert notes["³"].startswith(
        "³ `crt` degenerated in seed 1 of 2: its second stage trained 0 epochs"
    )
    assert "m2m ²" in R.format_table(res, markdown=False)


def test_bench_on_the_digits_footnotes_m2m_as_drs(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "name": "digits_m2m",
            "methods": ["m2m", "drs"],
            "seeds": [0],
            "data": {"dataset": "digits", "imbalance_factor": 10},
            "model": {"arch": "mlp", "hidden": [32]},
            "train": {"epochs": 5, "batch_size": 64, "eval_every": 0, "num_threads": 1},
        }
    )
    results = run_benchmark(cfg, tmp_path / "run", progress=False, echo=None)
    entry = results["methods"]["m2m"]
    assert entry["degenerate"] == [
        {
            "equals": "drs",
            "why": "M2m accepted none of the samples it translated (epoch 5 of 5)",
            "seeds": [0],
        }
    ]
    assert entry["metrics"]["balanced_accuracy"]["values"] == pytest.approx(
        results["methods"]["drs"]["metrics"]["balanced_accuracy"]["values"], abs=1e-6
    )
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| m2m ¹ |" in md and "¹ `m2m` is `drs` in every seed: M2m accepted none" in md
    html = (tmp_path / "run" / "report.html").read_text()
    assert "m2m ¹" in html and "M2m accepted none of the samples it translated" in html
