"""``longtail tune``: search spaces, the validation split only, resume, shared studies, bad input.

Everything trains the bundled digits with a 16-unit MLP for 2-3 epochs, a handful of trials.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from longtail.cli import main
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.methods import TRAIN_PARAMS, method_dimensions, resolve_methods

optuna = pytest.importorskip("optuna")

SRC = Path(__file__).resolve().parents[1] / "src"


def _config(tmp_path: Path, epochs: int = 2, **extra: Any) -> Path:
    raw = {
        "name": "tiny",
        "methods": ["erm", "la-loss"],
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "lr": 0.05,
            "warmup_epochs": 0,
            "eval_every": 1,
            "num_threads": 1,
        },
        **extra,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return env


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "longtail", "tune", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _states(db: Path) -> list[str]:
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [r[0] for r in con.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return []


# ------------------------------------------------------------------------- search spaces


def test_every_declared_space_lies_in_its_parameters_range() -> None:
    from longtail.engine.kinds import TASK_KINDS

    searched = 0
    for kind in TASK_KINDS.values():
        for label, method in kind.methods.items():
            for d in method_dimensions(method, label, {}, train_defaults={}, tune_train=True):
                assert d.contains(d.param.default), (label, d.name)
                searched += 1
    assert searched > 50
    assert set(TRAIN_PARAMS) == {"lr", "weight_decay"}


def test_tune_section_narrows_widens_and_switches_off() -> None:
    cfg = config_from_dict(
        {
            "tune": {
                "la-loss": {"tau": {"low": 0.5, "high": 5.0}},
                "crt": {"stage2_lr_factor": False, "stage2_epoch_fraction": [0.1, 0.2]},
                "train": {"lr": {"high": 0.2}},
            }
        }
    )
    table = resolve_methods({}, "single-label")
    la = method_dimensions(table["la-loss"], "la-loss", cfg.tune, train_defaults={"lr": 0.05})
    assert [(d.name, d.space.low, d.space.high) for d in la] == [
        ("tau", 0.5, 5.0),
        ("train.lr", 0.001, 0.2),  # named in tune.train: searched without --tune-train
    ]
    crt = method_dimensions(table["crt"], "crt", cfg.tune, train_defaults={})
    assert [(d.name, d.space.low, d.space.high) for d in crt] == [
        ("stage2_epoch_fraction", 0.1, 0.2),
        ("train.lr", 0.001, 0.2),
    ]


@pytest.mark.parametrize(
    ("tune", "key"),
    [
        ({"nope": {"tau": [0, 1]}}, r"'tune\.nope': unknown method"),
        ({"la-loss": {"gamma": [0, 1]}}, r"'tune\.la-loss\.gamma': unknown hyper-parameter"),
        ({"la-loss": {"tau": {"low": -1.0}}}, r"'tune\.la-loss\.tau\.low': must be >= 0"),
        (
            {"cb-softmax": {"beta": {"choices": [0.9, 1.0]}}},
            r"'tune\.cb-softmax\.beta\.choices\[1\]'",
        ),
        (
            {"la-loss": {"tau": {"low": 2.0, "high": 1.0}}},
            r"'tune\.la-loss\.tau\.high': must be > low",
        ),
        (
            {"la-loss": {"tau": {"low": 0.0, "scale": "log"}}},
            r"'tune\.la-loss\.tau\.low': scale log",
        ),
        ({"la-loss": {"tau": {"scale": "cubic"}}}, r"'tune\.la-loss\.tau\.scale': must be one of"),
        ({"la-loss": {"tau": {"lo": 1}}}, r"'tune\.la-loss\.tau\.lo': unknown key"),
        ({"la-loss": {"tau": [1]}}, r"'tune\.la-loss\.tau': expected \[low, high\]"),
        ({"tau-norm": {"drop_bias": [0, 1]}}, r"'tune\.tau-norm\.drop_bias': a true/false"),
        ({"smote": {"smote_k_neighbors": [1, 2.5]}}, r"'tune\.smote\.smote_k_neighbors\.high'"),
        ({"train": {"momentum": [0.5, 0.9]}}, r"'tune\.train\.momentum': unknown hyper-parameter"),
        ({"train": {"lr": {"low": 0.0}}}, r"'tune\.train\.lr\.low': must be > 0"),
    ],
)
def test_bad_tune_sections_name_the_key(tune: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config_from_dict({"tune": tune})


def test_a_bad_space_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, tune={"la-loss": {"tau": {"low": -1.0}}})
    code = main(["tune", str(cfg), "--method", "la-loss", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == "error: config key 'tune.la-loss.tau.low': must be >= 0.0, got -1.0"


def test_nothing_to_tune_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["tune", str(_config(tmp_path)), "--method", "erm", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: --method: erm has no hyper-parameter to tune")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("url", ["nosuchdb://host/x", "sqlite:////no/such/folder/study.db", "x"])
def test_a_storage_that_cannot_be_opened_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    out = tmp_path / "s"
    code = main(
        ["tune", str(_config(tmp_path)), "--method", "la-loss", "--out", str(out), "--storage", url]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: --storage: cannot open ")
    assert not out.exists()


def test_a_task_without_a_validation_split_is_refused() -> None:
    from longtail.engine.tune import tune_validation_config

    cfg = config_from_dict(
        {
            "task": "metric-learning",
            "methods": ["triplet"],
            "data": {"dataset": "digits"},
            "train": {"batch_size": 60},
        }
    )
    with pytest.raises(ConfigError, match=r"data\.validation_fraction.*never reads the test set"):
        tune_validation_config(cfg, "triplet", 0)


# ------------------------------------------------------------------ the test set is never read


class _Unreadable(torch.Tensor):
    """A test split whose every use (indexing, arithmetic, len, repr) raises; building the data
    may only pass it on (``.long()``, ``.contiguous()`` on it return it)."""

    reads: ClassVar[int] = 0
    PASSED_ON: ClassVar[tuple[str, ...]] = ("long", "contiguous")

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if getattr(func, "__name__", "") in cls.PASSED_ON and not kwargs and len(args) == 1:
            return args[0]
        cls.reads += 1
        raise AssertionError(f"the test split was read ({getattr(func, '__name__', func)})")


def test_tuning_never_reads_the_test_split(tmp_path: Path) -> None:
    from longtail.engine.datasets import DATA_FORMATS, DataFormat, LoadedData, register_data_format
    from longtail.engine.runner import run_benchmark
    from longtail.engine.tune import TuneOptions, tune_method

    def load(cfg: Any, source: Any) -> LoadedData:
        g = torch.Generator().manual_seed(0)
        y = torch.arange(300) % 3
        x = torch.randn(300, 6, generator=g) + y[:, None].float()
        poison = torch.zeros(30, 6).as_subclass(_Unreadable)
        return LoadedData(
            x, y, poison, torch.zeros(30).long().as_subclass(_Unreadable), ["a", "b", "c"]
        )

    register_data_format(
        DataFormat(
            name="unreadable-test",
            load=load,
            source=None,
            inputs="vectors",
            standardise=lambda tr, te: (tr, te),  # the test split passes through untouched
            doc="a test split that raises when read",
        )
    )
    try:
        raw = {
            "name": "poison",
            "methods": ["la-loss"],
            "seeds": [0],
            "data": {"dataset": "unreadable-test", "imbalance_factor": 5},
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 32, "warmup_epochs": 0, "num_threads": 1},
        }
        cfg = config_from_dict(raw)
        _Unreadable.reads = 0
        record = tune_method(
            cfg, tmp_path / "study", TuneOptions(method="la-loss", trials=3, confirm=1), echo=None
        )
        assert _Unreadable.reads == 0  # neither the trials nor the confirmation runs read it
        assert record["evaluated_on"] == "validation" and record["trials"]["finished"] == 3
        assert record["confirmation"]["seeds"] == [1]
        b = record["budget"]  # 0.2 of each class of the long-tailed training subset held out
        assert b["validation_fraction"] == 0.2 and 0 < b["num_validation"] < b["num_train"] / 3
        # the control: a benchmark on the same data evaluates on the test split, and fails
        with pytest.raises(AssertionError, match="the test split was read"):
            run_benchmark(cfg, tmp_path / "bench", progress=False, echo=None)
    finally:
        del DATA_FORMATS["unreadable-test"]


def test_given_data_reach_the_confirmation_runs(tmp_path: Path) -> None:
    """``tune_method(data=...)``: the trials and the confirmation runs (in worker processes too)
    train on the given data; the config's data section is never loaded again, and a benchmark
    given data refuses a reference it would build from the config."""
    from longtail.engine.datasets import DATA_FORMATS, DataFormat, LoadedData, register_data_format
    from longtail.engine.runner import run_benchmark
    from longtail.engine.runner.runs import Runs
    from longtail.engine.tune import TuneOptions, tune_method, tune_validation_config

    loads: list[int] = []

    def load(cfg: Any, source: Any) -> LoadedData:
        loads.append(1)
        g = torch.Generator().manual_seed(0)
        y, yt = torch.arange(300) % 3, torch.arange(30) % 3
        x = torch.randn(300, 6, generator=g) + y[:, None].float()
        xt = torch.randn(30, 6, generator=g) + yt[:, None].float()
        return LoadedData(x, y, xt, yt, ["a", "b", "c"])

    register_data_format(
        DataFormat(
            name="counted-load",
            load=load,
            source=None,
            inputs="vectors",
            standardise=lambda tr, te: (tr, te),
            doc="counts its loads",
        )
    )
    try:
        raw = {
            "name": "given",
            "methods": ["la-loss"],
            "seeds": [0],
            "data": {"dataset": "counted-load", "imbalance_factor": 5},
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 32, "warmup_epochs": 0, "num_threads": 1},
        }
        cfg = config_from_dict(raw)
        vcfg = tune_validation_config(cfg, "la-loss", 0)
        runs = Runs(vcfg, tmp_path / "unused", resume=False, tick=lambda *a, **k: None)
        bundle = runs.data("long-tailed", 0)
        assert loads == [1] and bundle.evaluated_on == "validation"
        options = TuneOptions(method="la-loss", trials=2, confirm=2, jobs=2)
        record = tune_method(cfg, tmp_path / "study", options, echo=None, data=bundle)
        # neither the trials nor the confirmation loaded the config's data here; a worker process
        # (jobs=2) that did would fail, since the "counted-load" format is registered only here
        assert loads == [1]
        conf = record["confirmation"]
        assert conf["seeds"] == [1, 2] and all(v is not None for v in conf["best"])
        with_reference = config_from_dict(
            {**raw, "data": {**raw["data"], "balanced_reference": True}}
        )
        with pytest.raises(ValueError, match=r"data\.balanced_reference"):
            run_benchmark(
                with_reference, tmp_path / "bench", progress=False, echo=None, data=bundle
            )
        assert not (tmp_path / "bench").exists()
    finally:
        del DATA_FORMATS["counted-load"]


# ----------------------------------------------------------------------- resume and sharing


@pytest.mark.slow
def test_a_study_killed_mid_trial_resumes_to_the_uninterrupted_best(tmp_path: Path) -> None:
    cfg = _config(tmp_path, epochs=3)
    args = [str(cfg), "--method", "la-loss", "--trials", "5", "--seed", "0", "--no-progress"]
    out = tmp_path / "killed"
    proc = _cli(*args, "--out", str(out))
    deadline = time.monotonic() + 120
    states: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        states = _states(out / "study.db")
        if "COMPLETE" in states and states[-1] == "RUNNING":
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the study ended before it could be killed: {states}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _states(out / "study.db")
    assert killed_at[-1] == "RUNNING" and "COMPLETE" in killed_at
    with sqlite3.connect(out / "study.db") as con:
        before = con.execute(
            "SELECT t.number, v.value FROM trials t JOIN trial_values v USING (trial_id) "
            "WHERE t.state = 'COMPLETE'"
        ).fetchall()
    # without --resume the folder is refused
    again = _cli(*args, "--out", str(out))
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err.strip().splitlines()[-1]
    resumed = _cli(*args, "--out", str(out), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    # an uninterrupted study with the same seed, in this process
    fresh = tmp_path / "fresh"
    assert main(["tune", *args, "--out", str(fresh)]) == 0
    got = json.loads((out / "best_params.json").read_text())
    want = json.loads((fresh / "best_params.json").read_text())
    assert got["best_params"] == want["best_params"]
    assert got["best_value"] == want["best_value"]
    assert got["trials"]["finished"] == want["trials"]["finished"] == 5
    assert got["trials"]["fail"] == 1  # the killed trial, drawn again
    with sqlite3.connect(out / "study.db") as con:
        after = dict(
            con.execute(
                "SELECT t.number, v.value FROM trials t JOIN trial_values v USING (trial_id) "
                "WHERE t.state = 'COMPLETE'"
            ).fetchall()
        )
    assert all(after[n] == v for n, v in before)  # the finished trials were kept, not re-run


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    common = [str(cfg), "--method", "la-loss", "--trials", "6", "--storage", url, "--no-progress"]
    procs = [_cli(*common, "--out", str(tmp_path / f"machine{i}")) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="tiny-la-loss", storage=url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(finished) <= 7  # the budget of the study (one more if both began the last)
    assert len({t.user_attrs["process"] for t in finished}) == 2
    assert sum(bool(t.user_attrs.get("defaults")) for t in study.trials) == 1
    # each command reports the study as it was when its own last trial ended
    seen = [json.loads((tmp_path / f"machine{i}" / "best_params.json").read_text()) for i in (0, 1)]
    assert all(b["storage"] == url for b in seen)
    assert max(b["trials"]["finished"] for b in seen) >= 6


@pytest.mark.slow
def test_jobs_run_trials_in_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--jobs 2``: a worker process runs trials of the study (and this process after it)."""
    import longtail.engine.tune.study as study_mod

    out = tmp_path / "jobs"
    cfg = str(_config(tmp_path))
    args = ["--method", "focal", "--trials", "4", "--jobs", "2", "--no-progress"]
    here = f"{socket.gethostname()}:{os.getpid()}"
    real = study_mod.run_trials

    def after_a_worker_started(ctx: Any, data: Any, say: Any = None) -> None:
        # the worker's start (a new forkserver here) takes seconds, a tiny trial a fraction of
        # one: this process waits for the worker's first trial before it runs any (a loaded
        # machine may then leave it none: which process runs the rest is a race)
        storage = f"sqlite:///{out / 'study.db'}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            trials = optuna.load_study(study_name="tiny-focal", storage=storage).trials
            if any(t.user_attrs.get("process", here) != here for t in trials):
                break
            time.sleep(0.05)
        real(ctx, data, say)

    monkeypatch.setattr(study_mod, "run_trials", after_a_worker_started)
    code = main(["tune", cfg, *args, "--out", str(out)])
    assert code == 0
    study = optuna.load_study(study_name="tiny-focal", storage=f"sqlite:///{out / 'study.db'}")
    processes = {t.user_attrs["process"] for t in study.trials}
    assert processes - {here}, processes  # a worker process ran trials
    # 4 finished trials (pruning depends on which process finished a trial first); two processes
    # that check the budget at the same moment may each start the last one: at most J - 1 more
    assert 4 <= len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) <= 5
    assert (out / "report.md").read_text().count("plots/") == 2
    page = (out / "report.html").read_text()  # the same report, one file with the plots inside
    assert page.count('src="data:image/png;base64,') == 2
    assert "Search space and best values" in page and "Optimisation history" in page
    assert page.count("<tr>") >= 4 + 1  # the trials (and the space's rows)
    assert (out / "plots" / "history.png").stat().st_size > 0


def test_jobs_j_starts_j_minus_1_workers_and_runs_trials_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--jobs 3``: two worker processes are started and this process runs trials too (here the
    workers are stand-ins that do nothing, so this process runs every trial)."""
    import longtail.engine.tune.study as study_mod

    started: list[tuple[Any, ...]] = []

    class Idle:
        exitcode = 0

        def __init__(self, target: Any, args: tuple[Any, ...], daemon: bool) -> None:
            started.append(args)

        def start(self) -> None: ...
        def join(self) -> None: ...
        def is_alive(self) -> bool:
            return False

    class Context:
        Process = Idle

    monkeypatch.setattr(study_mod, "forkserver_context", lambda preload=None: Context())
    out = tmp_path / "jobs3"
    args = ["--method", "focal", "--trials", "3", "--jobs", "3", "--no-progress"]
    assert main(["tune", str(_config(tmp_path)), *args, "--out", str(out)]) == 0
    assert len(started) == 2
    assert {args[2] for args in started} == {1}  # threads per job: the config's train.num_threads
    study = optuna.load_study(study_name="tiny-focal", storage=f"sqlite:///{out / 'study.db'}")
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert [t.user_attrs["process"] for t in study.trials] == [here] * 3


def test_bench_tune_trials_runs_defaults_and_best_params_with_one_budget(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "bench",
            "--methods",
            "focal,erm",
            "--seeds",
            "0,1",
            "--epochs",
            "2",
            "--jobs",
            "1",
            "--tune-trials",
            "2",
            "--reference",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    record = json.loads((out / "tuning.json").read_text())
    assert record["budget"]["trials"] == 2 and record["budget"]["epochs"] == 2
    focal = record["methods"]["focal"]
    assert focal["tuned"] and focal["trials"]["finished"] == 2
    erm_rec = record["methods"]["erm"]
    assert erm_rec["tuned"] is False  # nothing to tune: defaults kept, not trained again
    assert not (out / "tuned" / "erm").exists()
    assert erm_rec["test_tuned"] == erm_rec["test_default"] and erm_rec["paired_difference"] == 0
    # the best values are the defaults: the tuned run is the default run, not trained again
    kept = focal["kept_defaults"]
    assert kept == (focal["best_params"] == {"gamma": 2.0})
    assert (out / "tuned" / "focal").exists() != kept
    t_run = out / ("default" if kept else "tuned")
    tuned_params = json.loads((t_run / "focal" / "seed_1" / "result.json").read_text())
    for k, v in focal["best_params"].items():
        assert tuned_params["params"][k] == pytest.approx(v)
    diffs, defaults, tuned = [], [], []
    for s in (0, 1):
        a = json.loads((out / "default" / "focal" / f"seed_{s}" / "result.json").read_text())
        b = json.loads((t_run / "focal" / f"seed_{s}" / "result.json").read_text())
        defaults.append(a["metrics"]["balanced_accuracy"])
        tuned.append(b["metrics"]["balanced_accuracy"])
        diffs.append(tuned[-1] - defaults[-1])
    assert focal["paired_difference"] == pytest.approx(sum(diffs) / 2)
    assert focal["test_default"] == pytest.approx(sum(defaults) / 2)
    assert focal["test_default_std"] == pytest.approx(abs(defaults[0] - defaults[1]) / 2**0.5)
    assert focal["test_tuned_std"] == pytest.approx(abs(tuned[0] - tuned[1]) / 2**0.5)
    # the share of the ERM-to-balanced gap, and the tuned method chosen on validation
    base = json.loads((out / "default" / "results.json").read_text())["methods"]
    erm = base["erm"]["metrics"]["balanced_accuracy"]["mean"]
    ref = base["balanced"]["metrics"]["balanced_accuracy"]["mean"]
    assert focal["gap_closed_tuned"] == pytest.approx((focal["test_tuned"] - erm) / (ref - erm))
    assert focal["gap_closed_default"] == pytest.approx((sum(defaults) / 2 - erm) / (ref - erm))
    chosen = record["chosen_on_validation"]
    assert chosen["method"] == "focal" and chosen["best_validation"] == focal["best_validation"]
    assert "Chosen on validation" in (out / "tuning.md").read_text()
    if not kept:
        assert json.loads((out / "tuned" / "results.json").read_text())["tuning"] == record
    assert "| **focal** |" in (out / "tuning.md").read_text()  # bold: chosen on validation
    assert '<td class="best">focal</td>' in (out / "tuning.html").read_text()


def test_bench_tune_trials_with_nothing_to_tune_trains_nothing_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["bench", "--methods", "erm", "--seeds", "0", "--epochs", "1", "--jobs", "1"]
    assert main([*args, "--tune-trials", "2", "--out", str(out), "--no-progress"]) == 0
    assert not (out / "tuned").exists() and not (out / "tune").exists()
    record = json.loads((out / "tuning.json").read_text())
    erm = record["methods"]["erm"]
    assert erm["tuned"] is False and erm["paired_difference"] == 0
    assert record["chosen_on_validation"] is None
    assert "not trained again" in (out / "tuning.md").read_text()


# ------------------------------------------------------------------------------ confirmation


def _rows(values: dict[int, float], defaults: int | None = 0) -> list[dict[str, Any]]:
    return [
        {
            "number": n,
            "state": "complete",
            "value": v,
            "params": {"tau": float(n)},
            "defaults": n == defaults,
        }
        for n, v in values.items()
    ]


@pytest.mark.parametrize(
    ("new_best", "new_defaults", "kept"),
    [([0.80, 0.82], [0.79, 0.80], "best"), ([0.78, 0.80], [0.79, 0.80], "defaults")],
)
def test_confirmation_keeps_the_best_values_only_if_they_win_on_new_seeds(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    new_best: list[float],
    new_defaults: list[float],
    kept: str,
) -> None:
    """The best trial (0.90) beat the defaults (0.80) on the study's seed; on two new seeds the
    decision is made again, by the means there, whatever the study's scores were."""
    from longtail.engine.tune import confirm as C

    trained: list[tuple[dict[str, Any], list[int]]] = []

    def fake(ctx: Any, values: dict[str, Any], seeds: list[int], *a: Any) -> list[float]:
        trained.append((values, seeds))
        return new_best if values == {"tau": 3.0} else new_defaults

    monkeypatch.setattr(C, "_scores", fake)
    ctx = _ctx(tmp_path)
    out = C.confirm_best(_rows({0: 0.80, 1: 0.70, 3: 0.90, 2: 0.85}), ctx, 2)
    assert out is not None
    assert trained == [({"tau": 3.0}, [6, 7]), ({"tau": 0.0}, [6, 7])]  # seed 5 + 1, + 2
    assert out["kept"] == kept and out["best"] == new_best and out["defaults"] == new_defaults
    assert out["params"] == ({"tau": 3.0} if kept == "best" else {"tau": 0.0})
    assert out["value"] == pytest.approx(sum(new_best if kept == "best" else new_defaults) / 2)


def test_confirmation_folders_are_per_trial_and_failed_runs_lose(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A study resumed with a larger budget may find another best trial: each trial confirmed has
    its own folder. A candidate whose run diverged (None) loses; a pruned defaults trial leaves
    nothing to compare with, said so."""
    from longtail.engine.tune import confirm as C

    folders: list[str] = []
    results = {"trial-0003": [None, 0.9], "trial-0000": [0.5, 0.5]}

    def fake(ctx: Any, values: Any, seeds: Any, folder: Path, *a: Any) -> list[float | None]:
        folders.append(folder.name)
        return results[folder.name]

    monkeypatch.setattr(C, "_scores", fake)
    out = C.confirm_best(_rows({0: 0.80, 1: 0.70, 3: 0.90}), _ctx(tmp_path), 2)
    assert out is not None and folders == ["trial-0003", "trial-0000"]
    assert (
        out["kept"] == "defaults"
        and out["value"] == 0.5
        and "best values' runs failed" in out["why"]
    )
    assert out["best_trial"] == 3 and out["defaults_trial"] == 0
    results["trial-0000"] = [None, None]
    results["trial-0003"] = [0.7, 0.9]
    out = C.confirm_best(_rows({0: 0.80, 1: 0.70, 3: 0.90}), _ctx(tmp_path), 2)
    assert out is not None and out["kept"] == "best" and out["value"] == pytest.approx(0.8)
    rows = _rows({1: 0.70, 3: 0.90}, defaults=None)
    rows.append({"number": 0, "state": "pruned", "value": None, "params": {}, "defaults": True})
    out = C.confirm_best(rows, _ctx(tmp_path), 2)
    assert out is not None and out["kept"] == "best" and "did not finish (pruned)" in out["why"]


def test_confirmation_of_defaults_that_are_the_best_trial_trains_them_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from longtail.engine.tune import confirm as C

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(C, "_scores", lambda ctx, values, seeds, *a: calls.append(values) or [0.5])
    out = C.confirm_best(_rows({0: 0.9, 1: 0.8}), _ctx(tmp_path), 1)
    assert out is not None and calls == [{"tau": 0.0}]
    assert out["kept"] == "best" and out["defaults"] is None and "is the defaults" in out["why"]
    outside = C.confirm_best(_rows({0: 0.9, 1: 0.8}, defaults=None), _ctx(tmp_path), 1)
    assert outside is not None and "outside the space" in outside["why"]
    with pytest.raises(ValueError, match="--confirm"):
        C.confirm_best(_rows({0: 0.9}), _ctx(tmp_path), 0)


def _ctx(tmp_path: Path) -> Any:
    from longtail.engine.tune.trials import TrialContext

    cfg = config_from_dict(yaml.safe_load(_config(tmp_path).read_text()))
    return TrialContext(
        cfg=cfg,
        out=tmp_path,
        method="la-loss",
        dims=(),
        seed=5,
        primary="balanced_accuracy",
        maximize=True,
        trials=4,
        storage="sqlite://",
        heartbeat=False,
        study_name="s",
        startup=1,
        warmup=1,
    )


def test_tune_confirm_trains_new_seeds_records_them_and_resumes(tmp_path: Path) -> None:
    """``longtail tune --confirm 2``: the best values and the defaults trained on seeds 1 and 2 of
    the same split (run folders under confirm/), the kept values in best_params.json, said in
    the report; a rerun with --resume trains nothing again."""
    cfg = _config(tmp_path)
    out = tmp_path / "study"
    args = ["tune", str(cfg), "--method", "la-loss", "--trials", "3", "--confirm", "2"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    rec = json.loads((out / "best_params.json").read_text())
    conf = rec["confirmation"]
    assert conf["seeds"] == [1, 2] and len(conf["best"]) == 2
    assert rec["best_params"] == conf["params"]
    # the defaults (tau 1) are trial 0: confirmed against the best unless they are the best
    assert (conf["defaults"] is None) == (rec["best_trial"] == 0)
    trials = {"best": conf["best_trial"], "defaults": conf["defaults_trial"]}
    for which in ("best", "defaults") if conf["defaults"] is not None else ("best",):
        for i, s in enumerate((1, 2)):
            folder = out / "confirm" / f"trial-{trials[which]:04d}"
            run = folder / "la-loss" / f"seed_{s}" / "result.json"
            r = json.loads(run.read_text())
            assert r["metrics"]["balanced_accuracy"] == pytest.approx(conf[which][i])
    assert "Confirmation on 2 new seed(s)" in (out / "report.md").read_text()
    stamp = {p: p.stat().st_mtime_ns for p in (out / "confirm").rglob("result.json")}
    assert main([*args, "--out", str(out), "--resume", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "confirm").rglob("result.json")} == stamp
    assert json.loads((out / "best_params.json").read_text())["confirmation"] == conf


def test_tune_confirm_without_tune_trials_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--tune-confirm", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--tune-confirm" in err and "Traceback" not in err


def test_methods_are_chosen_on_the_confirmed_score() -> None:
    """The best trial's score is optimistic; with confirmations the choice uses the kept values'
    score on the new seeds."""
    from longtail.engine.tune.compare import _chosen

    studies = {
        "a": {"tuned": True, "best_validation": 0.90, "best_params": {}, "confirmation": None},
        "b": {"tuned": True, "best_validation": 0.88, "best_params": {}},
    }
    assert _chosen(studies)["method"] == "a"  # type: ignore[index]
    studies["a"]["confirmation"] = {"value": 0.85}
    studies["b"]["confirmation"] = {"value": 0.87}
    chosen = _chosen(studies)
    assert chosen is not None and chosen["method"] == "b" and chosen["best_validation"] == 0.87


def test_bench_tune_confirm_trains_what_the_confirmation_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["bench", "--methods", "focal", "--seeds", "0", "--epochs", "1", "--jobs", "1"]
    extra = ["--tune-trials", "2", "--tune-confirm", "1", "--out", str(out), "--no-progress"]
    assert main([*args, *extra]) == 0
    record = json.loads((out / "tuning.json").read_text())
    assert record["budget"]["confirm"] == 1
    focal = record["methods"]["focal"]
    conf = focal["confirmation"]
    assert conf["seeds"] == [1] and focal["best_params"] == conf["params"]
    t_run = out / ("default" if focal["kept_defaults"] else "tuned")
    run = json.loads((t_run / "focal" / "seed_0" / "result.json").read_text())
    assert run["params"]["gamma"] == pytest.approx(conf["params"]["gamma"])
    assert record["chosen_on_validation"]["best_validation"] == conf["value"]
    md = (out / "tuning.md").read_text()
    assert "Confirmed: default vs best, kept" in md and "best validation score" not in md
    assert "best confirmed validation score" in md


def _fake_study(best: float, kept: str) -> Any:
    """A ``tune_method`` stand-in: a focal study whose best trial is gamma ``best`` (the defaults
    are gamma 2) and whose confirmation kept ``kept``."""

    def tune_method(cfg: Any, out: Path, options: Any, echo: Any = None) -> dict[str, Any]:
        params = {"best": {"gamma": best}, "defaults": {"gamma": 2.0}}[kept]
        conf = {
            "seeds": [1],
            "best": [0.7],
            "defaults": [0.8 if kept == "defaults" else 0.6],
            "kept": kept,
            "params": params,
            "value": 0.8 if kept == "defaults" else 0.7,
            "why": "made up",
        }
        return {
            "best_params": params,
            "study_best_params": {"gamma": best},
            "best_value": 0.9,
            "default_value": 0.5,
            "default_params": {"gamma": 2.0},
            "confirmation": conf,
            "trials": {"finished": 2, "complete": 2, "pruned": 0, "fail": 0},
            "budget": {"trials": 2},
        }

    return tune_method


@pytest.mark.parametrize("kept", ["defaults", "best"])
def test_bench_trains_what_the_confirmation_kept_and_reuses_kept_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kept: str
) -> None:
    """Kept best values (gamma 0.5) are trained on the test seeds; kept defaults are the default
    run, not trained again (paired difference exactly 0); the method is chosen on the confirmed
    score."""
    from longtail.engine.tune import compare

    monkeypatch.setattr(compare, "tune_method", _fake_study(0.5, kept))
    out = tmp_path / "run"
    args = ["bench", "--methods", "focal", "--seeds", "0", "--epochs", "1", "--jobs", "1"]
    extra = ["--tune-trials", "2", "--tune-confirm", "1", "--out", str(out), "--no-progress"]
    assert main([*args, *extra]) == 0
    record = json.loads((out / "tuning.json").read_text())
    focal = record["methods"]["focal"]
    assert focal["kept_defaults"] == (kept == "defaults")
    assert record["chosen_on_validation"]["best_validation"] == (0.8 if kept == "defaults" else 0.7)
    if kept == "defaults":
        assert focal["paired_difference"] == 0 and not (out / "tuned").exists()
        assert "not trained again" in (out / "tuning.md").read_text()
    else:
        run = json.loads((out / "tuned" / "focal" / "seed_0" / "result.json").read_text())
        assert run["params"]["gamma"] == 0.5
        assert json.loads((out / "tuned" / "results.json").read_text())["tuning"] == record


def test_a_failed_defaults_trial_queued_again_is_still_compared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A defaults trial killed mid-run fails and is queued again: the finished copy is the one
    compared."""
    from longtail.engine.tune import confirm as C

    monkeypatch.setattr(C, "_scores", lambda ctx, v, seeds, folder, *a: [0.5])
    rows = _rows({1: 0.7, 3: 0.9, 4: 0.8}, defaults=4)
    rows.insert(0, {"number": 0, "state": "fail", "value": None, "params": {}, "defaults": True})
    out = C.confirm_best(rows, _ctx(tmp_path), 1)
    assert out is not None and out["defaults_trial"] == 4 and out["defaults"] == [0.5]


def test_chosen_skips_failed_confirmations_and_follows_the_metric_direction() -> None:
    from longtail.engine.tune.compare import _chosen

    studies: dict[str, dict[str, Any]] = {
        "a": {
            "tuned": True,
            "best_validation": 0.9,
            "best_params": {},
            "confirmation": {"value": None},
        },
        "b": {
            "tuned": True,
            "best_validation": 0.5,
            "best_params": {},
            "confirmation": {"value": 0.4},
        },
        "c": {
            "tuned": True,
            "best_validation": 0.6,
            "best_params": {},
            "confirmation": {"value": 0.3},
        },
    }
    assert _chosen(studies)["method"] == "b"  # type: ignore[index]
    assert _chosen(studies, maximize=False)["method"] == "c"  # type: ignore[index]
    assert _chosen({"a": studies["a"]}) is None  # nothing with a score: no choice, no infinity


def test_bench_tune_trials_refuses_a_train_search_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every method of a bench runs with the config's train section: a `tune.train` space would
    be searched and then dropped, so it is refused before anything runs."""
    cfg = _config(tmp_path, tune={"train": {"lr": [0.01, 0.1]}})
    out = tmp_path / "run"
    args = ["bench", str(cfg), "--tune-trials", "2", "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tune.train" in err and "train.lr" in err and "Traceback" not in err
    assert not (out / "default").exists()
