"""The workers' forkserver: started early by the ``longtail`` command, stopped before it exits."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.forkserver as mp_forkserver
import os
import sys
from pathlib import Path

import pytest

import longtail.cli as cli
from longtail import forkserver

needs_forkserver = pytest.mark.skipif(
    "forkserver" not in mp.get_all_start_methods(), reason="the platform has no forkserver"
)


@needs_forkserver
def test_start_early_then_stop_leaves_no_server() -> None:
    if (os.cpu_count() or 1) < 2:
        assert forkserver.start_early() is False
        return
    forkserver.stop()  # one an earlier test of this process may have left running
    assert forkserver.start_early() is True
    assert forkserver.start_early() is False  # running already: not this call's to stop
    pid = mp_forkserver._forkserver._forkserver_pid
    assert pid is not None
    os.kill(pid, 0)  # running
    forkserver.stop()
    assert mp_forkserver._forkserver._forkserver_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped (a zombie would still accept signal 0)
    forkserver.stop()  # nothing running: a no-op


def test_no_early_start_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert forkserver.start_early() is False


@pytest.mark.parametrize(
    ("argv", "env_jobs", "early"),
    [
        (["bench", "missing.yaml"], None, True),
        (["bench", "missing.yaml", "--jobs", "2"], "1", True),
        (["bench", "missing.yaml", "--jobs", "1"], None, False),
        (["bench", "missing.yaml"], "1", False),
        (["bench", "missing.yaml", "--tune-trials", "2"], None, False),
        (["train", "missing.yaml"], None, False),
        (["tune", "missing.yaml", "--method", "focal", "--jobs", "2"], None, "tune"),
        (["tune", "missing.yaml", "--method", "focal"], None, False),
    ],
)
def test_the_command_starts_the_server_early_and_stops_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    env_jobs: str | None,
    early: bool | str,
) -> None:
    calls: list[str] = []
    preloads: list[list[str] | None] = []
    monkeypatch.setattr(
        forkserver,
        "start_early",
        lambda preload=None: calls.append("start") or preloads.append(preload) or True,
    )
    monkeypatch.setattr(forkserver, "stop", lambda: calls.append("stop"))
    if env_jobs is None:
        monkeypatch.delenv("LONGTAIL_JOBS", raising=False)
    else:
        monkeypatch.setenv("LONGTAIL_JOBS", env_jobs)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["longtail", *argv])
    assert cli.main() == 2  # the config does not exist: one line, exit 2 ...
    assert calls == (["start", "stop"] if early else [])  # ... and the server stopped first
    if early:  # tune's workers also import Optuna and the trial code
        assert preloads == [forkserver.TUNE_PRELOAD if early == "tune" else forkserver.PRELOAD]
    calls.clear()
    assert cli.main(argv) == 2  # called from Python: the server starts only when needed
    assert calls == []


@needs_forkserver
def test_a_server_that_cannot_start_early_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mp_forkserver, "ensure_running", refuse)
    assert forkserver.start_early() is False  # the run starts it later, or reports the error then


def test_process_gone_tells_running_zombie_and_reaped_processes_apart() -> None:
    import subprocess
    import time

    assert forkserver.process_gone(os.getpid()) is False
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    # ended, not yet collected: a zombie, which still accepts signal 0
    while not forkserver.process_gone(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{child.pid}/stat").exists():
        assert forkserver.process_gone(child.pid) is True
        os.kill(child.pid, 0)  # the zombie is there
    child.wait()
    assert forkserver.process_gone(child.pid) is True


def test_exit_with_command_checks_its_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        forkserver.exit_with_command(os.getpid(), interval=0)


@pytest.mark.slow
@needs_forkserver
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("command", ["bench", "tune"])
def test_a_killed_command_leaves_no_worker_behind(command: str, tmp_path: Path) -> None:
    """``kill -9`` of ``longtail bench --jobs 2`` (or ``tune --jobs 2``): its workers, which would
    finish their job into the unlocked folder and then wait forever, end within seconds, and with
    them the forkserver."""
    import signal
    import subprocess
    import time

    from test_parallel_jobs import _descendants

    out = tmp_path / "run"
    if command == "bench":
        args = ["bench", "--methods", "erm,focal", "--seeds", "0", "--jobs", "2"]
    else:
        args = ["tune", "--method", "focal", "--trials", "50", "--jobs", "2"]
    cmd = [sys.executable, "-m", "longtail", *args, "--epochs", "3000", "--out", str(out)]
    if command == "bench":
        cmd.append("--no-progress")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    below: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        # the workers are the forkserver's children: two levels below the command
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            below = _descendants(proc.pid)
            if any(d == 2 for d in below.values()):
                break
        assert any(d == 2 for d in below.values()), "no worker process appeared"
        time.sleep(1.0)  # let them start training
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(map(forkserver.process_gone, below)):
            time.sleep(0.2)
        left = [p for p in below if not forkserver.process_gone(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in below:  # do not leave them to the next test if the assertion fails
            if not forkserver.process_gone(p):
                os.kill(p, signal.SIGKILL)
    assert not left, f"still running after the command was killed: {left}"
