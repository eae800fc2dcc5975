"""One command at a time in a run folder (an OS lock), and an additive ``--resume`` (issue 23)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtail.cli import main
from longtail.engine.runner.lock import LOCK_FILE, LOCK_FILES, LOCK_INFO

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Holds the lock of the folder argv[1] (created) until its standard input closes.
HOLD = """
import sys
from pathlib import Path
from longtail.engine.runner.lock import RunFolderLock
out = Path(sys.argv[1])
out.mkdir(exist_ok=True)
lock = RunFolderLock(out)  # kept: a lock object that is garbage-collected releases its lock
lock.acquire("the test's holder")
print("held", flush=True)
sys.stdin.read()
"""


def _config(tmp_path: Path) -> Path:
    """A config that trains on the bundled digits in about a second per method."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "methods": ["erm"],
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "eval_every": 0, "num_threads": 1},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bench(cfg: Path, *args: str) -> list[str]:
    return ["bench", str(cfg), "--no-progress", "--jobs", "1", *args]


def _one_error(err: str, *needles: str) -> str:
    """The single ``error:`` line of ``err``; it must hold every needle; no traceback anywhere."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def hold() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Starts another process holding the lock of a folder (killed at the end at the latest)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    started: list[subprocess.Popen[str]] = []

    def start(out: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=60)


def _files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_second_command_into_a_locked_folder_exits_2(
    tmp_path: Path,
    hold: Callable[[Path], subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    cfg = _config(tmp_path)
    holder = hold(out)
    info = (out / LOCK_INFO).read_text()
    assert json.loads(info)["pid"] == holder.pid
    for extra in ([], ["--resume"]):
        assert main(_bench(cfg, "--out", str(out), *extra)) == 2
        line = _one_error(capsys.readouterr().err, str(out), f"process {holder.pid}", "in use")
        assert socket.gethostname() in line
        # nothing written, nothing removed: the holder's files are as it left them
        assert sorted(p.name for p in out.iterdir()) == sorted(LOCK_FILES)
        assert (out / LOCK_INFO).read_text() == info
    # the lock dies with its process (kill -9): the folder takes a run at once
    holder.kill()
    holder.wait(timeout=60)
    assert main(_bench(cfg, "--out", str(out))) == 0
    assert (out / "results.json").is_file()
    assert not (out / LOCK_INFO).exists()  # removed when the lock was released
    capsys.readouterr()
    # a run folder in use: "in use" (not "already holds a run", which --resume would not cure)
    holder = hold(out)
    before = _files(out)
    assert main(_bench(cfg, "--out", str(out), "--epochs", "2")) == 2
    _one_error(capsys.readouterr().err, str(out), f"process {holder.pid}", "in use")
    assert _files(out) == before
    holder.kill()
    holder.wait(timeout=60)
    assert main(_bench(cfg, "--out", str(out), "--resume")) == 0  # its info file is stale now


def test_a_stale_lock_file_never_blocks(tmp_path: Path) -> None:
    """The lock file of a killed run, with an info file naming its (ended) process."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale = {"pid": int(ended.stdout), "host": socket.gethostname(), "started": "?", "command": ""}

    def plant(out: Path) -> None:
        out.mkdir(exist_ok=True)
        (out / LOCK_FILE).touch()
        (out / LOCK_INFO).write_text(json.dumps(stale))

    cfg = _config(tmp_path)
    out = tmp_path / "run"
    plant(out)  # a folder holding only the lock's files is still an empty folder
    assert main(_bench(cfg, "--out", str(out))) == 0
    plant(out)
    assert main(_bench(cfg, "--out", str(out), "--resume")) == 0
    assert (out / LOCK_FILE).is_file() and not (out / LOCK_INFO).exists()
    # without --resume the run folder is refused as before: the lock file is not the reason
    plant(out)
    assert main(_bench(cfg, "--out", str(out))) == 2


def test_only_rank_0_creates_and_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from longtail.engine import distributed as D
    from longtail.engine.runner.folders import take_run_folder

    monkeypatch.setattr(D, "is_main_process", lambda: False)
    assert take_run_folder(tmp_path / "run", False) == ([], None)
    assert not (tmp_path / "run").exists()


def test_resume_is_additive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(_bench(cfg, "--methods", "focal")) == 0
    (out,) = (tmp_path / "runs").iterdir()
    focal = out / "focal" / "seed_0" / "result.json"
    before = focal.stat().st_mtime_ns
    capsys.readouterr()
    # a bare --resume (the newest run) with another method: the focal row stays
    assert main(_bench(cfg, "--methods", "erm", "--seeds", "0", "--resume")) == 0
    err = capsys.readouterr().err
    assert "note: added from earlier runs" in err and "focal (seed 0)" in err, err
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["erm", "focal"]
    assert results["earlier_runs"] == {"focal": [0]}
    assert results["methods"]["focal"]["composition"]["loss"] == "focal"
    assert focal.stat().st_mtime_ns == before  # read, not trained again
    report = (out / "report.md").read_text()
    assert "\n| focal " in report, report  # its row in the table
    assert "From earlier runs in this run folder" in report and "`focal` (seed 0)" in report
    # a result of another configuration (focal's gamma) is left out, said so, and kept
    args = ["--methods", "erm", "--out", str(out), "--resume"]
    assert main(_bench(cfg, *args, "--set", "method_params.focal.gamma=1.0")) == 0
    err = capsys.readouterr().err
    assert "note: left out of results.json" in err and "focal (seed 0)" in err, err
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["erm"] and "earlier_runs" not in results
    assert "\n| focal " not in (out / "report.md").read_text()
    assert focal.stat().st_mtime_ns == before
