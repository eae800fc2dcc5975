"""Your own data: image folders (lazy), tables (csv / npz / parquet), .mat files, model.factory."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from longtail.cli import main
from longtail.data import ImageFolderDataset, image_channel_stats, load_table, scan_image_folder
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.datasets import build_data, stratified_split, write_split
from longtail.engine.report import _profile
from longtail.engine.trainer import Trainer
from longtail.tracks.multi_label.task import build_multilabel_data
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import SingleLabelTask

COUNTS = {"ant": 10, "bee": 6, "cat": 3}


def _png_folder(
    root: Path, counts: dict[str, int], *, size: tuple[int, int] = (8, 8), seed: int = 0
) -> None:
    """RGB PNGs, class k brighter in channel k (learnable), one folder per class."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(counts.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = (rng.random((size[1], size[0], 3)) * 60).astype(np.uint8)
            a[..., k % 3] += 180
            Image.fromarray(a, "RGB").save(d / f"img{i}.png")


def _table_columns(n: int = 60, seed: int = 0) -> dict[str, Any]:
    """60 rows: two informative features, a text column, labels 'x' (head) .. 'z' (tail)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["x"] * 36 + ["y"] * 16 + ["z"] * 8)[:n]
    shift = np.array([{"x": 0.0, "y": 2.0, "z": 4.0}[v] for v in labels])
    return {
        "f1": rng.normal(size=n) + shift,
        "f2": rng.normal(size=n) - shift,
        "note": np.array([f"row{i}" for i in range(n)]),
        "label": labels,
    }


def _write_csv(path: Path, cols: dict[str, Any], missing: tuple[int, str] | None = None) -> Path:
    names = list(cols)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(len(cols[names[0]])):
            row = [str(cols[c][i]) for c in names]
            if missing is not None and missing[0] == i:
                row[names.index(missing[1])] = ""
            w.writerow(row)
    return path


def _config(tmp_path: Path, data: dict[str, Any], **extra: Any) -> Path:
    raw: dict[str, Any] = {
        "name": "own",
        "methods": ["erm"],
        "seeds": [0],
        "data": data,
        "model": {"arch": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "num_threads": 1},
    }
    raw.update(extra)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _bench(cfg: Path, out: Path, *args: str) -> int:
    return main(["bench", str(cfg), "--out", str(out), "--no-progress", *args])


# --------------------------------------------------------------------------------------------------
# image folders


def test_scan_sorts_classes_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    _png_folder(tmp_path, {"zebra": 2, "apple": 1, "mango": 1})
    (tmp_path / "apple" / ".hidden.png").write_bytes(b"not an image")
    (tmp_path / "apple" / "notes.txt").write_text("skip me")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "mango" / "nested").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "mango" / "nested" / "deep.JPG")
    samples, names = scan_image_folder(tmp_path)
    assert names == ["apple", "mango", "zebra"]
    files = [Path(p).relative_to(tmp_path).as_posix() for p, _ in samples]
    assert files == [
        "apple/img0.png",
        "mango/img0.png",
        "mango/nested/deep.JPG",
        "zebra/img0.png",
        "zebra/img1.png",
    ]
    assert [t for _, t in samples] == [0, 1, 1, 2, 2]
    ds = ImageFolderDataset(tmp_path, 8, 3)
    assert ds.class_names == names and ds.targets.dtype == torch.int64
    assert ds.targets.tolist() == [0, 1, 1, 2, 2]


def test_scan_errors_name_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        scan_image_folder(tmp_path)
    _png_folder(tmp_path / "t", {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="'b' is not one of the training classes"):
        scan_image_folder(tmp_path / "t", class_names=["a"])
    with pytest.raises(FileNotFoundError):
        scan_image_folder(tmp_path / "missing")


def test_dataset_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _png_folder(tmp_path, COUNTS)
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    ds = ImageFolderDataset(tmp_path, 8, 3)
    assert opened == [] and len(ds) == sum(COUNTS.values())
    # nothing decoded is held: the only tensor is the label vector
    held = [k for k, v in vars(ds).items() if isinstance(v, torch.Tensor)]
    assert held == ["targets"]
    x, y = ds[4]
    assert opened == [ds.samples[4][0]] and y == ds.samples[4][1]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32


def test_channels_and_size_conversion(tmp_path: Path) -> None:
    _png_folder(tmp_path, {"a": 2}, size=(12, 10))
    path = Path(scan_image_folder(tmp_path)[0][0][0])
    grey = ImageFolderDataset(tmp_path, 6, 1)
    x, _ = grey[0]
    assert x.shape == (1, 6, 6)
    expected = Image.open(path).convert("L").resize((6, 6), Image.Resampling.BILINEAR)
    assert torch.equal(x[0], torch.from_numpy(np.array(expected)).float() / 255)
    # grey images become 3 identical channels
    Image.new("L", (5, 5), color=128).save(tmp_path / "a" / "grey.png")
    rgb = ImageFolderDataset(tmp_path, 5, 3)
    i = [Path(p).name for p, _ in rgb.samples].index("grey.png")
    g, _ = rgb[i]
    assert g.shape == (3, 5, 5) and torch.allclose(g, torch.full_like(g, 128 / 255))


def test_channel_stats_and_standardisation(tmp_path: Path) -> None:
    _png_folder(tmp_path, COUNTS)
    ds = ImageFolderDataset(tmp_path, 8, 3)
    mean, std = image_channel_stats(ds)
    pixels = torch.stack([ds.load(i) for i in range(len(ds))])
    assert torch.allclose(mean, pixels.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(std, pixels.std(dim=(0, 2, 3), unbiased=False), atol=1e-5)
    sub_mean, _ = image_channel_stats(ds, max_images=5, seed=1)
    assert torch.equal(sub_mean, image_channel_stats(ds, max_images=5, seed=1)[0])
    ds.set_normalization(mean, std)
    x, _ = ds[0]
    assert torch.allclose(x, (ds.load(0) - mean.view(3, 1, 1)) / std.view(3, 1, 1))


def test_image_folder_without_test_split_and_natural_tail(tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    _png_folder(data / "train", COUNTS)
    raw = {
        "dataset": "image-folder",
        "data_dir": str(data),
        "imbalance_factor": None,
        "image_size": 8,
        "test_fraction": 0.3,
    }
    cfg = config_from_dict({"data": raw})
    bundle = build_data(cfg.data)
    assert bundle.lazy and bundle.is_image and bundle.input_shape == (3, 8, 8)
    assert bundle.train_x.numel() == 0  # placeholder: nothing decoded in memory
    # stratified: every class in both parts, round(0.3 * n) test images
    assert bundle.class_counts == [7, 4, 2]
    assert torch.bincount(bundle.test_y).tolist() == [3, 2, 1]
    assert bundle.split is not None and bundle.split["num_test"] == 6
    test_files = bundle.split["test"]
    assert all(f.startswith("train/") for f in test_files)
    assert sorted(f.split("/")[1] for f in test_files) == ["ant"] * 3 + ["bee"] * 2 + ["cat"]
    again = build_data(cfg.data)
    assert again.split == bundle.split  # seeded
    other = build_data(config_from_dict({"data": {**raw, "subset_seed": 1}}).data)
    assert other.split is not None and other.split["test"] != test_files
    written = write_split(bundle, tmp_path)
    assert written == tmp_path / "split.json"
    assert json.loads(written.read_text())["test"] == test_files

    out = tmp_path / "run"
    c = _config(
        tmp_path,
        {k: v for k, v in raw.items() if k != "data_dir"},
        model={"arch": "cnn", "channels": [4, 8]},
    )
    assert _bench(c, out, "--data-dir", str(data)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["ant", "bee", "cat"]
    assert results["class_counts"] == [7, 4, 2]
    assert results["num_train"] == 13 and results["num_test"] == 6
    assert json.loads((out / "split.json").read_text())["test"] == test_files
    report = (out / "report.md").read_text()
    assert "real imbalance factor 3.5" in report and "by terciles" in report
    assert "stratified hold-out" in report


def test_image_folder_with_test_folder_and_grey_conversion(tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    _png_folder(data / "train", COUNTS, size=(10, 10))
    _png_folder(data / "test", {"ant": 2, "bee": 2, "cat": 2}, seed=1)
    cfg = config_from_dict(
        {
            "data": {
                "dataset": "image-folder",
                "data_dir": str(data),
                "imbalance_factor": None,
                "image_size": 6,
                "channels": 1,
            }
        }
    )
    bundle = build_data(cfg.data)
    assert bundle.split is None
    assert bundle.input_shape == (1, 6, 6)
    assert bundle.class_counts == list(COUNTS.values())
    assert bundle.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    x, _ = bundle.eval_datasets["test"][0]
    assert x.shape == (1, 6, 6)
    # a test class the training folder does not have
    _png_folder(data / "test", {"dog": 1})
    with pytest.raises(ValueError, match="'dog' is not one of the training classes"):
        build_data(cfg.data)


def _train(bundle: Any, raw: dict[str, Any], epochs: int = 2) -> Any:
    cfg = config_from_dict(
        {
            "data": raw,
            "model": {"arch": "cnn", "channels": [4, 8]},
            "train": {"epochs": epochs, "batch_size": 4, "lr": 0.05, "num_threads": 1},
        }
    )
    task = SingleLabelTask(METHODS["erm"], bundle, cfg)
    return Trainer(task, bundle, cfg, seed=0).fit()


def test_lazy_training_reads_each_image_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "imgs"
    _png_folder(data / "train", COUNTS)
    _png_folder(data / "test", {"ant": 2, "bee": 2, "cat": 2}, seed=1)
    raw = {"dataset": "image-folder", "data_dir": str(data), "imbalance_factor": None}
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    bundle = build_data(config_from_dict({"data": raw}).data)
    n_train, n_test = len(bundle.train_y), len(bundle.test_y)
    assert len(opened) == 2 * n_train + n_test  # the check of every file, the standardisation
    opened.clear()
    result = _train(bundle, raw, epochs=2)
    # 2 epochs of training, evaluation after each epoch and once at the end
    assert len(opened) == 2 * n_train + 3 * n_test
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


@pytest.mark.slow
def test_lazy_training_is_the_same_with_workers(tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    _png_folder(data / "train", COUNTS)
    raw = {"dataset": "image-folder", "data_dir": str(data), "imbalance_factor": None}
    runs = []
    for workers in (0, 2):
        r = {**raw, "num_workers": workers}
        bundle = build_data(config_from_dict({"data": r}).data)
        assert bundle.num_workers == workers
        runs.append(_train(bundle, r))
    assert runs[0].metrics == runs[1].metrics
    for k, v in runs[0].model_state.items():
        assert torch.equal(v, runs[1].model_state[k]), k


def test_corrupt_png_exit_code_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "imgs"
    _png_folder(data / "train", COUNTS)
    bad = data / "train" / "bee" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    cfg = _config(
        tmp_path,
        {"dataset": "image-folder", "imbalance_factor": None, "image_size": 8},
        model={"arch": "cnn", "channels": [4]},
    )
    assert _bench(cfg, tmp_path / "run", "--data-dir", str(data)) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "cannot read the image" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# tables and .mat


def test_stratified_split() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3])
    tr, te = stratified_split(labels, 0.2, seed=0)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[te], minlength=4).tolist() == [2, 1, 1, 0]
    assert torch.bincount(labels[tr], minlength=4).tolist() == [8, 4, 1, 1]
    tr2, te2 = stratified_split(labels, 0.2, seed=0)
    assert torch.equal(te, te2) and torch.equal(tr, tr2)
    assert not torch.equal(te, stratified_split(labels, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(labels, 1.0, seed=0)


def test_csv_single_label(tmp_path: Path) -> None:
    cols = _table_columns()
    path = _write_csv(tmp_path / "t.csv", cols, missing=(5, "f2"))
    with pytest.warns(UserWarning, match="note"):
        table = load_table(path, label_column="label")
    assert table.class_names == ("x", "y", "z")
    assert table.feature_names == ("f1", "f2") and table.skipped == ("note",)
    assert math.isnan(float(table.data[5, 1]))
    cfg = _config(
        tmp_path,
        {
            "dataset": "table",
            "label_column": "label",
            "imbalance_factor": None,
            "test_fraction": 0.25,
        },
    )
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert _bench(cfg, out, "--data-path", str(path)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["x", "y", "z"]
    assert results["class_counts"] == [27, 12, 6]
    assert results["num_train"] + results["num_test"] == 60
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["path"] == str(path)
    report = (out / "report.md").read_text()
    assert "real imbalance factor 4.5" in report and "by terciles" in report
    assert "1 many, 1 medium, 1 few" in report  # the grouping the table uses


def test_table_features_are_standardised_and_imputed(tmp_path: Path) -> None:
    cols = _table_columns()
    path = _write_csv(tmp_path / "t.csv", cols, missing=(5, "f2"))
    raw = {"dataset": "table", "path": str(path), "label_column": "label", "imbalance_factor": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bundle = build_data(config_from_dict({"data": raw}).data)
    assert bundle.input_shape == (2,) and not bundle.lazy
    assert torch.allclose(bundle.train_x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.isfinite(bundle.train_x).all() and torch.isfinite(bundle.test_x).all()
    assert bundle.split is not None and bundle.split["entries"].startswith("row indices")
    test_rows = bundle.split["test"]
    assert len(test_rows) == len(bundle.test_y) == 30
    labels = np.array(cols["label"])
    assert sorted(labels[test_rows].tolist()) == sorted(
        ["x"] * 18 + ["y"] * 8 + ["z"] * 4
    )  # half of each class


def _npz_and_parquet_runs(tmp_path: Path, suffix: str) -> dict[str, Any]:
    cfg = _config(
        tmp_path,
        {"dataset": "table", "label_column": "label", "imbalance_factor": None},
    )
    out = tmp_path / f"run{suffix.replace('.', '_')}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert _bench(cfg, out, "--data-path", str(tmp_path / f"t{suffix}")) == 0
    return dict(json.loads((out / "results.json").read_text()))


def test_npz_single_label_both_conventions(tmp_path: Path) -> None:
    cols = _table_columns()
    x = np.stack([cols["f1"], cols["f2"]], axis=1)
    y = np.searchsorted(np.array(["x", "y", "z"]), cols["label"]) + 1  # integer labels 1..3
    np.savez(tmp_path / "t.npz", x=x, label=y)
    results = _npz_and_parquet_runs(tmp_path, ".npz")
    assert results["class_names"] == ["1", "2", "3"]
    assert results["class_counts"] == [18, 8, 4]  # test_fraction 0.5
    # one array per column, text labels
    np.savez(tmp_path / "c.npz", f1=cols["f1"], f2=cols["f2"], label=cols["label"])
    table = load_table(tmp_path / "c.npz", label_column="label")
    assert table.feature_names == ("f1", "f2") and table.class_names == ("x", "y", "z")
    twod = load_table(tmp_path / "t.npz", label_column="label")
    assert twod.feature_names == ("x[0]", "x[1]")
    assert torch.allclose(twod.data, torch.from_numpy(x).float())


def test_parquet_single_label(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cols = _table_columns()
    f1 = [None if i == 3 else float(v) for i, v in enumerate(cols["f1"])]
    table = pa.table(
        {"f1": f1, "f2": cols["f2"], "note": list(cols["note"]), "label": list(cols["label"])}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.warns(UserWarning, match="note"):
        loaded = load_table(tmp_path / "t.parquet", label_column="label")
    assert math.isnan(float(loaded.data[3, 0])) and loaded.class_names == ("x", "y", "z")
    results = _npz_and_parquet_runs(tmp_path, ".parquet")
    assert results["class_names"] == ["x", "y", "z"]
    assert results["class_counts"] == [18, 8, 4]


def test_table_errors_name_column_and_row(tmp_path: Path) -> None:
    cols = _table_columns()
    path = _write_csv(tmp_path / "t.csv", cols, missing=(7, "label"))
    with pytest.raises(ValueError, match=r"label column 'label' is missing at data row 8"):
        load_table(path, label_column="label")
    with pytest.raises(ValueError, match="no column 'nope'"):
        load_table(path, label_column="nope")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3 has 1 fields"):
        load_table(bad, label_column="b")
    ml = tmp_path / "ml.csv"
    ml.write_text("f,l1,l2\n0.5,1,0\n0.1,2,1\n")
    with pytest.raises(ValueError, match=r"'l1' has the value 2 at data row 2"):
        load_table(ml, label_columns=["l1", "l2"])
    floats = tmp_path / "floats.csv"
    floats.write_text("f,y\n1,0.5\n2,1\n")
    with pytest.raises(ValueError, match=r"non-integer value 0\.5 at data row 1"):
        load_table(floats, label_column="y")


def test_csv_multi_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 60
    y = (rng.random((n, 3)) < [0.5, 0.3, 0.15]).astype(int)
    y[:3] = 1  # every label has positives
    x = rng.normal(size=(n, 4)) + 1.5 * np.pad(y, ((0, 0), (0, 1)))
    path = tmp_path / "ml.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "sky", "sea", "sand"])
        for i in range(n):
            labels = [str(v) for v in y[i]]
            if i == 10:
                labels[1] = ""  # unknown
            w.writerow([f"{v:.4f}" for v in x[i]] + labels)
    table = load_table(path, label_columns=["sky", "sea", "sand"])
    assert table.targets.shape == (n, 3) and float(table.targets[10, 1]) == -1.0
    assert table.feature_names == ("a", "b", "c", "d")
    raw = {
        "dataset": "table",
        "label_columns": ["sky", "sea", "sand"],
        "imbalance_factor": None,
        "test_fraction": 0.25,
    }
    cfg = _config(tmp_path, raw, task="multi-label", methods=["bce", "rfs"])
    out = tmp_path / "run"
    assert _bench(cfg, out, "--data-path", str(path)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "multi-label" and results["class_names"] == ["sky", "sea", "sand"]
    assert results["num_train"] == 45 and results["num_test"] == 15
    assert set(results["methods"]) == {"bce", "rfs"}
    bundle = build_multilabel_data(
        config_from_dict({"task": "multi-label", "data": {**raw, "path": str(path)}}).data
    )
    assert bundle.split is not None and len(bundle.split["test"]) == 15
    assert bundle.split["method"] == "random"
    with pytest.raises(ConfigError, match=r"data\.imbalance_factor"):
        config_from_dict(
            {"task": "multi-label", "data": {**raw, "path": str(path), "imbalance_factor": 10}}
        )


def test_mat_with_named_variables(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    cols = _table_columns()
    x = np.stack([cols["f1"], cols["f2"]], axis=1)
    y = (np.searchsorted(np.array(["x", "y", "z"]), cols["label"]) * 2 + 1).reshape(-1, 1)
    scipy_io.savemat(tmp_path / "d.mat", {"inputs": x, "classes": y.astype(float)})
    cfg = _config(
        tmp_path,
        {
            "dataset": "mat",
            "path": str(tmp_path / "d.mat"),
            "x_key": "inputs",
            "y_key": "classes",
            "imbalance_factor": None,
        },
    )
    out = tmp_path / "run"
    assert _bench(cfg, out) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["1", "3", "5"] and results["class_counts"] == [18, 8, 4]
    # a long-tailed subset of the training pool works on own data too
    data = {**yaml.safe_load(cfg.read_text())["data"], "imbalance_factor": 4, "max_per_class": 8}
    bundle = build_data(config_from_dict({"data": data}).data)
    assert bundle.class_counts == [8, 4, 2] and len(bundle.test_y) == 30


# --------------------------------------------------------------------------------------------------
# the shipped configs run with --data-dir / --data-path only

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_table_config_runs_with_data_path_only(tmp_path: Path) -> None:
    cols = _table_columns()
    cols.pop("note")
    path = _write_csv(tmp_path / "t.csv", cols)
    out = tmp_path / "run"
    args = ["--data-path", str(path), "--methods", "erm,crt", "--seeds", "0", "--epochs", "1"]
    assert _bench(REPO_ROOT / "configs" / "table.yaml", out, *args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "table" and results["class_counts"] == [29, 13, 6]


def test_image_folder_config_runs_with_data_dir_only(tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    _png_folder(data / "train", COUNTS)
    out = tmp_path / "run"
    args = ["--data-dir", str(data), "--methods", "erm", "--seeds", "0", "--epochs", "1"]
    assert _bench(REPO_ROOT / "configs" / "image_folder.yaml", out, *args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "image-folder" and results["class_names"] == list(COUNTS)
    assert results["class_counts"] == [8, 5, 2]


# --------------------------------------------------------------------------------------------------
# config validation


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dataset": "table", "label_column": "y"}, "data.path"),
        ({"dataset": "table", "path": "t.csv"}, "data.label_column"),
        ({"dataset": "table", "path": "t.txt", "label_column": "y"}, "data.path"),
        ({"dataset": "mat", "path": "d.csv"}, "data.path"),
        (
            {"dataset": "table", "path": "t.csv", "label_column": "y", "data_dir": "x"},
            "data.data_dir",
        ),
        ({"dataset": "table", "path": "t.csv", "label_columns": ["a"]}, "data.label_columns"),
        ({"dataset": "digits", "path": "t.csv"}, "data.path"),
        ({"dataset": "digits", "image_size": 8}, "data.image_size"),
        ({"dataset": "digits", "num_workers": 2}, "data.num_workers"),
        ({"dataset": "digits", "x_key": "X"}, "data.x_key"),
        ({"dataset": "image-folder", "data_dir": "d", "channels": 2}, "data.channels"),
        ({"dataset": "image-folder"}, "data.data_dir"),
    ],
)
def test_own_data_config_errors_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict({"data": data})


# --------------------------------------------------------------------------------------------------
# model.factory

FACTORY_MODULE = """
import torch
from torch import nn


def plain(num_classes, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(2, width), nn.ReLU(), nn.Linear(width, num_classes))


class WithHead(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(2, 8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def wrong_outputs(num_classes):
    return nn.Linear(2, num_classes + 1)


def not_a_module(num_classes):
    return "model"
"""


@pytest.fixture
def factory_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_models_lt.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cols = _table_columns()
    cols.pop("note")
    return _write_csv(tmp_path / "t.csv", cols)


def _factory_config(tmp_path: Path, path: Path, methods: list[str], **model: Any) -> Path:
    return _config(
        tmp_path,
        {"dataset": "table", "label_column": "label", "imbalance_factor": None},
        methods=methods,
        model=model,
    )


def test_model_factory_trains_the_given_network(tmp_path: Path, factory_data: Path) -> None:
    cfg = _factory_config(
        tmp_path,
        factory_data,
        ["erm", "la-posthoc"],
        factory="my_models_lt:plain",
        kwargs={"width": 4},
    )
    out = tmp_path / "run"
    assert _bench(cfg, out, "--data-path", str(factory_data)) == 0
    state = torch.load(out / "erm" / "seed_0" / "model.pt", weights_only=True)
    state = state.get("model", state)
    assert {tuple(v.shape) for v in state.values()} == {(4, 2), (4,), (3, 4), (3,)}
    assert "my_models_lt:plain" in (out / "report.md").read_text()
    # methods that retrain or normalise the head work with a module that has one
    cfg = _factory_config(
        tmp_path, factory_data, ["erm", "crt", "tau-norm"], factory="my_models_lt:WithHead"
    )
    assert _bench(cfg, tmp_path / "run2", "--data-path", str(factory_data)) == 0


@pytest.mark.parametrize(
    ("methods", "factory", "message"),
    [
        (["erm"], "my_models_lt", "config key 'model.factory': expected 'package.module:callable'"),
        (["erm"], "no_such_pkg_lt.models:make", "cannot import module 'no_such_pkg_lt.models'"),
        (["erm"], "my_models_lt:missing", "module 'my_models_lt' has no attribute 'missing'"),
        (["erm"], "my_models_lt:not_a_module", "expected a torch.nn.Module"),
        (["erm"], "my_models_lt:wrong_outputs", "model.factory: the Linear of my_models_lt"),
        (["crt"], "my_models_lt:plain", "config key 'model.factory': method 'crt'"),
        (["tau-norm"], "my_models_lt:plain", "config key 'model.factory': method 'tau-norm'"),
        (["ldam-drw"], "my_models_lt:WithHead", "config key 'model.factory': method 'ldam-drw'"),
    ],
)
def test_model_factory_errors(
    tmp_path: Path,
    factory_data: Path,
    capsys: pytest.CaptureFixture[str],
    methods: list[str],
    factory: str,
    message: str,
) -> None:
    cfg = _factory_config(tmp_path, factory_data, methods, factory=factory)
    assert _bench(cfg, tmp_path / "run", "--data-path", str(factory_data)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_factory_config_checks() -> None:
    with pytest.raises(ConfigError, match=r"model\.kwargs"):
        config_from_dict({"model": {"kwargs": {"width": 3}}})
    with pytest.raises(ConfigError, match=r"model\.arch"):
        config_from_dict({"model": {"factory": "a.b:c", "arch": "mlp"}})
    with pytest.raises(ConfigError, match=r"model\.kwargs\.num_classes"):
        config_from_dict({"model": {"factory": "a.b:c", "kwargs": {"num_classes": 3}}})
    with pytest.raises(ConfigError, match=r"model\.factory"):
        config_from_dict({"model": {"factory": "a b:c"}})


# --------------------------------------------------------------------------------------------------
# the report on a natural long tail


def test_natural_tail_text_names_the_tables_grouping() -> None:
    text = _profile([300, 150, 40, 25, 5], "thresholds")
    assert "real imbalance factor 60" in text and "usual thresholds" in text
    assert "2 many, 2 medium, 1 few" in text
    text = _profile([12, 6, 3], "terciles")
    assert "real imbalance factor 4" in text and "terciles" in text
    assert "1 many, 1 medium, 1 few" in text
