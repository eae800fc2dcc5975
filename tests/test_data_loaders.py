"""Tests of the longtail.data loaders: digits, IDX, CIFAR, ARFF, .mat (real and synthetic files)."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import idx_bytes, require, write_cifar10, write_cifar100, write_idx_folder
from longtail.data import (
    LabeledTensors,
    load_cifar,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_idx,
    load_mat,
    load_multilabel_arff,
    read_mulan_labels,
)


# ------------------------------------------------------------------------------------ digits
def test_load_digits_matches_sklearn() -> None:
    from sklearn.datasets import load_digits as sk

    ref = sk()
    out = load_digits()
    assert isinstance(out, LabeledTensors)
    assert out.data.shape == (1797, 64) and out.data.dtype == torch.float32
    assert out.targets.dtype == torch.int64
    assert out.class_names == tuple(str(i) for i in range(10))
    assert float(out.data.min()) == 0.0 and float(out.data.max()) == 1.0
    np.testing.assert_allclose(out.data.numpy(), ref.data / 16.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(out.targets.numpy(), ref.target)


# --------------------------------------------------------------------------- IDX: real files
@pytest.fixture(scope="module")
def fashion_train() -> LabeledTensors:
    return load_idx(require("fashion-mnist"), "train")


def test_fashion_mnist_train_shapes_and_counts(fashion_train: LabeledTensors) -> None:
    assert fashion_train.data.shape == (60000, 28, 28)
    assert fashion_train.data.dtype == torch.uint8
    assert fashion_train.targets.shape == (60000,) and fashion_train.targets.dtype == torch.int64
    assert fashion_train.class_names is None
    assert torch.bincount(fashion_train.targets).tolist() == [6000] * 10


def test_fashion_mnist_test_matches_independent_parse() -> None:
    folder = require("fashion-mnist")
    out = load_idx(folder, split="test")
    assert out.data.shape == (10000, 28, 28)
    assert torch.bincount(out.targets).tolist() == [1000] * 10
    # independent reference: decompress everything and skip the 16 / 8 header bytes
    images = np.frombuffer(
        gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16
    )
    labels = np.frombuffer(
        gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8
    )
    np.testing.assert_array_equal(out.data.numpy(), images.reshape(10000, 28, 28))
    np.testing.assert_array_equal(out.targets.numpy(), labels)


# ---------------------------------------------------------------------- IDX: synthetic files
@pytest.fixture
def small_idx() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8), rng.integers(0, 10, size=7).astype(
        np.uint8
    )


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_idx_roundtrip(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], gz: bool, split: str
) -> None:
    images, labels = small_idx
    write_idx_folder(tmp_path, images, labels, split=split, gz=gz)
    out = load_idx(tmp_path, split=split)
    np.testing.assert_array_equal(out.data.numpy(), images)
    np.testing.assert_array_equal(out.targets.numpy(), labels.astype(np.int64))
    assert out.data.dtype == torch.uint8 and out.targets.dtype == torch.int64


def test_load_idx_dotted_names(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_idx
    (tmp_path / "train-images.idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "train-labels.idx1-ubyte").write_bytes(idx_bytes(labels))
    assert load_idx(tmp_path).data.shape == (7, 5, 4)


def test_load_idx_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_idx(tmp_path, split="val")


def test_load_idx_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_idx(tmp_path)


def _write_pair(folder: Path, image_blob: bytes, label_blob: bytes, gz: bool = False) -> Path:
    suffix = ".gz" if gz else ""
    image_path = folder / ("train-images-idx3-ubyte" + suffix)
    label_path = folder / ("train-labels-idx1-ubyte" + suffix)
    image_path.write_bytes(gzip.compress(image_blob) if gz else image_blob)
    label_path.write_bytes(gzip.compress(label_blob) if gz else label_blob)
    return image_path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_wrong_magic(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], gz: bool
) -> None:
    images, labels = small_idx
    path = _write_pair(
        tmp_path, idx_bytes(images, magic=b"\x12\x34\x08\x03"), idx_bytes(labels), gz
    )
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": offset 0: bad IDX magic"):
        load_idx(tmp_path)


def test_idx_wrong_dtype_code(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_idx
    _write_pair(tmp_path, idx_bytes(images, magic=b"\x00\x00\x0d\x03"), idx_bytes(labels))
    with pytest.raises(ValueError, match=r"offset 2: unsupported IDX data type 0x0d"):
        load_idx(tmp_path)


def test_idx_wrong_ndim(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_idx
    _write_pair(tmp_path, idx_bytes(images.reshape(7, 20)), idx_bytes(labels))
    with pytest.raises(
        ValueError, match=r"train-images-idx3-ubyte: offset 3: IDX file has 2 dimensions"
    ):
        load_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_promises_more_than_file_holds(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], gz: bool
) -> None:
    images, labels = small_idx
    path = _write_pair(tmp_path, idx_bytes(images, dims=(8, 5, 4)), idx_bytes(labels), gz)
    with pytest.raises(
        ValueError, match=re.escape(str(path)) + r": offset \d+: .*(promises|ends early)"
    ):
        load_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_huge_header_is_rejected_before_allocating(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], gz: bool
) -> None:
    # 4e9 x 4e9 x 4e9 bytes: allocating this would raise MemoryError / be killed, not ValueError
    images, labels = small_idx
    huge = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    _write_pair(tmp_path, idx_bytes(images, dims=huge), idx_bytes(labels), gz)
    with pytest.raises(ValueError, match=r"offset \d+: header promises \d+ payload bytes"):
        load_idx(tmp_path)


def test_idx_header_promises_less_than_file_holds(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = small_idx
    _write_pair(tmp_path, idx_bytes(images, dims=(6, 5, 4)), idx_bytes(labels), gz=True)
    with pytest.raises(ValueError, match=r"trailing data"):
        load_idx(tmp_path)


def test_idx_truncated_gzip(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_idx
    path = _write_pair(tmp_path, idx_bytes(images), idx_bytes(labels), gz=True)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(
        ValueError,
        match=re.escape(str(path)) + r": offset \d+ \(decompressed\): corrupt or truncated",
    ):
        load_idx(tmp_path)


def test_idx_not_gzip_at_all(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_idx
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(images))  # raw bytes, .gz name
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: offset 0"):
        load_idx(tmp_path)


def test_idx_image_label_count_mismatch(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = small_idx
    _write_pair(tmp_path, idx_bytes(images), idx_bytes(labels[:6]))
    with pytest.raises(ValueError, match=r"7 images but .* holds 6 labels"):
        load_idx(tmp_path)


def test_idx_file_shorter_than_header(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]
) -> None:
    _, labels = small_idx
    _write_pair(tmp_path, b"\x00\x00\x08\x03\x00\x00", idx_bytes(labels))
    with pytest.raises(ValueError, match=r"offset 6: file ends inside the IDX header"):
        load_idx(tmp_path)


# --------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [False, True])
def test_load_cifar10(tmp_path: Path, protocol: int, bytes_keys: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    train_x, train_y, test_x, test_y = write_cifar10(
        folder, protocol=protocol, bytes_keys=bytes_keys
    )
    for directory in (folder, tmp_path):  # the batch folder or its parent
        out = load_cifar(directory, "train")
        assert out.data.shape == (20, 3, 32, 32) and out.data.dtype == torch.uint8
        np.testing.assert_array_equal(out.data.numpy(), train_x.reshape(20, 3, 32, 32))
        np.testing.assert_array_equal(out.targets.numpy(), train_y)
        assert out.targets.dtype == torch.int64
        assert (
            out.class_names is not None
            and out.class_names[0] == "airplane"
            and len(out.class_names) == 10
        )
    test = load_cifar10(folder, "test")
    np.testing.assert_array_equal(test.data.numpy().reshape(4, -1), test_x)
    np.testing.assert_array_equal(test.targets.numpy(), test_y)
    # channel-first layout: pixel (row 0, col 1) of the red channel is byte 1 of the record
    assert int(test.data[0, 0, 0, 1]) == int(test_x[0, 1])
    assert int(test.data[0, 1, 0, 0]) == int(test_x[0, 1024])


def test_load_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    ref = write_cifar100(tmp_path / "cifar-100-python")
    out = load_cifar(tmp_path, "test")
    np.testing.assert_array_equal(out.targets.numpy(), ref["test_fine"])
    np.testing.assert_array_equal(out.data.numpy().reshape(6, -1), ref["test_data"])
    assert (
        out.class_names is not None
        and len(out.class_names) == 100
        and out.class_names[3] == "fine3"
    )
    coarse = load_cifar100(tmp_path, "train", label_kind="coarse")
    np.testing.assert_array_equal(coarse.targets.numpy(), ref["train_coarse"])
    assert coarse.class_names is not None and len(coarse.class_names) == 20


def test_cifar_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_cifar(tmp_path, "validation")


def test_cifar_bad_label_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label_kind"):
        load_cifar100(tmp_path, label_kind="medium")


def test_cifar_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="directory"):
        load_cifar(tmp_path)
    write_cifar100(tmp_path / "cifar-100-python")
    with pytest.raises(FileNotFoundError, match="CIFAR-10 "):
        load_cifar10(tmp_path)


def test_cifar_ambiguous_parent(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    write_cifar100(tmp_path / "cifar-100-python")
    with pytest.raises(ValueError, match="both CIFAR-10 and CIFAR-100"):
        load_cifar(tmp_path)
    assert load_cifar10(tmp_path).data.shape[0] == 20
    assert load_cifar100(tmp_path).data.shape[0] == 6


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_hostile_pickle_does_not_run(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    marker = tmp_path / "pwned"
    hostile = {"x": _Evil(marker), "data": np.zeros((1, 3072), np.uint8), "labels": [0]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(hostile, protocol=protocol))
    with pytest.raises(
        ValueError, match=r"data_batch_3: unsafe or malformed pickle: .*(posix|os|nt)\.system"
    ):
        load_cifar(folder)
    assert not marker.exists()
    # the same pickle really would run code with the plain unpickler (the test can fail)
    pickle.loads((folder / "data_batch_3").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "global_name",
    [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load"), ("_codecs", "decode")],
)
def test_restricted_unpickler_refuses_other_globals(
    tmp_path: Path, global_name: tuple[str, str]
) -> None:
    from longtail.data import safe_unpickle

    module, name = global_name
    blob = f"c{module}\n{name}\n(S'1+1'\ntR.".encode()
    path = tmp_path / "meta"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=rf"refusing to load global {module}\.{name}"):
        safe_unpickle(path)


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    from longtail.data import safe_unpickle

    path = tmp_path / "x"
    path.write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    with pytest.raises(ValueError, match="only latin1"):
        safe_unpickle(path)


class _Reduce:
    """Pickles as ``func(*args)``: the classic way to make an unpickler call something."""

    def __init__(self, func: object, args: tuple[object, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.func, self.args)


def _hostile_payloads(marker: Path) -> dict[str, object]:
    import functools
    import subprocess

    return {
        "functools.partial": _Reduce(functools.partial, (os.system, f"touch {marker}")),
        "builtins.eval": _Reduce(eval, (f"open({str(marker)!r}, 'w')",)),
        "builtins.exec": _Reduce(exec, (f"open({str(marker)!r}, 'w')",)),
        "subprocess.Popen": _Reduce(subprocess.Popen, (["touch", str(marker)],)),
        "numpy.load": _Reduce(np.load, (str(marker) + ".npy", None, True)),  # allow_pickle=True
        "getattr": _Reduce(getattr, (_Reduce(__import__, ("os",)), "system")),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize(
    "payload",
    [
        "functools.partial",
        "builtins.eval",
        "builtins.exec",
        "subprocess.Popen",
        "numpy.load",
        "getattr",
    ],
)
def test_hostile_payloads_refused(tmp_path: Path, payload: str, protocol: int) -> None:
    from longtail.data import safe_unpickle

    marker = tmp_path / "pwned"
    obj = {
        "data": np.zeros((1, 3072), np.uint8),
        "labels": [0],
        "x": [_hostile_payloads(marker)[payload]],
    }
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    with pytest.raises(ValueError, match=r"data_batch_1: unsafe or malformed pickle: refusing"):
        safe_unpickle(path)
    assert not marker.exists()


def _patched(blob: bytes, old: bytes, new: bytes) -> bytes:
    assert blob.count(old) == 1, (old, blob)
    return blob.replace(old, new)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        # LONG_BINPUT 2**32 - 1: CPython would grow its memo table to 2**33 entries (64 GiB)
        (b"\x80\x02Nr\xff\xff\xff\xff.", "memo index 4294967295"),
        # numpy.ndarray((2**36,)) called directly: a 512 GiB allocation named by the pickle
        (b"\x80\x02cnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x10\x85\x85R.", "numpy.ndarray"),
        # _reconstruct(ndarray, (2**36,), b"b"): numpy's own pickles always pass an empty shape
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            b"\x8a\x05\x00\x00\x00\x00\x10\x85U\x01b\x87R.",
            "refusing _reconstruct with shape",
        ),
        # _reconstruct of something that is not numpy.ndarray
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.",
            "anything but numpy.ndarray",
        ),
        # bytes(10**11) would allocate 100 GB
        (b"c__builtin__\nbytes\n(I100000000000\ntR.", "bytes"),
        # a dtype with a 1 GB item size
        (b"\x80\x02cnumpy\ndtype\nX\x0b\x00\x00\x00V1000000000\x85R.", "refusing dtype"),
    ],
    ids=["memo-bomb", "ndarray-call", "reconstruct-shape", "reconstruct-subtype", "bytes", "dtype"],
)
def test_hostile_allocations_refused(tmp_path: Path, blob: bytes, message: str) -> None:
    from longtail.data import safe_unpickle

    path = tmp_path / "meta"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=r"meta: unsafe or malformed pickle: .*" + message):
        safe_unpickle(path)


@pytest.mark.parametrize("protocol", [2, 5])
def test_object_arrays_refused(tmp_path: Path, protocol: int) -> None:
    # numpy's ndarray.__setstate__ trusts the shape of an object array and reads past the end of a
    # shorter list, so object arrays are never built
    from longtail.data import safe_unpickle

    path = tmp_path / "meta"
    path.write_bytes(pickle.dumps({"a": np.array([1, "x", None], dtype=object)}, protocol=protocol))
    with pytest.raises(ValueError, match=r"refusing dtype 'O8'"):
        safe_unpickle(path)


def test_array_state_must_match_its_bytes(tmp_path: Path) -> None:
    from longtail.data import safe_unpickle

    blob = pickle.dumps(np.zeros((2, 3), np.uint8), protocol=2)
    path = tmp_path / "meta"
    # the state claims (2, 2**28) but holds 6 bytes
    path.write_bytes(_patched(blob, b"K\x01K\x02K\x03\x86", b"K\x01K\x02J\x00\x00\x00\x10\x86"))
    with pytest.raises(ValueError, match=r"needs 536870912 bytes, the pickle holds 6"):
        safe_unpickle(path)


def test_forged_dtype_flags_are_ignored(tmp_path: Path) -> None:
    # flags 63 claim the uint64 dtype holds Python objects; numpy would trust them (and fail
    # inside C code); the restricted unpickler takes only the byte order from a dtype's state
    from longtail.data import safe_unpickle

    blob = pickle.dumps(np.arange(3, dtype=np.uint64), protocol=2)
    tail = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    path = tmp_path / "meta"
    path.write_bytes(_patched(blob, tail, tail[:-3] + b"K?t"))
    out = safe_unpickle(path)
    assert type(out) is np.ndarray and out.dtype == np.uint64 and out.dtype.flags == 0
    np.testing.assert_array_equal(out, [0, 1, 2])


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_safe_unpickle_round_trips_numeric_arrays(tmp_path: Path, protocol: int) -> None:
    from longtail.data import safe_unpickle

    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (3, 4), dtype=np.uint8),
        rng.standard_normal((2, 3)).astype(">f4"),  # big-endian
        np.asfortranarray(rng.standard_normal((3, 2))),
        rng.standard_normal((4, 5))[:, ::2],  # not contiguous
        np.arange(24, dtype=np.int16)
        .reshape(2, 3, 4)
        .transpose(2, 0, 1),  # order "K" in protocol 5
        np.array([True, False]),
        np.arange(5, dtype=np.int64),
        np.array(3.5),
        np.zeros((0, 3), np.uint8),
        (rng.standard_normal(3) + 1j).astype(np.complex64),
    ]
    obj = {"arrays": arrays, b"pair": (arrays[0], arrays[0]), "empty": b"", "s": "x"}
    path = tmp_path / "p"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = safe_unpickle(path)
    assert out.keys() == obj.keys() and out["empty"] == b"" and out["s"] == "x"
    for got, want in zip(
        [*out["arrays"], *out[b"pair"]], [*arrays, arrays[0], arrays[0]], strict=True
    ):
        assert type(got) is np.ndarray
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_cifar_malformed_batches(tmp_path: Path) -> None:
    folder = tmp_path / "c10"
    write_cifar10(folder)
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, protocol=2)
    )
    with pytest.raises(ValueError, match=r"data_batch_2: 2 images but 1 entries"):
        load_cifar(folder)
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({"data": np.zeros((1, 100), np.uint8), "labels": [0]}, protocol=2)
    )
    with pytest.raises(ValueError, match=r"data_batch_2: 'data' has shape"):
        load_cifar(folder)
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, protocol=2)
    )
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        load_cifar(folder)
    (folder / "data_batch_2").write_bytes(b"\x80\x02}q\x00")  # truncated pickle
    with pytest.raises(ValueError, match=r"data_batch_2: malformed pickle"):
        load_cifar(folder)


# ---------------------------------------------------------------------------- ARFF: real files
@pytest.mark.parametrize(
    ("name", "split", "n", "features", "n_labels", "cardinality"),
    [
        ("scene", "train", 1211, 294, 6, 1.07),
        ("scene", "test", 1196, 294, 6, 1.07),
        ("yeast", "train", 1500, 103, 14, 4.24),
        ("yeast", "test", 917, 103, 14, 4.24),
    ],
)
def test_mulan_real_files(
    name: str, split: str, n: int, features: int, n_labels: int, cardinality: float
) -> None:
    folder = require(f"multilabel/{name}")
    out = load_multilabel_arff(folder / f"{name}-{split}.arff", folder / f"{name}.xml")
    assert out.data.shape == (n, features) and out.data.dtype == torch.float32
    assert out.targets.shape == (n, n_labels) and out.targets.dtype == torch.float32
    assert set(out.targets.unique().tolist()) == {0.0, 1.0}
    assert out.class_names is not None and len(out.class_names) == n_labels
    assert abs(float(out.targets.sum(1).mean()) - cardinality) < 0.05
    assert torch.isfinite(out.data).all()


def test_scene_matches_scipy_arff() -> None:
    from scipy.io import arff

    folder = require("multilabel/scene")
    out = load_multilabel_arff(folder / "scene-test.arff", str(folder / "scene.xml"))
    records, meta = arff.loadarff(folder / "scene-test.arff")
    names = meta.names()
    label_names = ["Beach", "Sunset", "FallFoliage", "Field", "Mountain", "Urban"]
    assert out.class_names == tuple(label_names)
    feats = np.stack([records[n].astype(np.float64) for n in names if n not in label_names], axis=1)
    labs = np.stack([records[n].astype(str).astype(np.float64) for n in label_names], axis=1)
    np.testing.assert_allclose(out.data.numpy(), feats.astype(np.float32))
    np.testing.assert_array_equal(out.targets.numpy(), labs)


def test_yeast_xml_meka_and_names_agree() -> None:
    folder = require("multilabel/yeast")
    path = folder / "yeast-train.arff"
    via_xml = load_multilabel_arff(path, folder / "yeast.xml")
    via_count = load_multilabel_arff(path, -14)
    names = [f"Class{i}" for i in range(1, 15)]
    via_names = load_multilabel_arff(path, names)
    assert via_xml.class_names == via_count.class_names == tuple(names)
    for other in (via_count, via_names):
        assert torch.equal(via_xml.data, other.data) and torch.equal(via_xml.targets, other.targets)
    assert (
        read_mulan_labels(folder / "yeast.xml")[3] == "Class6"
    )  # XML order differs, output does not
    reordered = load_multilabel_arff(path, ["Class2", "Class1"])
    assert reordered.class_names == ("Class2", "Class1")
    assert torch.equal(reordered.targets, via_xml.targets[:, [1, 0]])
    assert reordered.data.shape == (1500, 103 + 12)


# ----------------------------------------------------------------------- ARFF: synthetic files
MEKA_DENSE = """% a MEKA file, labels first
@relation 'toy: -C 2 -split 0.5'

@attribute lab1 {0,1}
@attribute 'lab 2' numeric
@attribute "f one" real
@attribute f2 INTEGER
@attribute colour {red,'dark green',blue}

@data
% comment inside data
1,0,0.5,3,red
0,1,-1e-3,?,'dark green'
1,1,2,7,blue
"""


def test_meka_dense_from_relation(tmp_path: Path) -> None:
    path = tmp_path / "toy.arff"
    path.write_text(MEKA_DENSE)
    out = load_multilabel_arff(path, None)
    assert out.class_names == ("lab1", "lab 2")
    np.testing.assert_array_equal(out.targets.numpy(), [[1, 0], [0, 1], [1, 1]])
    expected = np.array([[0.5, 3, 0], [-1e-3, np.nan, 1], [2, 7, 2]], dtype=np.float32)
    np.testing.assert_array_equal(out.data.numpy(), expected)  # NaN == NaN for assert_array_equal
    explicit = load_multilabel_arff(path, 2)
    assert torch.equal(explicit.targets, out.targets)


def test_meka_negative_count(tmp_path: Path) -> None:
    path = tmp_path / "neg.arff"
    path.write_text(
        "@relation 'x: -C -2'\n@attribute a numeric\n@attribute y1 {0,1}\n@attribute y2 {0,1}\n@data\n0.25,1,0\n"
    )
    out = load_multilabel_arff(path, None)
    assert out.class_names == ("y1", "y2")
    assert out.data.tolist() == [[0.25]] and out.targets.tolist() == [[1.0, 0.0]]


SPARSE = """@relation sparse
@attribute w0 numeric
@attribute w1 numeric
@attribute w2 {0,1}
@attribute w3 numeric
@attribute tagA {0,1}
@attribute tagB {0,1}
@attribute tagC {0,1}
@data
{0 1.5,4 1}
{1 2, 2 1, 5 1,6 1}
{}
{3 -4,6 1}
"""


def test_sparse_rows_mulan_xml(tmp_path: Path) -> None:
    path = tmp_path / "sparse.arff"
    path.write_text(SPARSE)
    xml = tmp_path / "labels.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">'
        '<label name="tagA"></label><label name="tagB"><label name="tagC"/></label></labels>'
    )
    out = load_multilabel_arff(path, xml)
    assert out.class_names == ("tagA", "tagB", "tagC")
    np.testing.assert_array_equal(
        out.data.numpy(), [[1.5, 0, 0, 0], [0, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, -4]]
    )
    np.testing.assert_array_equal(out.targets.numpy(), [[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]])


def test_missing_label_is_minus_one(tmp_path: Path) -> None:
    path = tmp_path / "m.arff"
    path.write_text("@relation r\n@attribute a numeric\n@attribute y {0,1}\n@data\n1,?\n")
    assert load_multilabel_arff(path, -1).targets.tolist() == [[-1.0]]


def test_xml_with_doctype_refused(tmp_path: Path) -> None:
    path = tmp_path / "sparse.arff"
    path.write_text(SPARSE)
    xml = tmp_path / "bomb.xml"
    xml.write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><labels><label name="&a;"/></labels>'
    )
    with pytest.raises(ValueError, match="DOCTYPE"):
        load_multilabel_arff(path, xml)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,2", r"row has 2 values, expected 3"),
        ("1,2,3,4", r"row has 4 values, expected 3"),
        ("abc,1,0", r"'abc' is not a number"),
        ("1,0,2", r"label 'y' has value '2', expected 0 or 1"),
        ("{0 1, 7 1}", r"sparse index 7 outside"),
        ("{0 1, 0 2}", r"sparse index 0 appears twice"),
        ("{0 1, x 1}", r"sparse index 'x' is not an integer"),
        ("{0 1, 2}", r"is not 'index value'"),
        ("{0 1", r"sparse row without a closing"),
        ("1,'unterminated,0", r"unterminated quote"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.arff"
    path.write_text(
        f"@relation r\n@attribute a numeric\n@attribute b numeric\n@attribute y numeric\n@data\n0,0,1\n{row}\n"
    )
    with pytest.raises(ValueError, match=re.escape(str(path)) + ":7: .*" + message):
        load_multilabel_arff(path, -1)


def test_undeclared_nominal_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.arff"
    path.write_text("@relation r\n@attribute a {x,y}\n@attribute l {0,1}\n@data\nz,1\n")
    with pytest.raises(
        ValueError, match=r"bad\.arff:5: column 0 \('a'\): 'z' is not one of the declared"
    ):
        load_multilabel_arff(path, -1)


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("string", "unsupported type 'string'"),
        ("date 'yyyy'", "unsupported type 'date'"),
        ("floaty", "unknown type 'floaty'"),
        ("{a,b", "lacks a closing"),
    ],
)
def test_unknown_attribute_type(tmp_path: Path, declaration: str, message: str) -> None:
    path = tmp_path / "t.arff"
    path.write_text(f"@relation r\n% c\n@attribute a {declaration}\n@attribute l {{0,1}}\n@data\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ":3: .*" + message):
        load_multilabel_arff(path, -1)


def test_label_attribute_with_other_values(tmp_path: Path) -> None:
    path = tmp_path / "t.arff"
    path.write_text("@relation r\n@attribute a numeric\n@attribute l {yes,no}\n@data\n1,yes\n")
    with pytest.raises(ValueError, match=r"t\.arff:3: label attribute 'l' must be nominal"):
        load_multilabel_arff(path, -1)


def test_unexpected_header_line(tmp_path: Path) -> None:
    path = tmp_path / "t.arff"
    path.write_text("@relation r\n@attribute a numeric\nhello\n@data\n")
    with pytest.raises(ValueError, match=r"t\.arff:3: unexpected header line"):
        load_multilabel_arff(path, -1)


def test_no_data_section(tmp_path: Path) -> None:
    path = tmp_path / "t.arff"
    path.write_text("@relation r\n@attribute a numeric\n@attribute b numeric\n")
    with pytest.raises(ValueError, match="no @data"):
        load_multilabel_arff(path, -1)


def test_labels_none_without_meka_option(tmp_path: Path) -> None:
    path = tmp_path / "t.arff"
    path.write_text(SPARSE)
    with pytest.raises(ValueError, match="labels: None"):
        load_multilabel_arff(path, None)


@pytest.mark.parametrize("labels", [0, 7, -7, 100])
def test_labels_bad_count(tmp_path: Path, labels: int) -> None:
    path = tmp_path / "t.arff"
    path.write_text(SPARSE)
    with pytest.raises(ValueError, match="labels"):
        load_multilabel_arff(path, labels)


def test_labels_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "t.arff"
    path.write_text(SPARSE)
    with pytest.raises(ValueError, match=r"labels: label attributes \['nope'\] not declared"):
        load_multilabel_arff(path, ["tagA", "nope"])


@pytest.mark.parametrize("labels", [True, 1.5, [1, 2]])
def test_labels_bad_type(tmp_path: Path, labels: object) -> None:
    path = tmp_path / "t.arff"
    path.write_text(SPARSE)
    with pytest.raises(TypeError, match="labels"):
        load_multilabel_arff(path, labels)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ .mat
def test_load_mat_single_label(tmp_path: Path) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 4))
    y = rng.integers(0, 3, size=9)
    savemat(tmp_path / "d.mat", {"X": x, "Y": y.astype(np.float64)})
    out = load_mat(tmp_path / "d.mat")
    assert out.data.dtype == torch.float32 and out.data.shape == (9, 4)
    assert out.targets.dtype == torch.int64 and out.targets.tolist() == y.tolist()
    assert out.class_names is None
    np.testing.assert_allclose(out.data.numpy(), x.astype(np.float32))
    savemat(tmp_path / "t.mat", {"X": x.T, "Y": y[:, None]})  # features stored (F, N)
    assert torch.equal(load_mat(tmp_path / "t.mat").data, out.data)


def test_load_mat_multi_label_orientation_and_sparse(tmp_path: Path) -> None:
    import scipy.sparse
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3))
    y = (rng.random(size=(10, 4)) > 0.5).astype(np.float64)
    savemat(
        tmp_path / "a.mat", {"data": scipy.sparse.csr_matrix(x), "target": (2 * y - 1).T}
    )  # (L, N), {-1, 1}
    out = load_mat(tmp_path / "a.mat", features="data", labels="target")
    assert out.targets.dtype == torch.float32 and out.targets.shape == (10, 4)
    np.testing.assert_array_equal(out.targets.numpy(), y)
    np.testing.assert_allclose(out.data.numpy(), x.astype(np.float32))


def test_load_mat_errors(tmp_path: Path) -> None:
    from scipy.io import savemat

    savemat(tmp_path / "e.mat", {"X": np.zeros((3, 2)), "Y": np.array([0.5, 1, 2])})
    with pytest.raises(ValueError, match="labels: variable 'Z' not found"):
        load_mat(tmp_path / "e.mat", labels="Z")
    with pytest.raises(ValueError, match="non-integer"):
        load_mat(tmp_path / "e.mat")
    savemat(tmp_path / "f.mat", {"X": np.zeros((3, 2)), "Y": np.full((5, 7), 1.0)})
    with pytest.raises(ValueError, match="sample dimension"):
        load_mat(tmp_path / "f.mat")
    savemat(tmp_path / "g.mat", {"X": np.zeros((3, 2)), "Y": np.full((3, 2), 2.0)})
    with pytest.raises(ValueError, match=r"expected \{0, 1\}"):
        load_mat(tmp_path / "g.mat")
    (tmp_path / "h.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match=r"h\.mat"):
        load_mat(tmp_path / "h.mat")
    with pytest.raises(ValueError, match="features"):
        load_mat(tmp_path / "e.mat", features="")


def test_load_mat_sparse_too_large_to_densify(tmp_path: Path) -> None:
    # a few hundred bytes can declare a 10^5 x 10^5 sparse matrix (80 GB dense)
    import scipy.sparse
    from scipy.io import savemat

    x = scipy.sparse.csc_matrix(([1.0], ([0], [0])), shape=(100_000, 100_000))
    path = tmp_path / "sparse.mat"
    savemat(path, {"X": x, "Y": np.zeros((100_000, 1))}, do_compression=True)
    assert path.stat().st_size < 4096
    with pytest.raises(
        ValueError, match=r"sparse\.mat: sparse variable 'X' has shape \(100000, 100000\)"
    ):
        load_mat(path)


@pytest.mark.parametrize("fmt", ["4", "5"])
def test_load_mat_header_promising_more_than_the_file_holds(tmp_path: Path, fmt: str) -> None:
    import struct

    from scipy.io import savemat

    path = tmp_path / "lie.mat"
    savemat(path, {"X": np.zeros((2, 3)), "Y": np.zeros((2, 1))}, format=fmt)  # type: ignore[arg-type]
    blob = path.read_bytes()
    if fmt == "4":  # v4 header of the first matrix: type, rows, columns, imagf, name length
        blob = blob[:4] + struct.pack("<ii", 100_000, 100_000) + blob[12:]
    else:  # v5 dimensions sub-element (miINT32, 8 bytes, 2, 3)
        blob = _patched(
            blob, struct.pack("<iiii", 5, 8, 2, 3), struct.pack("<iiii", 5, 8, 100_000, 100_000)
        )
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=r"lie\.mat: cannot read \.mat file"):
        load_mat(path)


def test_load_mat_truncated_and_missing(tmp_path: Path) -> None:
    from scipy.io import savemat

    path = tmp_path / "t.mat"
    savemat(path, {"X": np.ones((20, 30)), "Y": np.zeros((20, 1))})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t\.mat: cannot read \.mat file"):
        load_mat(path)
    with pytest.raises(FileNotFoundError):
        load_mat(tmp_path / "absent.mat")
