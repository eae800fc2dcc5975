"""The command line's error contract (docs/cli.md): a user's mistake or a bad file ends with one line
``error: ...`` naming the key, file or value and exit code 2, never a traceback; the command never
writes into (or over) files it did not write; the files it writes follow the umask."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from data_fixtures import idx_bytes
from longtail.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _digits(tmp_path: Path, name: str = "tiny.yaml", **extra: Any) -> Path:
    """A config that trains erm on the bundled digits in about a second."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "methods": ["erm"],
        "seeds": [0],
        "data": {"dataset": "digits", "imbalance_factor": 10},
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "eval_every": 0, "num_threads": 1},
    }
    raw.update(extra)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _fashion(tmp_path: Path) -> Path:
    """A Fashion-MNIST config without data_dir (given with --data-dir)."""
    return _digits(
        tmp_path,
        name="fm.yaml",
        data={"dataset": "fashion-mnist", "imbalance_factor": 2},
    )


def _write_idx(
    folder: Path,
    *,
    train_labels: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    gz: bool = True,
) -> Path:
    """A small valid IDX folder (10 classes, 8x8 images); the labels can be replaced."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    y_train = np.repeat(np.arange(10), 12) if train_labels is None else train_labels
    y_test = np.repeat(np.arange(10), 3) if test_labels is None else test_labels
    for prefix, y in (("train", y_train), ("t10k", y_test)):
        x = rng.integers(0, 256, size=(len(y), 8, 8))
        for stem, blob in (
            (f"{prefix}-images-idx3-ubyte", idx_bytes(x)),
            (f"{prefix}-labels-idx1-ubyte", idx_bytes(y)),
        ):
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / stem).write_bytes(blob)
    return folder


def _one_error(err: str, *needles: str) -> str:
    """The single ``error:`` line of ``err``; it must hold every needle; no traceback anywhere."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _bench(*args: str) -> list[str]:
    return ["bench", *args, "--no-progress"]


# ------------------------------------------------------------------ 1. corrupt or lying data files
def _truncated_gzip(folder: Path) -> Path:
    path = folder / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def _huge_images_gz(folder: Path) -> Path:
    path = folder / "train-images-idx3-ubyte.gz"
    images = np.zeros((120, 8, 8), dtype=np.uint8)
    path.write_bytes(gzip.compress(idx_bytes(images, dims=(10**9, 8, 8))))
    return path


def _huge_labels_gz(folder: Path) -> Path:
    path = folder / "train-labels-idx1-ubyte.gz"
    labels = np.repeat(np.arange(10), 12)
    path.write_bytes(gzip.compress(idx_bytes(labels, dims=(10**9,))))
    return path


def _huge_images_raw(folder: Path) -> Path:
    (folder / "train-images-idx3-ubyte.gz").unlink()
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((120, 8, 8), dtype=np.uint8), dims=(10**9, 8, 8)))
    return path


@pytest.mark.parametrize(
    "corrupt", [_truncated_gzip, _huge_images_gz, _huge_labels_gz, _huge_images_raw]
)
def test_corrupt_or_lying_idx_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corrupt: Any
) -> None:
    folder = _write_idx(tmp_path / "fm")
    bad = corrupt(folder)
    out = tmp_path / "run"
    code = main(_bench(str(_fashion(tmp_path)), "--data-dir", str(folder), "--out", str(out)))
    assert code == 2
    _one_error(capsys.readouterr().err, str(bad))
    assert not out.exists()  # nothing was written for a run that could not start


# --------------------------------------------------------------------------- 2. unusable --out
def test_out_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "some_file"
    blocker.write_text("mine\n")
    out = blocker / "run"
    assert main(_bench(str(_digits(tmp_path)), "--out", str(out))) == 2
    _one_error(capsys.readouterr().err, str(out), f"{blocker} is a file")
    assert blocker.read_text() == "mine\n"


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "some_file"
    blocker.write_text("mine\n")
    assert main(_bench(str(_digits(tmp_path)), "--out", str(blocker))) == 2
    _one_error(capsys.readouterr().err, str(blocker), "is a file")
    assert blocker.read_text() == "mine\n"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_out_in_a_read_only_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        out = parent / "run"
        assert main(_bench(str(_digits(tmp_path)), "--out", str(out))) == 2
        _one_error(capsys.readouterr().err, str(out), "Permission denied")
    finally:
        parent.chmod(0o700)


# ------------------------------------------------------------------------- 3. bad config files
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x00\xff\xfe\x01\x80junk", "not a YAML file"),
        (b"\xff\xfename: x\n", "not UTF-8"),
        (b"- erm\n- focal\n", "expected a mapping at the top level, got list"),
        (b"", "is empty"),
        (b"# only a comment\n", "is empty"),
        (b"\tname: [x\n", "not valid YAML"),
        (b"name: [x\n", "not valid YAML"),
    ],
)
def test_bad_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(content)
    out = tmp_path / "run"
    assert main(_bench(str(cfg), "--out", str(out))) == 2
    _one_error(capsys.readouterr().err, str(cfg), says)
    assert not out.exists()


def test_config_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_bench(str(tmp_path), "--out", str(tmp_path / "run"))) == 2
    _one_error(capsys.readouterr().err, str(tmp_path), "is a folder")


# -------------------------------------------------------------- 4. a label far outside the others
def test_label_far_outside_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.repeat(np.arange(10), 12)
    labels[5] = 200
    folder = _write_idx(tmp_path / "fm", train_labels=labels)
    out = tmp_path / "run"
    code = main(_bench(str(_fashion(tmp_path)), "--data-dir", str(folder), "--out", str(out)))
    assert code == 2
    line = _one_error(
        capsys.readouterr().err,
        str(folder / "train-labels-idx1-ubyte.gz"),
        "label 200",
        "1 sample",
    )
    assert "10-199" in line  # the classes that would be empty
    assert not out.exists()


def test_test_label_outside_the_training_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = np.repeat(np.arange(10), 3)
    labels[:2] = 17
    folder = _write_idx(tmp_path / "fm", test_labels=labels, gz=False)
    out = tmp_path / "run"
    code = main(_bench(str(_fashion(tmp_path)), "--data-dir", str(folder), "--out", str(out)))
    assert code == 2
    assert not out.exists()
    _one_error(
        capsys.readouterr().err, str(folder / "t10k-labels-idx1-ubyte"), "label 17", "2 test"
    )


# ------------------------------------------------------------ 5. a folder of the user's own files
@pytest.mark.parametrize("resume", [False, True])
def test_out_holding_the_users_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], resume: bool
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    (out / "config.yaml").write_text("name: my_own\n")  # a config.yaml without our run.json
    args = _bench(str(_digits(tmp_path)), "--out", str(out)) + (["--resume"] if resume else [])
    assert main(args) == 2
    _one_error(capsys.readouterr().err, str(out), "not a run folder", "report.md")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "report.md"]
    assert (out / "report.md").read_text() == "my notes\n"
    assert (out / "config.yaml").read_text() == "name: my_own\n"


def test_empty_folder_and_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    cfg = _digits(tmp_path)
    assert main(_bench(str(cfg), "--out", str(out))) == 0
    assert (out / "results.json").is_file()
    capsys.readouterr()
    # a run folder without --resume: refused as before, left as it was
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(_bench(str(cfg), "--out", str(out))) == 2
    _one_error(capsys.readouterr().err, str(out), "already holds a run", "--resume")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------- 6. a failed start, retried
def test_retry_after_a_failed_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "mine"
    missing = tmp_path / "no-such-folder"
    fm = _fashion(tmp_path)
    assert main(_bench(str(fm), "--data-dir", str(missing), "--out", str(out))) == 2
    _one_error(capsys.readouterr().err, str(missing))
    assert not (tmp_path / "runs").exists()  # the folders it created are gone again
    folder = _write_idx(tmp_path / "fm")
    assert main(_bench(str(fm), "--data-dir", str(folder), "--out", str(out))) == 0
    assert json.loads((out / "results.json").read_text())["methods"].keys() == {"erm"}


def test_retry_after_a_start_that_failed_in_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that failed after config.yaml / run.json were written, before any result."""
    from longtail.engine.trainer import Trainer

    def fail(self: Trainer, **kwargs: Any) -> Any:
        raise ValueError("model: something the data did not fit")

    cfg = _digits(tmp_path)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(Trainer, "fit", fail)
        assert main(_bench(str(cfg), "--out", str(out))) == 2
    _one_error(capsys.readouterr().err, "something the data did not fit")
    assert {"config.yaml", "run.json"} <= {p.name for p in out.iterdir()}
    assert main(_bench(str(cfg), "--out", str(out))) == 0  # no "already holds a run"
    assert (out / "results.json").is_file()


# -------------------------------------------------------------- 7. the balanced reference, opt-in
@pytest.mark.slow
def test_balanced_reference_is_opt_in_with_methods(tmp_path: Path) -> None:
    data = {"dataset": "digits", "imbalance_factor": 10, "balanced_reference": True}
    cfg = str(_digits(tmp_path, data=data))

    def methods(*extra: str) -> list[str]:
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        assert main(_bench(cfg, "--out", str(out), *extra)) == 0
        return list(json.loads((out / "results.json").read_text())["methods"])

    assert methods() == ["erm", "balanced"]  # the config's choice
    assert methods("--methods", "erm") == ["erm"]
    assert methods("--methods", "erm", "--reference") == ["erm", "balanced"]
    assert methods("--no-reference") == ["erm"]


def test_reference_flags_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--reference", "--no-reference"])
    assert exc.value.code == 2


# ------------------------------------------------------- 8. --epochs below the config's warm-up
def test_epochs_below_the_warmup_lowers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {"epochs": 3, "warmup_epochs": 1, "batch_size": 32, "eval_every": 0, "num_threads": 1}
    cfg = _digits(tmp_path, train=train)
    out = tmp_path / "run"
    assert main(_bench(str(cfg), "--epochs", "1", "--out", str(out))) == 0
    err = capsys.readouterr().err
    assert "error:" not in err and "Traceback" not in err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "train.warmup_epochs lowered from 1 to 0" in notes[0], err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["train"]["warmup_epochs"] == 0


def test_warmup_set_by_the_user_is_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _digits(tmp_path)
    out = tmp_path / "run"
    args = _bench(str(cfg), "--epochs", "1", "--set", "train.warmup_epochs=1", "--out", str(out))
    assert main(args) == 2
    assert not out.exists()
    _one_error(capsys.readouterr().err, "train.warmup_epochs")


def test_bundled_config_with_epochs_1_loads() -> None:
    from longtail.engine.config import ConfigError, load_config

    notices: list[str] = []
    overrides = {"train.epochs": 1, "data.data_dir": "unused"}
    cfg = load_config("fashion_mnist_lt", overrides, notices=notices)
    assert cfg.train.warmup_epochs == 0 and len(notices) == 1
    with pytest.raises(ConfigError, match=r"train\.warmup_epochs"):  # the library still refuses
        load_config("fashion_mnist_lt", overrides)


# ------------------------------------------------------------------------ 9. a reader that left
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(PYTHONPATH=str(REPO_ROOT / "src"), **extra)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("unbuffered", [False, True])
@pytest.mark.parametrize("args", [["methods"], ["methods", "--task", "multi-label"]])
def test_closed_pipe_prints_nothing(unbuffered: bool, args: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the first line (`longtail methods | head -0`)
    try:
        env = _env(PYTHONUNBUFFERED="1") if unbuffered else _env()
        proc = subprocess.run(
            [sys.executable, "-m", "longtail", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0
    assert proc.stderr == ""  # no "Exception ignored ... BrokenPipeError", no traceback


@pytest.mark.slow
def test_pipe_into_head() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m longtail methods | head -1",
        shell=True,
        capture_output=True,
        env=_env(),
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("erm ") and proc.stdout.count("\n") == 1
    assert proc.stderr == ""


# ---------------------------------------------------------------------------------- 10. umask
@pytest.mark.slow
def test_files_follow_the_umask(tmp_path: Path) -> None:
    cfg = _digits(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "longtail", "bench", str(cfg), "--out", str(out), "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o027),
    )
    assert proc.returncode == 0, proc.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"results.json", "report.md", "config.yaml", "run.json", "model.pt"} <= names
    assert {"checkpoint.pt", "log.csv", "training_curves.png"} <= names
    modes = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o640"}, modes


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_uses_the_current_umask(tmp_path: Path, mask: int, mode: int) -> None:
    from longtail.engine.checkpoint import atomic_write_text

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode


# ------------------------------------------------------------------- 11. one line under torchrun
@pytest.mark.distributed
@pytest.mark.slow
def test_torchrun_prints_the_error_once(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    cfg = _digits(tmp_path, data={"dataset": "fashion-mnist", "data_dir": str(missing)})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "longtail",
            "train",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        env=_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(missing) in lines[0], proc.stderr
    # the launcher prints its own report (ChildFailedError); nothing of ours is a traceback
    frames = [line for line in proc.stderr.splitlines() if line.strip().startswith('File "')]
    ours = [f for f in frames if f"{os.sep}longtail{os.sep}" in f and "site-packages" not in f]
    assert not ours, proc.stderr
    assert not (tmp_path / "run").exists()
