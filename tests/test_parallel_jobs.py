"""``longtail bench --jobs N``: worker processes give the sequential run's results, and resume."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from longtail.cli import main
from longtail.engine.runner import threads_per_job
from longtail.engine.runner.lock import RunFolderLock

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    raw: dict[str, Any] = {
        "name": "jobs",
        # cb-focal's loss is a closure: methods are resolved again in the workers, not pickled
        "methods": ["erm", "la-posthoc", "crt", "drw", "cb-focal"],
        "seeds": [0, 1],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [32]},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "eval_every": 1, "num_threads": 1},
    }
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bench(cfg: Path, out: Path, *extra: str) -> int:
    return main(["bench", str(cfg), "--out", str(out), "--no-progress", *extra])


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def two_jobs_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The config and its run folder with ``--jobs 2``, once per pytest run (read by the tests
    below, resumed in a copy)."""
    from dist_helpers import once_per_run

    def make(root: Path) -> int:
        return _bench(_config(root), root / "par", "--jobs", "2")

    root, code = once_per_run(tmp_path_factory, "two_jobs_run", make)
    assert code == 0
    return root / "jobs.yaml", root / "par"


def test_two_jobs_give_the_sequential_results(
    two_jobs_run: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg, par_dir = two_jobs_run
    assert _bench(cfg, tmp_path / "seq", "--jobs", "1") == 0
    seq, par = _results(tmp_path / "seq"), _results(par_dir)
    assert seq["stages_trained"] == par["stages_trained"] == 6  # erm, drw, cb-focal; 2 seeds
    for name, entry in seq["methods"].items():
        for metric, stats in entry["metrics"].items():
            assert par["methods"][name]["metrics"][metric]["values"] == stats["values"], (
                name,
                metric,
            )
        for seed in entry["seeds"]:
            a = torch.load(tmp_path / "seq" / name / f"seed_{seed}" / "model.pt", weights_only=True)
            b = torch.load(par_dir / name / f"seed_{seed}" / "model.pt", weights_only=True)
            assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (par_dir / "report.md").is_file()


def test_resume_with_jobs_is_exact(two_jobs_run: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, par_dir = two_jobs_run
    out = tmp_path / "par"
    shutil.copytree(par_dir, out)  # the shared run stays as it is for the test above
    before = _results(out)
    # lose a finished second stage and a finished first stage: they are trained again
    shutil.rmtree(out / "crt" / "seed_1")
    stage = next((out / "stages").glob("*-drw-*"))
    shutil.rmtree(stage / "seed_0")
    for name in ("drw",):
        (out / name / "seed_0" / "result.json").unlink()
    assert _bench(cfg, out, "--jobs", "2", "--resume") == 0
    after = _results(out)
    assert after["stages_trained"] == 1
    for name, entry in before["methods"].items():
        for metric, stats in entry["metrics"].items():
            assert after["methods"][name]["metrics"][metric]["values"] == stats["values"]


def test_threads_per_job() -> None:
    assert threads_per_job(2, 1) == 1
    assert threads_per_job(1, None) >= 1
    assert threads_per_job(64, None) == 1


def test_bad_longtail_jobs_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LONGTAIL_JOBS", "many")
    assert _bench(_config(tmp_path), tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert "LONGTAIL_JOBS" in err and "Traceback" not in err


def test_two_jobs_multilabel_equal_sequential(tmp_path: Path) -> None:
    from test_engine_fixtures import write_mulan

    folder = write_mulan(tmp_path / "toy")
    raw: dict[str, Any] = {
        "name": "jobs_ml",
        "task": "multi-label",
        "methods": ["bce", "cb-focal", "rfs"],
        "seeds": [0, 1],
        "data": {"dataset": "mulan", "data_dir": str(folder), "imbalance_factor": None},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "num_threads": 1},
    }
    cfg = tmp_path / "ml.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert _bench(cfg, tmp_path / "seq", "--jobs", "1") == 0
    assert _bench(cfg, tmp_path / "par", "--jobs", "2") == 0
    seq, par = _results(tmp_path / "seq"), _results(tmp_path / "par")
    for name, entry in seq["methods"].items():
        for metric, stats in entry["metrics"].items():
            assert par["methods"][name]["metrics"][metric]["values"] == stats["values"]


def test_stage_jobs_are_one_per_stage_key_and_seed() -> None:
    """Methods that share a first stage share its job: the job list has one stage job per
    (stage key, seed), however many methods start from it (a stage trained by two jobs at once
    would be trained twice, each job writing the same folder)."""
    from longtail.engine.config import config_from_dict
    from longtail.engine.methods import resolve_methods
    from longtail.engine.runner import stage_of
    from longtail.engine.runner.parallel import plan_jobs

    names = ["erm", "la-posthoc", "crt", "lws", "tau-norm", "focal", "m2m", "drw"]
    cfg = config_from_dict({"methods": names, "seeds": [0, 1]})
    table = resolve_methods(None, "single-label")
    entries = [(n, table[n], "long-tailed") for n in names]
    stage_jobs, finish_jobs = plan_jobs(cfg, entries)

    def key(label: str) -> str:
        m = table[label]
        return stage_of(cfg, m, m.resolve_params({}), "long-tailed").key

    assert len({key(n) for n in names}) == 3  # erm's stage (six methods), focal's, drw's
    assert stage_jobs == [
        ("stage", "erm", 0),
        ("stage", "erm", 1),
        ("stage", "focal", 0),
        ("stage", "focal", 1),
        ("stage", "drw", 0),
        ("stage", "drw", 1),
    ]
    assert len({(key(label), seed) for _, label, seed in stage_jobs}) == len(stage_jobs)
    finishing = ["la-posthoc", "crt", "lws", "tau-norm", "m2m"]
    assert finish_jobs == [("method", n, s) for n in finishing for s in (0, 1)]


def _descendants(pid: int) -> dict[int, int]:
    """``{descendant pid: depth}`` of ``pid`` (from /proc; depth 1 = child)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    depth: dict[int, int] = {pid: 0}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in depth and child not in depth:
                depth[child] = depth[parent] + 1
                changed = True
    del depth[pid]
    return depth


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_worker_is_a_one_line_error_and_the_folder_resumes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = ["bench", "--methods", "erm,focal", "--seeds", "0", "--jobs", "2", "--no-progress"]
    cmd = [sys.executable, "-m", "longtail", *args, "--epochs", "3000", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        # the pool's workers are the forkserver's children: two levels below the command
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = [p for p, d in _descendants(proc.pid).items() if d == 2]
        assert workers, "no worker process appeared"
        time.sleep(1.0)  # let it start training
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "a worker process ended abruptly" in lines[0]
    assert "--resume" in lines[0]
    assert (out / "config.yaml").is_file()  # the run folder is kept for the resume
    lock = RunFolderLock(out)  # not left locked: the next command into the folder may start
    lock.acquire()
    assert lock.held
    lock.release()
