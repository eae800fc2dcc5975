"""Errors that stopped too late or said too little (issue 23, point 4): each is found before
training and said in one line naming the file, key or flag, and what to do."""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from longtail.cli import main
from longtail.data import check_image_files, load_table
from longtail.engine.checkpoint import atomic_write_text
from longtail.engine.config import bundled_config_names
from longtail.engine.trainer import Trainer

COUNTS = {"ant": 6, "bee": 4, "cat": 3}


def _one_error(err: str, *needles: str) -> str:
    """The single ``error:`` line of ``err``; it must hold every needle; no traceback anywhere."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _config(tmp_path: Path, data: dict[str, Any], **extra: Any) -> Path:
    raw: dict[str, Any] = {
        "name": "early",
        "methods": ["erm"],
        "seeds": [0],
        "data": data,
        "model": {"arch": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "eval_every": 0, "num_threads": 1},
    }
    raw.update(extra)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bench(*args: str) -> list[str]:
    return ["bench", *args, "--no-progress", "--jobs", "1"]


# --------------------------------------------------------------- a. unreadable images, found first
def _images(
    folder: Path, counts: dict[str, int], suffix: str = ".png", seed: int = 0, size: int = 24
) -> None:
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(counts.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = (rng.random((8, 8, 3)) * 60).astype(np.uint8)
            a[..., k % 3] += 180
            Image.fromarray(a, "RGB").resize((size, size)).save(folder / name / f"{i}{suffix}")


def _cut(path: Path) -> Path:
    """``path`` cut in half: the header still parses, the pixel data end early."""
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def test_check_image_files_finds_what_a_header_does_not(tmp_path: Path) -> None:
    _images(tmp_path / "png", {"a": 2}, size=96)
    _images(tmp_path / "jpg", {"a": 2}, suffix=".jpg", size=96)
    good = sorted(str(p) for p in tmp_path.rglob("*.*"))
    check_image_files(good)  # readable files pass
    for path in (tmp_path / "png/a/0.png", tmp_path / "jpg/a/0.jpg"):
        _cut(path)
        with Image.open(path) as img:  # the header alone does not show it
            assert img.size == (96, 96)
    flipped = bytearray((tmp_path / "png/a/1.png").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "png/a/1.png").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"jpg/a/0\.jpg: cannot read the image") as exc:
        check_image_files(good)
    assert "2 more of the 4 image files cannot be read either" in str(exc.value)


@pytest.mark.parametrize("where", ["test", "train"])
def test_unreadable_image_stops_the_run_before_training(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    data = tmp_path / "imgs"
    _images(data / "train", COUNTS)
    _images(data / "test", {"ant": 2, "bee": 2, "cat": 2}, seed=1)
    # the last image of a class: outside the sample the standardisation statistics read
    bad = _cut(data / where / "cat" / ("2.png" if where == "train" else "1.png"))
    trained: list[str] = []
    real_fit = Trainer.fit

    def fit(self: Trainer, **kwargs: Any) -> Any:
        trained.append(self.label)
        return real_fit(self, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit)
    monkeypatch.setattr("longtail.engine.datasets.image_folder.IMAGE_STATS_SAMPLE", 1)
    cfg = _config(
        tmp_path,
        {"dataset": "image-folder", "imbalance_factor": None, "image_size": 8},
        model={"arch": "cnn", "channels": [4]},
    )
    out = tmp_path / "run"
    assert main(_bench(str(cfg), "--data-dir", str(data), "--out", str(out))) == 2
    _one_error(capsys.readouterr().err, str(bad), "cannot read the image")
    assert trained == []  # found before any training
    assert not out.exists()  # and before the run folder was made


# ------------------------------------------------------------ b. a full disk names the file, --resume
def _digits(tmp_path: Path) -> Path:
    return _config(
        tmp_path,
        {"dataset": "digits", "imbalance_factor": 10},
        train={"epochs": 2, "batch_size": 64, "lr": 0.05, "eval_every": 0, "num_threads": 1},
    )


def test_full_disk_names_the_file_and_says_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed: set[int] = set()
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        if Path(name).name.startswith(".checkpoint.pt."):
            doomed.add(fd)
        return fd, name

    def fsync(fd: int) -> None:  # the disk fills up while a checkpoint is written
        if fd in doomed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    cfg, out = _digits(tmp_path), tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", mkstemp)
        m.setattr(os, "fsync", fsync)
        assert main(_bench(str(cfg), "--out", str(out))) == 2
    line = _one_error(capsys.readouterr().err, "No space left on device", "--resume")
    checkpoints = list(out.rglob("checkpoint.pt"))
    assert str(out) in line and "checkpoint.pt" in line, line
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left
    assert checkpoints == []  # the write failed as a whole
    assert main(_bench(str(cfg), "--out", str(out), "--resume")) == 0  # what the line says
    assert (out / "results.json").is_file()


def test_atomic_write_error_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "results.json"
    with pytest.raises(OSError) as exc:
        atomic_write_text(target, "{}")
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------- c. two Mulan sets: the command-line words
_ARFF = "@relation r\n@attribute f numeric\n@attribute A {0,1}\n@attribute B {0,1}\n@data\n"
_ROWS = "".join(f"{i / 10},{i % 2},{(i // 2) % 2}\n" for i in range(12))


def _mulan(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}-train.arff").write_text(_ARFF + _ROWS)
        (folder / f"{name}-test.arff").write_text(_ARFF + _ROWS[:24])
        (folder / f"{name}.xml").write_text("<labels><label name='A'/><label name='B'/></labels>")
    return folder


def _multilabel(tmp_path: Path) -> Path:
    return _config(
        tmp_path,
        {"dataset": "mulan", "imbalance_factor": None},
        task="multi-label",
        methods=["bce"],
    )


def test_two_mulan_sets_say_the_set_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _mulan(tmp_path / "mulan", "yeast", "scene")
    cfg, out = _multilabel(tmp_path), tmp_path / "run"
    assert main(_bench(str(cfg), "--data-dir", str(folder), "--out", str(out))) == 2
    line = _one_error(
        capsys.readouterr().err,
        "data.mulan_name",
        str(folder),
        "scene, yeast",
        "--set data.mulan_name=NAME",
    )
    assert "name='NAME'" not in line  # the library's words, not a command-line user's
    assert not out.exists()
    args = ["--set", "data.mulan_name=yeast", "--epochs", "1"]
    assert main(_bench(str(cfg), "--data-dir", str(folder), "--out", str(out), *args)) == 0


def test_folder_without_a_mulan_set_names_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _mulan(tmp_path / "mulan", "scene")
    (folder / "scene.xml").unlink()
    cfg = _multilabel(tmp_path)
    assert main(_bench(str(cfg), "--data-dir", str(folder), "--out", str(tmp_path / "r"))) == 2
    _one_error(
        capsys.readouterr().err,
        f"data.data_dir: {folder} holds no Mulan set",
        "scene-test.arff, scene-train.arff",
    )


# ---------------------------------------------------- d. CSV files without rows, or not text at all
def _table(tmp_path: Path, path: Path) -> Path:
    data = {"dataset": "table", "path": str(path), "label_column": "label"}
    return _config(tmp_path, {**data, "imbalance_factor": None})


def test_header_only_csv_says_no_data_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f1,f2,label\n")
    with pytest.raises(
        ValueError, match=r"t\.csv: no data rows \(a header row only: f1, f2, label"
    ):
        load_table(path, label_column="label")
    assert main(_bench(str(_table(tmp_path, path)), "--out", str(tmp_path / "run"))) == 2
    line = _one_error(capsys.readouterr().err, str(path), "no data rows")
    assert "numeric feature" not in line


@pytest.mark.parametrize(
    ("blob", "says"),
    [
        (bytes(range(256)) * 4, "not a text CSV file (control byte 0x00 at byte 0)"),
        (b"f1,\x1b[31mlabel\x07\n1,2\n", "not a text CSV file (control byte 0x1b at byte 3)"),
        (b"PK\x03\x04\x14\x00\x06\x00", "not a text CSV file"),  # a spreadsheet (zip)
        # a control byte past the first 64 KiB, on a row of its own: the row is refused
        (b"f1,label\n" + b"1,2\n" * 30000 + b"\x00\x01", "line 30002 has 1 fields"),
    ],
    ids=["binary", "escape-codes", "zip", "late-control-byte"],
)
def test_binary_file_given_as_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], blob: bytes, says: str
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(blob)
    assert main(_bench(str(_table(tmp_path, path)), "--out", str(tmp_path / "run"))) == 2
    err = capsys.readouterr().err
    _one_error(err, str(path), says)
    assert not any(c < " " and c != "\n" for c in err), repr(err)  # no control byte echoed
    # the same for an image manifest
    cfg = _config(
        tmp_path,
        {"dataset": "image-manifest", "path": str(path), "label_column": "label"},
    )
    assert main(_bench(str(cfg), "--out", str(tmp_path / "run"))) == 2
    err = capsys.readouterr().err
    _one_error(err, str(path))
    assert not any(c < " " and c != "\n" for c in err), repr(err)


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("f1,label\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"latin1\.csv: not UTF-8 text .* save the CSV file as UTF-8"
    ):
        load_table(path, label_column="label")


# ------------------------------------------ e. --data-dir naming a file; --data-path naming a folder
def test_data_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "train-images-idx3-ubyte.gz"
    a_file.write_bytes(b"\x1f\x8b")
    cfg = _config(tmp_path, {"dataset": "fashion-mnist", "imbalance_factor": 2})
    out = tmp_path / "run"
    assert main(_bench(str(cfg), "--data-dir", str(a_file), "--out", str(out))) == 2
    line = _one_error(capsys.readouterr().err, str(a_file), "is a file, not a folder")
    assert "not found" not in line
    assert not out.exists()


def test_data_path_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tables.csv"
    folder.mkdir()
    cfg = _table(tmp_path, folder)
    assert main(_bench(str(cfg), "--out", str(tmp_path / "run"))) == 2
    _one_error(capsys.readouterr().err, f"data.path: {folder} is a folder, not a file")


def test_missing_data_dir_names_the_flag_and_the_fetch_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "shared" / "data" / "fashion-mnist"
    cfg = _config(tmp_path, {"dataset": "fashion-mnist", "data_dir": str(missing)})
    assert main(_bench(str(cfg), "--out", str(tmp_path / "run"))) == 2
    _one_error(
        capsys.readouterr().err,
        f"folder not found: {missing}",
        "--data-dir DIR",
        "longtail data fetch fashion-mnist --to DIR",
    )
    # data the command cannot fetch: only --data-dir
    cfg = _config(tmp_path, {"dataset": "image-folder", "data_dir": str(missing)})
    assert main(_bench(str(cfg), "--out", str(tmp_path / "run"))) == 2
    line = _one_error(capsys.readouterr().err, "--data-dir DIR")
    assert "fetch" not in line


# ------------------------------------------------- f. a misspelt bundled config lists the bundled
def test_misspelt_bundled_config_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_bench("fashion_mnst_lt")) == 2
    names = bundled_config_names()
    assert "fashion_mnist_lt" in names
    _one_error(
        capsys.readouterr().err,
        "config file not found: fashion_mnst_lt",
        f"bundled configs: {', '.join(names)}",
        "did you mean fashion_mnist_lt?",
    )
    assert main(["train", "nothing_like_it", "--no-progress"]) == 2
    line = _one_error(capsys.readouterr().err, "bundled configs: ")
    assert "did you mean" not in line


def test_misspelt_config_path_suggests_the_closest_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _config(tmp_path, {"dataset": "digits"})  # cfg.yaml
    assert main(_bench(str(tmp_path / "cgf.yaml"))) == 2
    _one_error(capsys.readouterr().err, f"did you mean {tmp_path / 'cfg.yaml'}?")


# ----------------------------------------------------------- g. an empty --out is not "no --out"
@pytest.mark.parametrize("flag", ["--out", "--data-dir", "--data-path"])
@pytest.mark.parametrize("command", ["bench", "train"])
def test_empty_path_flags_are_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = _digits(tmp_path)
    assert main([command, str(cfg), flag, "", "--no-progress"]) == 2
    _one_error(capsys.readouterr().err, f"{flag}: empty")
    assert not (tmp_path / "runs").exists()  # no default run folder either


# ------------------------------------------------- h. fp16 on a CPU: refused before any folder
@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on CUDA")
@pytest.mark.parametrize("command", ["bench", "train"])
def test_fp16_on_cpu_leaves_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    out = tmp_path / "runs" / "fp16"
    args = [command, str(_digits(tmp_path)), "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "train.precision=fp16"]) == 2
    _one_error(capsys.readouterr().err, "train.precision", "'fp16' needs CUDA")
    assert not (tmp_path / "runs").exists()  # no stub: neither the folder nor its parents


# ---------------------------------------------- i. j. notes go to standard error, as `note:` lines
def _rows_csv(path: Path, *, text_column: bool) -> Path:
    rng = np.random.default_rng(0)
    header = "f1,f2," + ("comment," if text_column else "") + "label"
    rows = []
    for i in range(48):
        label = i % 3
        words = f"row {i}," if text_column else ""
        rows.append(f"{rng.normal() + label:.3f},{rng.normal() - label:.3f},{words}{label}")
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_skipped_methods_note_goes_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # methods: all, cut down to erm and two methods that need images to stay small
    monkeypatch.setattr(
        "longtail.engine.runner.benchmark.method_names", lambda cfg: ["erm", "sla", "bs-cmo"]
    )
    cfg = _table(tmp_path, _rows_csv(tmp_path / "t.csv", text_column=False))
    args = _bench(str(cfg), "--out", str(tmp_path / "run"), "--set", "methods=all")
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.out, captured.out
    notes = [line for line in captured.err.splitlines() if line.startswith("note: skipped")]
    assert notes == [
        "note: skipped sla: needs images (SLA rotates and permutes them); the data are feature "
        "vectors",
        "note: skipped bs-cmo: needs images (CMO pastes a box of one image onto another); the "
        "data are feature vectors",
    ], captured.err


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_text_column_is_a_note_not_a_python_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str
) -> None:
    path = _rows_csv(tmp_path / "t.csv", text_column=True)
    if task == "multi-label":
        text = path.read_text().replace(",label\n", ",l0,l1\n", 1)
        lines = text.splitlines()
        lines[1:] = [
            f"{row[: row.rfind(',')]},{int(row[-1]) % 2},{int(row[-1]) // 2}" for row in lines[1:]
        ]
        path.write_text("\n".join(lines) + "\n")
        data = {"dataset": "table", "path": str(path), "label_columns": ["l0", "l1"]}
        cfg = _config(tmp_path, {**data, "imbalance_factor": None}, task=task, methods=["bce"])
    else:
        cfg = _table(tmp_path, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(_bench(str(cfg), "--out", str(tmp_path / "run"))) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {path}: non-numeric column(s) not used as features: comment"], err
    assert "UserWarning" not in err and "table.py" not in err
    raw = [w for w in caught if "comment" in str(w.message)]
    assert raw == [], [f"{w.category.__name__}: {w.message} ({w.filename})" for w in raw]
