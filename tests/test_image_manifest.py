"""``data.dataset: image-manifest``: a CSV of image paths and labels (tags, 0/1 columns or a class),
read lazily like image folders; its splits, its unknowns and its one-line errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from longtail.cli import main
from longtail.data import ImageFilesDataset, read_image_manifest
from longtail.engine.config import ConfigError, config_from_dict
from longtail.engine.datasets import build_data
from longtail.tracks.multi_label.task import build_multilabel_data

REPO_ROOT = Path(__file__).resolve().parents[1]
#: 24 images: tags and the colour that makes them learnable (red: channel 0, blue: channel 2)
TAGS = ["red;shirt", "blue;shirt", "red;shoe", "blue; shoe ;", "red", "blue;shirt"] * 4


def _png(path: Path, tags: str, seed: int, size: tuple[int, int] = (9, 7)) -> None:
    rng = np.random.default_rng(seed)
    a = (rng.random((size[1], size[0], 3)) * 60).astype(np.uint8)
    if "red" in tags:
        a[..., 0] += 180
    if "blue" in tags:
        a[..., 2] += 180
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(path)


def _manifest(root: Path, header: str, rows: list[str], name: str = "manifest.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _tagged(root: Path, tags: list[str] = TAGS, split: list[str] | None = None) -> Path:
    """Images under root/img/ and a manifest ``path,tags[,split]``."""
    rows = []
    for i, t in enumerate(tags):
        _png(root / "img" / f"{i:02d}.png", t, seed=i)
        rows.append(f"img/{i:02d}.png,{t}" + (f",{split[i]}" if split else ""))
    return _manifest(root, "path,tags" + (",split" if split else ""), rows)


def _data(path: Path, **data: Any) -> dict[str, Any]:
    base = {"dataset": "image-manifest", "path": str(path), "imbalance_factor": None}
    return {**base, "image_size": 6, **data}


def _multi(path: Path, **data: Any) -> Any:
    return config_from_dict(
        {"task": "multi-label", "methods": ["bce"], "data": _data(path, **data)}
    )


# --------------------------------------------------------------------------------------------------
# reading: tags, 0/1 columns, unknowns, a class column


def test_tags_with_a_separator(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        "path,tags",
        ["a.png,red|shirt", "b.png, shoe | red |", "c.png,", "d.png,-1", "e.png,|"],
    )
    for name in "abcde":
        _png(tmp_path / f"{name}.png", "", seed=0)
    m = read_image_manifest(path, label_column="tags", tag_separator="|")
    assert m.class_names == ["red", "shirt", "shoe"]
    expected = [[1, 1, 0], [1, 0, 1], [-1, -1, -1], [-1, -1, -1], [0, 0, 0]]
    assert m.targets.dtype == torch.float32 and m.targets.tolist() == expected
    assert m.paths == [str(tmp_path / f"{n}.png") for n in "abcde"]
    assert m.lines == [2, 3, 4, 5, 6] and m.split is None
    # the default separator is not "|": the whole cell is one tag
    other = read_image_manifest(path, label_column="tags", tag_separator=";")
    assert "red|shirt" in other.class_names


def test_binary_columns_blank_and_minus_one_are_unknown(tmp_path: Path) -> None:
    rows = ["a.png,1,0,1,train", "b.png,0,,1,test", "c.png,-1,1,0,train", "d.png,1.0, 0 ,-1,test"]
    for name in "abcd":
        _png(tmp_path / f"{name}.png", "", seed=1)
    path = _manifest(tmp_path, "path,cat,dog,sky,split", rows)
    m = read_image_manifest(path, label_columns=["sky", "cat"])
    assert m.class_names == ["sky", "cat"]  # the order given, not the file's
    assert m.targets.tolist() == [[1, 1], [1, 0], [0, -1], [-1, 1]]
    # through the engine: the unknowns stay -1 in both splits, in the datasets' targets too
    bundle = build_multilabel_data(_multi(path, label_columns=["cat", "dog", "sky"]).data)
    assert bundle.train_y.tolist() == [[1, 0, 1], [-1, 1, 0]]
    assert bundle.test_y.tolist() == [[0, -1, 1], [1, 0, -1]]
    test = bundle.eval_datasets["test"]
    assert isinstance(test, ImageFilesDataset)
    assert [Path(p).stem for p in test.paths] == ["b", "d"]
    assert test[1][1].tolist() == [1, 0, -1]


def test_single_label_class_column_builds_lazy_standardised_images(tmp_path: Path) -> None:
    classes = ["10"] * 8 + ["2"] * 6 + ["7"] * 4  # integer names sort numerically
    rows = []
    for i, c in enumerate(classes):
        _png(tmp_path / "photos" / f"{i}.png", "red" if c == "2" else "blue", seed=i)
        rows.append(f"photos/{i}.png,{c}")
    path = _manifest(tmp_path, "file,label", rows)
    cfg = config_from_dict(
        {"methods": ["erm"], "data": _data(path, path_column="file", label_column="label")}
    )
    bundle = build_data(cfg.data)
    assert bundle.class_names == ["2", "7", "10"]
    assert bundle.lazy and bundle.input_shape == (3, 6, 6)
    # stratified: round(0.5 * n) of each class held out, listed in the split record
    assert (
        bundle.class_counts == [3, 2, 4]
        and sorted(bundle.test_y.tolist()) == [0] * 3 + [1] * 2 + [2] * 4
    )
    assert bundle.split is not None and bundle.split["method"] == "stratified"
    assert all(p.startswith("photos/") for p in bundle.split["test"])
    # the training images' per-channel statistics, computed independently with numpy
    train = bundle.train_dataset
    assert isinstance(train, ImageFilesDataset)

    def raw(p: str) -> np.ndarray:
        with Image.open(p) as img:
            small = img.convert("RGB").resize((6, 6), Image.Resampling.BILINEAR)
        return np.asarray(small, dtype=np.float64).transpose(2, 0, 1) / 255.0

    pixels = np.stack([raw(p) for p in train.paths])
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    x, y = train[1]
    assert y == int(bundle.train_y[1]) and isinstance(y, int)
    want = (raw(train.paths[1]) - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# the test split: a split column, or a seeded hold-out


def test_split_column_sets_the_test_images(tmp_path: Path) -> None:
    split = ["test" if i % 4 == 0 else "Train" for i in range(len(TAGS))]
    bundle = build_multilabel_data(_multi(_tagged(tmp_path, split=split), label_column="tags").data)
    test_paths = bundle.eval_datasets["test"].paths  # type: ignore[attr-defined]
    assert [Path(p).name for p in test_paths] == [f"{i:02d}.png" for i in range(0, 24, 4)]
    assert len(bundle.train_y) == 18 and bundle.split is None  # nothing drawn: no split.json
    assert bundle.class_names == ["blue", "red", "shirt", "shoe"]


def test_random_split_without_a_split_column(tmp_path: Path) -> None:
    path = _tagged(tmp_path)
    bundles = [
        build_multilabel_data(_multi(path, label_column="tags", subset_seed=s).data)
        for s in (0, 0, 1)
    ]
    tests = [b.split["test"] for b in bundles]  # type: ignore[index]
    k = math.floor(0.5 * len(TAGS) + 0.5)  # data.test_fraction defaults to 0.5
    # the draw of a multi-label validation split: the first k of a seeded permutation
    perm = torch.randperm(len(TAGS), generator=torch.Generator().manual_seed(0))
    assert tests[0] == [f"img/{i:02d}.png" for i in sorted(perm[:k].tolist())]
    assert tests[0] == tests[1] and tests[0] != tests[2]
    assert bundles[0].split["method"] == "random"  # type: ignore[index]
    assert len(bundles[0].train_y) == len(TAGS) - k


def test_validation_split_and_hidden_labels_reach_the_lazy_datasets(tmp_path: Path) -> None:
    cfg = _multi(
        _tagged(tmp_path), label_column="tags", validation_fraction=0.25, hide_fraction=0.3
    )
    bundle = build_multilabel_data(cfg.data)
    assert bundle.evaluated_on == "validation"
    train, val = bundle.train_dataset, bundle.eval_datasets["test"]
    assert isinstance(train, ImageFilesDataset) and isinstance(val, ImageFilesDataset)
    assert torch.equal(train.targets, bundle.train_y) and torch.equal(val.targets, bundle.test_y)
    assert bool((bundle.train_y == -1).any()) and not bool((bundle.test_y == -1).any())
    assert set(train.paths).isdisjoint(val.paths) and len(train) + len(val) == 12
    assert torch.equal(val[0][1], bundle.test_y[0])


# --------------------------------------------------------------------------------------------------
# refused input: one line, exit code 2, before training


def _bench_config(tmp_path: Path, data: dict[str, Any], task: str = "multi-label") -> Path:
    raw = {
        "name": "manifest",
        "task": task,
        "methods": ["bce"] if task == "multi-label" else ["erm"],
        "seeds": [0],
        "data": data,
        "model": {"arch": "cnn", "channels": [4]},
        "train": {"epochs": 1, "batch_size": 8, "num_threads": 1},
    }
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _one_error_line(err: str) -> bool:
    """Standard error holds one ``error:`` line (after the run's announcement), no traceback."""
    return "Traceback" not in err and [ln[:6] for ln in err.splitlines()].count("error:") == 1


def _run(cfg: Path, out: Path, *args: str) -> int:
    return main(["bench", str(cfg), "--out", str(out), "--no-progress", *args])


def test_missing_image_file_exits_2_naming_file_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tagged(tmp_path / "data")
    (tmp_path / "data" / "img" / "05.png").unlink()
    cfg = _bench_config(tmp_path, {**_data(path), "label_column": "tags"})
    assert _run(cfg, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "line 7" in err and "05.png" in err and "not found" in err and "manifest.csv" in err
    assert _one_error_line(err)
    assert not list((tmp_path / "run").rglob("result.json"))


def test_unreadable_image_exits_2_naming_it_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tagged(tmp_path / "data", split=["train"] * 20 + ["test"] * 4)
    (tmp_path / "data" / "img" / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    cfg = _bench_config(tmp_path, {**_data(path), "label_column": "tags"})
    assert _run(cfg, tmp_path / "run") == 2  # every image is checked before training
    err = capsys.readouterr().err
    assert "03.png" in err and "cannot read the image" in err and _one_error_line(err)
    assert not list((tmp_path / "run").rglob("result.json"))


def test_paths_outside_the_manifests_folder_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _png(tmp_path / "outside.png", "", seed=0)  # exists: refused for where it is, not as missing
    _png(data / "in.png", "", seed=0)
    for bad in ("../outside.png", str(tmp_path / "outside.png"), "img/../../outside.png"):
        path = _manifest(data, "path,tags", ["in.png,a", f"{bad},b"])
        with pytest.raises(ValueError, match=r"line 3: image path .* is outside the manifest"):
            read_image_manifest(path, label_column="tags", tag_separator=";")
    # an absolute path inside the folder, and ./ or sub/../ that stay inside, are fine
    path = _manifest(data, "path,tags", [f"{data / 'in.png'},a", "./sub/../x.png,b"])
    _png(data / "x.png", "", seed=1)
    m = read_image_manifest(path, label_column="tags", tag_separator=";")
    assert m.paths == [str(data / "in.png"), str(data / "x.png")]


@pytest.mark.parametrize(
    ("header", "rows", "data", "message"),
    [
        (
            "path,a,b",
            ["0.png,1,2"],
            {"label_columns": ["a", "b"]},
            r"line 2: label column 'b' has '2'",
        ),
        ("path,a", ["0.png,yes"], {"label_columns": ["a"]}, r"column 'a' has 'yes'; a 0/1 label"),
        ("", [], {}, "empty manifest"),
        ("path,tags", [], {}, r"empty manifest \(a header but no image rows\)"),
        (
            "file,labels",
            ["0.png,a"],
            {},
            r"no column 'path' \(path_column\); columns found: file, labels",
        ),
        (
            "path,labels",
            ["0.png,a"],
            {},
            r"no column 'tags' \(label_column\); columns found: path, labels",
        ),
        ("path,tags", ['0.png,"a;b', "1.png,c"], {}, r"malformed CSV"),
        ("path,tags", ["0.png,a,b"], {}, r"line 2 has 3 fields, the header has 2"),
        (
            "path,tags",
            ["0.png,a", "0.png,b"],
            {},
            r"line 3: image '0.png' is listed twice \(also on line 2\)",
        ),
        (
            "path,tags,split",
            ["0.png,a,train", "1.png,b,val"],
            {},
            r"line 3: column 'split' has 'val'",
        ),
        ("path,tags,split", ["0.png,a,train", "1.png,b,train"], {}, r"marks no image test"),
        ("path,tags", [",a"], {}, r"line 2: no image path in column 'path'"),
    ],
)
def test_bad_manifests_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    header: str,
    rows: list[str],
    data: dict[str, Any],
    message: str,
) -> None:
    for i in range(2):
        _png(tmp_path / f"{i}.png", "", seed=i)
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, *rows]) if header else "", encoding="utf-8")
    labels = data or {"label_column": "tags"}
    cfg = _bench_config(tmp_path, {**_data(path), **labels})
    assert _run(cfg, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert _one_error_line(err), err
    assert str(path) in err and re.search(message, err), err
    assert not list((tmp_path / "run").rglob("result.json"))


@pytest.mark.parametrize(
    ("data", "task", "key"),
    [
        ({"label_column": "tags", "tag_separator": "|"}, "single-label", "data.tag_separator"),
        ({"label_columns": ["a"]}, "single-label", "data.label_columns"),
        ({}, "single-label", "data.label_column"),
        ({}, "multi-label", "data.label_column"),
        ({"label_column": "t", "label_columns": ["a"]}, "multi-label", "data.label_columns"),
        ({"label_columns": ["a"], "tag_separator": "|"}, "multi-label", "data.tag_separator"),
        ({"label_column": "t", "imbalance_factor": 10}, "multi-label", "data.imbalance_factor"),
        ({"label_column": "t", "channels": 2}, "multi-label", "data.channels"),
        ({"label_column": "t", "path": "m.txt"}, "multi-label", "data.path"),
        ({"label_column": "t", "path_column": ""}, "multi-label", "data.path_column"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, Any], task: str, key: str) -> None:
    raw = {"dataset": "image-manifest", "path": "m.csv", "imbalance_factor": None, **data}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict({"task": task, "data": raw})


def test_its_keys_are_refused_with_other_formats() -> None:
    for key, value in (("path_column", "file"), ("tag_separator", "|")):
        with pytest.raises(
            ConfigError, match=rf"data\.{key}': only used by dataset image-manifest"
        ):
            config_from_dict({"data": {"dataset": "digits", key: value}})


# --------------------------------------------------------------------------------------------------
# end to end


def test_config_runs_a_multilabel_method_end_to_end(tmp_path: Path) -> None:
    path = _tagged(tmp_path / "data")
    out = tmp_path / "run"
    args = ["--data-path", str(path), "--methods", "bce", "--seeds", "0", "--epochs", "1"]
    assert _run(REPO_ROOT / "configs" / "image_manifest.yaml", out, *args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "image-manifest" and results["task"] == "multi-label"
    assert results["class_names"] == ["blue", "red", "shirt", "shoe"]
    # 20% of 24 rows held out (5), the positives of the other 19 counted per label
    split = json.loads((out / "split.json").read_text())
    assert split["num_test"] == 5 and split["num_train"] == 19
    held = {int(Path(p).stem) for p in split["test"]}
    kept = [TAGS[i] for i in range(len(TAGS)) if i not in held]
    want = [
        sum(t in {s.strip() for s in row.split(";")} for row in kept)
        for t in results["class_names"]
    ]
    assert results["class_counts"] == want
    m_ap = results["methods"]["bce"]["metrics"]["mAP"]["mean"]
    assert m_ap is not None and 0.0 < m_ap <= 1.0
