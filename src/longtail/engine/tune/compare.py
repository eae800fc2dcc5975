"""``longtail bench CONFIG --tune-trials N``: default against tuned, every method with one budget.

:func:`tuned_benchmark` writes three parts into the run folder ``OUT``:

1. ``OUT/default/``: the benchmark with the methods' defaults (an ordinary run folder);
2. ``OUT/tune/<method>/``: one study per method (:func:`~longtail.engine.tune.tune_method`), every
   study with the same budget (``N`` finished trials, the config's epochs, the same validation
   split of the training data and seed); the test set is not read;
3. ``OUT/tuned/``: the benchmark again, each method with its best parameters (the same seeds),
   evaluated once on the test set.

``OUT/tuning.json`` records the budget and, per method, the best parameters, the validation score
of the best and of the default trial, and the test metric of both runs with the paired difference
over seeds (tuned minus default, same seed); ``OUT/tuning.md`` is the table. A method with nothing
to tune keeps its defaults and is not trained again: its tuned columns are its default run, its
paired difference 0 (said in both files); so does a method whose tuned values are its defaults
(the defaults were the best trial, or a confirmation, ``confirm`` in
:mod:`~longtail.engine.tune.confirm`, kept them). ``tuned/results.json`` holds the same record under
``tuning`` (no ``tuned/`` folder when no method had anything to tune).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_json, read_json
from longtail.engine.config import Config
from longtail.engine.report.table import REFERENCE
from longtail.engine.runner import method_names, run_benchmark
from longtail.engine.runner.stages import run_dir_for
from longtail.engine.tune.report import write_tuning_report
from longtail.engine.tune.study import STUDY_DB, TuneOptions, tune_method

__all__ = ["tuned_benchmark"]

UNTUNED = "nothing to tune: the defaults are kept (not trained again; tuned = the default run)"


def _metric(run: Path, method: str, seed: int, metric: str) -> float | None:
    f = run_dir_for(run, method, seed) / "result.json"
    if not f.is_file():
        return None
    v = read_json(f).get("metrics", {}).get(metric)
    return None if v is None else float(v)


def tuned_benchmark(
    cfg: Config,
    out: str | Path,
    trials: int,
    *,
    confirm: int = 0,
    jobs: int | None = 1,
    resume: bool = False,
    command: str = "",
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Default and tuned benchmark of every method of ``cfg`` (see the module docstring);
    returns the ``tuning.json`` record. ``confirm``: each study's best values confirmed on that
    many new seeds (:mod:`~longtail.engine.tune.confirm`; 0: none)."""
    searched = {k: v for k, v in ((cfg.tune or {}).get("train") or {}).items() if v is not False}
    if searched:
        raise ValueError(
            f"config key 'tune.train': bench --tune-trials trains every method with the config's "
            f"train section, so it cannot search {', '.join(f'train.{k}' for k in searched)}; "
            "search them per method with longtail tune --tune-train"
        )
    root = Path(out)
    say = echo or (lambda _m: None)
    d_dir, t_dir = root / "default", root / "tuned"

    def bench(config: Config, folder: Path) -> dict[str, Any]:
        return run_benchmark(
            config,
            folder,
            resume=resume and folder.exists(),
            command=command,
            progress=progress,
            echo=None,
            jobs=jobs,
        )

    say(f"1/3 defaults: {d_dir}")
    default = bench(cfg, d_dir)
    primary = default["metric_specs"][0]["name"] if default.get("metric_specs") else None
    # the methods the default run trained (`methods: all` skips those the data cannot run)
    names = [n for n in method_names(cfg) if n in default["methods"]]
    studies: dict[str, dict[str, Any]] = {}
    params = {k: dict(v) for k, v in cfg.method_params.items()}
    seed = cfg.seeds[0]
    for i, name in enumerate(names, start=1):
        s_dir = root / "tune" / name
        say(f"2/3 tuning {name} ({i}/{len(names)}, {trials} trials): {s_dir}")
        options = TuneOptions(
            method=name,
            trials=trials,
            jobs=jobs or 1,
            seed=seed,
            resume=(s_dir / STUDY_DB).exists(),
            command=command,
            confirm=confirm,
        )
        try:
            rec = tune_method(cfg, s_dir, options, echo=None)
        except ValueError as exc:
            if "no hyper-parameter to tune" not in str(exc):
                raise
            studies[name] = {"tuned": False, "why": UNTUNED}
            continue
        best = {k: v for k, v in rec["best_params"].items() if not k.startswith("train.")}
        dflt = rec.get("default_params")
        # the defaults kept (best trial, or the confirmation's choice): the tuned run is the
        # default run, not trained again
        kept_defaults = dflt is not None and best == {
            k: v for k, v in dflt.items() if not k.startswith("train.")
        }
        if not kept_defaults:
            params[name] = {**params.get(name, {}), **best}
        studies[name] = {
            "tuned": True,
            "kept_defaults": kept_defaults,
            "best_params": best,
            "best_validation": rec["best_value"],
            "confirmation": rec.get("confirmation"),
            "default_validation": rec["default_value"],
            "trials": rec["trials"],
            "budget": rec["budget"],
        }
    # the references are the default run's (the same rows: not trained twice)
    data = dataclasses.replace(cfg.data, balanced_reference=False, sklearn_reference=False)
    # a method with nothing to tune is not trained again: its tuned columns are its default run
    tuned_names = [n for n in names if studies[n]["tuned"] and not studies[n].get("kept_defaults")]
    tuned: dict[str, Any] | None = None
    if tuned_names:
        cfg_tuned = dataclasses.replace(cfg, methods=tuned_names, method_params=params, data=data)
        say(f"3/3 the best parameters on the test set: {t_dir}")
        tuned = bench(cfg_tuned, t_dir)
    else:
        say("3/3 nothing to run on the test set again: no method has tuned values to run")
    spec = (default.get("metric_specs") or (tuned or {}).get("metric_specs") or [{}])[0]
    metric = primary or spec["name"]
    maximize = bool(spec.get("higher_is_better", True))
    for name in names:
        diffs, dv, tv = [], [], []
        t_run = t_dir if name in tuned_names else d_dir
        for s in cfg.seeds:
            a, b = _metric(d_dir, name, s, metric), _metric(t_run, name, s, metric)
            if a is not None and b is not None:
                diffs.append(b - a)
                dv.append(a)
                tv.append(b)
        studies[name].update(
            {
                "test_default": statistics.fmean(dv) if dv else None,
                "test_default_std": statistics.stdev(dv) if len(dv) > 1 else None,
                "test_tuned": statistics.fmean(tv) if tv else None,
                "test_tuned_std": statistics.stdev(tv) if len(tv) > 1 else None,
                "paired_difference": statistics.fmean(diffs) if diffs else None,
                "paired_difference_std": statistics.stdev(diffs) if len(diffs) > 1 else None,
                "seeds": list(cfg.seeds),
            }
        )
    _gaps(studies, default, metric)
    record = {
        "metric": metric,
        "chosen_on_validation": _chosen(studies, maximize),
        "budget": {
            "trials": trials,
            "epochs": cfg.train.epochs,
            "validation_fraction": cfg.data.validation_fraction or 0.2,
            "seed": seed,
            "confirm": confirm,
        },
        "methods": studies,
    }
    atomic_write_json(root / "tuning.json", record)
    if tuned is not None:
        results = read_json(t_dir / "results.json")
        results["tuning"] = record
        atomic_write_json(t_dir / "results.json", results)
    say(f"wrote {write_tuning_report(root, record, command)} (and tuning.html)")
    return record


def _gaps(studies: dict[str, dict[str, Any]], default: dict[str, Any], metric: str) -> None:
    """Each method's share of the ERM-to-balanced gap closed, default and tuned
    (``(method - erm) / (balanced - erm)`` on the test means; erm and the balanced reference of the
    default run), when the default run has both."""
    methods = default.get("methods", {})
    try:
        erm = methods["erm"]["metrics"][metric]["mean"]
        ref = methods[REFERENCE]["metrics"][metric]["mean"]
    except KeyError:
        return
    if erm is None or ref is None or abs(ref - erm) < 1e-12:
        return
    for m in studies.values():
        for which in ("default", "tuned"):
            v = m.get(f"test_{which}")
            m[f"gap_closed_{which}"] = None if v is None else (v - erm) / (ref - erm)


def _chosen(studies: dict[str, dict[str, Any]], maximize: bool = True) -> dict[str, Any] | None:
    """The tuned method with the best validation score (the one to use, chosen without the test
    set), with its test numbers; the confirmed score of the kept values when the studies were
    confirmed (:mod:`~longtail.engine.tune.confirm`), else the best trial's."""
    tuned = {
        n: m for n, m in studies.items() if m.get("tuned") and m.get("best_validation") is not None
    }
    if not tuned:
        return None

    def score(m: dict[str, Any]) -> float | None:
        conf = m.get("confirmation")
        v = conf["value"] if conf else m["best_validation"]
        return None if v is None else float(v)

    def rank(n: str) -> float:
        v = score(tuned[n])  # the kept values' confirmation runs failed: never chosen
        return (-math.inf if maximize else math.inf) if v is None else v

    pick = max if maximize else min
    name = pick(tuned, key=rank)
    m = tuned[name]
    if score(m) is None:
        return None
    return {
        "method": name,
        "best_validation": score(m),
        "best_params": m["best_params"],
        "test_tuned": m.get("test_tuned"),
        "gap_closed_tuned": m.get("gap_closed_tuned"),
    }
