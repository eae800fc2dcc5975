"""The run folder: may a command write into it, is it one, where a new one goes.

Only rank 0 looks at (and writes) the run folder; :func:`raise_shared` makes every rank fail alike.
A missing or empty folder takes any run, a run folder takes ``--resume``, any other folder is
refused and never written into. :func:`take_run_folder` creates the folder and locks it for the
command's life (:mod:`~longtail.engine.runner.lock`); the lock's files are not part of the content.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from longtail.data.idx import check_idx_labels
from longtail.engine import distributed as D
from longtail.engine.checkpoint import load_checkpoint, read_json
from longtail.engine.config import Config
from longtail.engine.datasets import DATA_FORMATS
from longtail.engine.methods import Method
from longtail.engine.runner.lock import LOCK_FILES, RunFolderInUse, RunFolderLock
from longtail.engine.runner.stages import method_fingerprint, run_dir_for, stage_of

__all__ = [
    "check_data_files",
    "check_resumable",
    "default_out_dir",
    "describe_command",
    "latest_out_dir",
    "make_dirs",
    "os_reason",
    "out_dir_problem",
    "raise_shared",
    "remove_empty_dirs",
    "take_run_folder",
]


#: The files that make a folder a run folder (written by :func:`run_benchmark` before training).
_RUN_MARKERS = ("config.yaml", "run.json")
#: Files of a run folder written before any training (a failed start leaves only these), and the
#: lock's files (:mod:`~longtail.engine.runner.lock`; a killed run leaves them)
_START_FILES = (*_RUN_MARKERS, "split.json", *LOCK_FILES)


def raise_shared(kind: type[Exception], problem: str | None) -> None:
    """Raise ``kind(problem)`` on every process if rank 0's ``problem`` is not ``None``.

    Only rank 0 looks at the run folder; broadcasting its verdict makes every rank fail alike (and
    acts as a barrier) instead of leaving the others waiting in a collective.
    """
    shared = D.broadcast_object(problem)
    if shared is not None:
        raise kind(str(shared))


def os_reason(exc: OSError) -> str:
    """``Permission denied``, ``Not a directory (x is a file)``, ...: the reason, one line."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, NotADirectoryError) and exc.filename:
        blocker = next((q for q in Path(exc.filename).parents if q.is_file()), None)
        if blocker is not None:
            reason += f" ({blocker} is a file)"
    return reason


def _is_our_temp(name: str) -> bool:
    """A temporary file of an interrupted atomic write (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _is_run_folder(out: Path) -> bool:
    """``out`` holds a ``config.yaml`` and the ``run.json`` this module writes next to it."""
    if not all((out / name).is_file() for name in _RUN_MARKERS):
        return False
    try:
        meta = read_json(out / "run.json")
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "command" in meta and "started" in meta


def _has_results(out: Path) -> bool:
    """Any file besides :data:`_START_FILES` on top and temporary files anywhere in ``out``."""
    for root, _dirs, files in os.walk(out):
        top = Path(root) == out
        for name in files:
            if not (_is_our_temp(name) or (top and name in _START_FILES)):
                return True
    return False


def out_dir_problem(out: Path, resume: bool) -> str | None:
    """Why ``out`` cannot take this run (``None``: it can). Reads only; never writes.

    A missing or empty folder takes any run; a run folder (or the ``stages/`` and method folders
    :func:`train_method` writes) takes ``--resume``, or a new run if it holds nothing but the
    ``config.yaml`` / ``run.json`` of a start that failed; any other folder holds files this command
    did not write and is refused.
    """
    if out.exists() and not out.is_dir():
        return f"--out: {out} is a file, not a folder; choose a new or empty folder"
    if not out.is_dir():
        return None
    try:
        names = sorted(
            e.name for e in out.iterdir() if not (_is_our_temp(e.name) or e.name in LOCK_FILES)
        )
    except OSError as exc:
        return f"--out: cannot read the folder {out}: {os_reason(exc)}"
    if not names:
        return None
    # the stages and method folders of train_method (no config.yaml / run.json, no files on top)
    trained = "stages" in names and all((out / n).is_dir() for n in names)
    if not (_is_run_folder(out) or trained):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return (
            f"--out: {out} is not empty and not a run folder (it holds {shown}); its files are "
            "not overwritten: choose a new or empty folder"
        )
    if not resume and _has_results(out):
        return (
            f"--out: {out} already holds a run; pass --resume to continue it or choose another "
            "folder"
        )
    return None


def make_dirs(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; return the folders created, deepest first."""
    missing = [q for q in (out, *out.parents) if not q.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        remove_empty_dirs([q for q in missing if q.is_dir()])
        raise
    return missing


def take_run_folder(
    out: Path, resume: bool, command: str = ""
) -> tuple[list[Path], RunFolderLock | None]:
    """Check ``out``, create it and lock it for this command (rank 0); every rank fails alike.

    Returns the folders created (deepest first) and the lock (``None`` on the other ranks), which
    the caller releases when the command ends. The folder is checked again once locked: another
    command may have written into it between the first check and the lock.

    Raises:
        FileExistsError: ``out`` cannot take this run (:func:`out_dir_problem`).
        RunFolderInUse: another command holds ``out`` (the message names it and its process).
        OSError: ``out`` cannot be created or locked (the message names it).
    """
    main = D.is_main_process()
    lock = RunFolderLock(out) if main else None
    in_use = None
    if lock is not None and out.is_dir():
        try:
            lock.check_free()  # first: a live run in the folder is what to say, not its content
        except RunFolderInUse as exc:
            in_use = str(exc)
    raise_shared(RunFolderInUse, in_use)
    raise_shared(FileExistsError, out_dir_problem(out, resume) if main else None)
    created: list[Path] = []
    problem = unfit = None
    if lock is not None:
        try:
            created = make_dirs(out)
        except OSError as exc:
            problem = f"--out: cannot create the run folder {out}: {os_reason(exc)}"
        else:
            try:
                lock.acquire(command)
            except RunFolderInUse as exc:
                in_use = str(exc)
            except OSError as exc:
                problem = f"--out: cannot lock the run folder {out}: {os_reason(exc)}"
            else:
                unfit = out_dir_problem(out, resume)
        if in_use or problem or unfit:
            lock.release(discard=bool(created))  # nothing to release if another holds it
            remove_empty_dirs(created)
    raise_shared(RunFolderInUse, in_use)
    raise_shared(OSError, problem)
    raise_shared(FileExistsError, unfit)
    return created, lock


def remove_empty_dirs(created: Sequence[Path]) -> None:
    """Remove the folders this run created (deepest first), if they are still empty."""
    for folder in created:
        try:
            folder.rmdir()  # only an empty folder: never anything another program put there
        except OSError:
            return


def check_data_files(cfg: Config) -> None:
    """Check what building the data would report less clearly: IDX labels must be ``0..K-1``."""
    d = cfg.data
    # IDX formats: their labels are checked before the data are built
    if DATA_FORMATS[d.dataset].idx_files and d.data_dir is not None:
        directory = Path(d.data_dir).expanduser()
        if directory.is_dir():  # a missing folder: building the data names data.data_dir
            check_idx_labels(directory)


def check_resumable(out: Path, cfg: Config, entries: Sequence[tuple[str, Method, str]]) -> None:
    """Refuse to resume over results or checkpoints written with another configuration."""
    for label, method, variant in entries:
        params = method.resolve_params(cfg.method_params.get(label, {}))
        stage = stage_of(cfg, method, params, variant)
        for seed in cfg.seeds:
            stage_fp = stage.fingerprint(cfg, seed)
            expected = method_fingerprint(cfg, label, method, params, stage_fp)
            rdir = run_dir_for(out, label, seed)
            found = None
            if (rdir / "result.json").is_file():
                found = read_json(rdir / "result.json").get("fingerprint")
            elif (rdir / "checkpoint.pt").is_file():
                found = load_checkpoint(rdir / "checkpoint.pt").get("fingerprint")
            if found is not None and found != expected:
                raise FileExistsError(
                    f"--resume: {rdir} was produced with a different configuration (data, model, "
                    "training recipe or hyper-parameters); use another --out"
                )


def default_out_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``, ... if that exists already)."""
    base = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def latest_out_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path | None:
    """The most recent ``runs/<name>-*`` run folder (``config.yaml`` and ``run.json``), if any."""
    base = Path(root)
    if not base.is_dir():
        return None
    cands = [p for p in base.glob(f"{name}-*") if _is_run_folder(p)]
    return max(cands, key=lambda p: (p.stat().st_mtime, p.name)) if cands else None


def describe_command(argv: Sequence[str] | None = None) -> str:
    """The command line as typed (``longtail ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["longtail", *(shlex.quote(a) for a in args)])
