"""The forkserver the benchmark's worker processes come from, and its early start.

``longtail bench`` trains its (stage, seed) jobs in worker processes forked from a
``multiprocessing`` forkserver that imports torch and the tracks once (see
:mod:`longtail.engine.runner.parallel`). Those imports take about 3.5 s; the command's own process
spends about 2.5 s on the same imports before it knows whether it will start workers. Started by
the command line as soon as its arguments are parsed (:func:`start_early`), the server imports in
parallel with the command instead of after it: the main job's workers start about 3 s sooner.
Only the ``longtail`` command does this (``main()`` with no arguments); it stops the server
(:func:`stop`) before it exits. Calling ``longtail.cli.main([...])`` from Python starts the
server when the run needs workers, and leaves it running for the next call, as before.

A worker outlives a command killed without a chance to stop it (``kill``, ``kill -9``, the
out-of-memory killer): it would finish its job, writing into a run folder the command no longer
locks, then wait for work forever, and keep the server alive (every worker holds the server's
liveness pipe). Each worker therefore watches the command (:func:`exit_with_command`) and ends
when the command has ended.

This module imports nothing heavy (no torch): the command line reads it before anything else.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.forkserver as mp_forkserver
import os
import signal
import threading
import time
from typing import Any

__all__ = [
    "PRELOAD",
    "TUNE_PRELOAD",
    "context",
    "exit_with_command",
    "process_gone",
    "start_early",
    "stop",
]

#: Imported once by the forkserver, before it forks the workers of ``longtail bench``.
PRELOAD = ["longtail.engine.runner.parallel", "longtail.tracks", "torch._dynamo"]
#: The same for the trial workers of ``longtail tune --jobs J`` (also Optuna).
TUNE_PRELOAD = [*PRELOAD, "longtail.engine.tune.trials", "optuna"]


def context(preload: list[str] | None = None) -> Any:
    """``forkserver`` where the platform has it, else ``spawn``. Never a plain fork of the calling
    process, which may hold threads. ``preload`` (default :data:`PRELOAD`): the modules the server
    imports when it starts (a server already running keeps what it imported)."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD if preload is None else preload)
        return ctx
    return mp.get_context("spawn")


def start_early(preload: list[str] | None = None) -> bool:
    """Start the forkserver now (it imports ``preload``, default :data:`PRELOAD`, in the
    background); return whether this call started it (not when one already runs: then it is not
    this call's to :func:`stop`). Only on a machine with more than one core, where the platform has a forkserver,
    and not under ``torchrun`` (its ranks never start workers). Costs the server's imports on an
    otherwise idle core when the run ends up training in one process (a small run)."""
    if (os.cpu_count() or 1) < 2 or os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1"):
        return False
    if "forkserver" not in mp.get_all_start_methods():
        return False
    if getattr(mp_forkserver._forkserver, "_forkserver_pid", None) is not None:
        return False  # a server runs already (started by the program that called main())
    context(preload)
    try:
        mp_forkserver.ensure_running()
    except OSError:  # e.g. no room for its socket: the workers start the server when they need it
        return False
    return True


def stop() -> None:
    """Stop the forkserver if it runs (its workers have ended by then): the command line calls this
    before it exits, so that a command that failed early, or trained in one process, does not wait
    for the server's imports (the server holds the command's standard output and error open)."""
    if "forkserver" not in mp.get_all_start_methods():
        return
    # the process's one server (multiprocessing has no public way to stop it)
    server = mp_forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    halt = getattr(server, "_stop", None)
    if halt is not None:
        halt()  # closes the server's pipe and reaps it


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended: it does not exist, or it is a zombie (ended, its exit
    status not yet collected by its parent; Linux's ``/proc/PID/stat`` says ``Z``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: it exists
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # no /proc (macOS): existing is all we can tell
        return False
    end = stat.rfind(b")")  # the command name, in parentheses, may hold spaces
    return stat[end + 2 : end + 3] in (b"Z", b"X")


def exit_with_command(pid: int, *, interval: float = 0.5, code: int = 143) -> threading.Thread:
    """In a worker process: end this process with ``code`` (``os._exit``: no clean-up, every file
    of a run is written atomically) within ``interval`` seconds of the command's process ``pid``
    ending (:func:`process_gone`). A daemon thread that wakes every ``interval`` seconds; returns
    it. 143 is the shell's code for a process ended by SIGTERM."""
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")

    def watch() -> None:
        while not process_gone(pid):
            time.sleep(interval)
        os._exit(code)

    thread = threading.Thread(target=watch, name=f"longtail-watch-{pid}", daemon=True)
    thread.start()
    return thread
