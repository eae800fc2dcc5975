"""Tests of longtail.data.load_mulan: Mulan folders (NAME-train.arff, NAME-test.arff, NAME.xml)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import require
from longtail.data import load_mulan, load_multilabel_arff

DENSE_HEADER = """% a dense Mulan file; labels A (nominal) and B (numeric) among the features
@relation toy
@attribute f1 numeric
@attribute A {0,1}
@attribute 'f 2' real
@attribute colour {red,green}
@attribute B numeric

@data
"""
DENSE_TRAIN = "0.5,1,2,red,0\n-1,0,3,green,1\n2.5,1,?,green,1\n"
DENSE_TEST = "7,0,8,red,0\n9,1,10,green,0\n"  # label B has no positive here: not an error
DENSE_XML = '<?xml version="1.0"?>\n<labels><label name="B"/><label name="A"/></labels>\n'

SPARSE_HEADER = """@relation sparse
@attribute w0 numeric
@attribute w1 numeric
@attribute tagA {0,1}
@attribute w2 numeric
@attribute tagB {0,1}
@attribute tagC {0,1}
@data
"""
SPARSE_TRAIN = "{0 1.5,2 1}\n{1 2, 4 1,5 1}\n{}\n{3 -4,5 1}\n"
SPARSE_TEST = "{2 1,4 1}\n{0 3}\n"
SPARSE_XML = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<labels xmlns="http://mulan.sourceforge.net/labels">'
    '<label name="tagA"/><label name="tagB"><label name="tagC"/></label></labels>\n'
)


def _write(
    folder: Path,
    name: str = "toy",
    *,
    train: str = DENSE_HEADER + DENSE_TRAIN,
    test: str = DENSE_HEADER + DENSE_TEST,
    xml: str = DENSE_XML,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-train.arff").write_text(train)
    (folder / f"{name}-test.arff").write_text(test)
    (folder / f"{name}.xml").write_text(xml)
    return folder


def test_dense_folder(tmp_path: Path) -> None:
    folder = _write(tmp_path / "dense")
    train, test = load_mulan(folder)
    assert train.class_names == test.class_names == ("A", "B")  # ARFF order, not XML order
    assert train.data.dtype == train.targets.dtype == torch.float32
    np.testing.assert_array_equal(
        train.data.numpy(), np.array([[0.5, 2, 0], [-1, 3, 1], [2.5, np.nan, 1]], np.float32)
    )
    np.testing.assert_array_equal(train.targets.numpy(), [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(test.data.numpy(), [[7, 8, 0], [9, 10, 1]])
    np.testing.assert_array_equal(test.targets.numpy(), [[0, 0], [1, 0]])
    for split, out in (("train", train), ("test", test)):
        direct = load_multilabel_arff(folder / f"toy-{split}.arff", folder / "toy.xml")
        assert torch.equal(direct.targets, out.targets)
        np.testing.assert_array_equal(direct.data.numpy(), out.data.numpy())
    assert load_mulan(str(folder), "toy")[1].targets.tolist() == test.targets.tolist()


def test_sparse_folder_with_nominal_labels(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "sparse",
        "tags",
        train=SPARSE_HEADER + SPARSE_TRAIN,
        test=SPARSE_HEADER + SPARSE_TEST,
        xml=SPARSE_XML,
    )
    train, test = load_mulan(folder)
    assert train.class_names == ("tagA", "tagB", "tagC")
    np.testing.assert_array_equal(
        train.data.numpy(), [[1.5, 0, 0], [0, 2, 0], [0, 0, 0], [0, 0, -4]]
    )
    np.testing.assert_array_equal(
        train.targets.numpy(), [[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]]
    )
    np.testing.assert_array_equal(test.data.numpy(), [[0, 0, 0], [3, 0, 0]])
    np.testing.assert_array_equal(test.targets.numpy(), [[1, 1, 0], [0, 0, 0]])


def test_name_inferred_among_other_files(tmp_path: Path) -> None:
    folder = _write(tmp_path / "f")
    (folder / "notes.xml").write_text("<labels><label name='x'/></labels>")  # no ARFF pair
    (folder / "other-train.arff").write_text(DENSE_HEADER)  # no XML, no test file
    train, _ = load_mulan(folder)
    assert train.class_names == ("A", "B")


def test_name_ambiguous_or_absent(tmp_path: Path) -> None:
    folder = _write(tmp_path / "two")
    _write(folder, "copy")
    with pytest.raises(ValueError, match=r"name: cannot infer .* 2 complete sets .*'copy'.*'toy'"):
        load_mulan(folder)
    train, _ = load_mulan(folder, "copy")
    assert train.targets.shape == (3, 2)
    empty = tmp_path / "none"
    empty.mkdir()
    (empty / "toy-train.arff").write_text(DENSE_HEADER + DENSE_TRAIN)
    with pytest.raises(
        ValueError,
        match=r"no NAME\.xml with NAME-train\.arff and NAME-test\.arff; XML files \[\], "
        r"ARFF files \['toy-train\.arff'\]; pass name=",
    ):
        load_mulan(empty)


def test_missing_files_and_bad_arguments(tmp_path: Path) -> None:
    folder = _write(tmp_path / "f")
    (folder / "toy-test.arff").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['toy-test\.arff'\]"):
        load_mulan(folder, "toy")
    with pytest.raises(FileNotFoundError, match=r"directory: .* is not a directory"):
        load_mulan(tmp_path / "absent")
    with pytest.raises(TypeError, match=r"name: expected a str or None, got 3"):
        load_mulan(folder, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"name: expected a file name stem .* got '../toy'"):
        load_mulan(folder, "../toy")


def test_xml_label_missing_from_arff(tmp_path: Path) -> None:
    xml = '<labels><label name="A"/><label name="B"/><label name="Cat"/></labels>'
    folder = _write(tmp_path / "f", xml=xml)
    with pytest.raises(
        ValueError,
        match=r"toy\.xml: label 'Cat' is not an attribute of .*toy-train\.arff",
    ):
        load_mulan(folder)
    # the single-file loader names the label, the ARFF file and the XML file too
    with pytest.raises(
        ValueError,
        match=r"label attributes \['Cat'\] not declared in .*toy-train\.arff \(listed in .*toy\.xml\)",
    ):
        load_multilabel_arff(folder / "toy-train.arff", folder / "toy.xml")


def test_xml_with_a_duplicate_label(tmp_path: Path) -> None:
    folder = _write(tmp_path / "f", xml='<labels><label name="A"/><label name="A"/></labels>')
    with pytest.raises(ValueError, match=r"toy\.xml: label 'A' is listed twice"):
        load_mulan(folder)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # renamed feature
        (
            "@attribute 'f 2' real",
            "@attribute g2 real",
            r":5: attribute 2 is 'g2' \(numeric\) but ",
        ),
        # order swapped
        (
            "@attribute f1 numeric\n@attribute A {0,1}",
            "@attribute A {0,1}\n@attribute f1 numeric",
            r":3: attribute 0 is 'A' \(nominal \{0,1\}\) but .*declares 'f1' \(numeric\)",
        ),
        # numeric vs nominal
        (
            "@attribute colour {red,green}",
            "@attribute colour numeric",
            r":6: attribute 3 is 'colour' \(numeric\) but .*declares 'colour' \(nominal \{red,green\}\)",
        ),
        # same nominal values in another order would change the codes
        (
            "@attribute colour {red,green}",
            "@attribute colour {green,red}",
            r":6: attribute 3 is 'colour' \(nominal \{green,red\}\) but",
        ),
        # label attribute with another type
        (
            "@attribute B numeric",
            "@attribute B {0,1}",
            r":7: attribute 4 is 'B' \(nominal \{0,1\}\)",
        ),
        # one feature more in the test file: the feature counts would differ
        (
            "@attribute B numeric",
            "@attribute B numeric\n@attribute extra numeric",
            r":8: attribute 5 'extra' is not in .*toy-train\.arff \(5 attributes there, 6 here\)",
        ),
        # label B missing in the test file: the label counts would differ
        (
            "@attribute B numeric\n",
            "",
            r": lacks attribute 4 'B' of .*toy-train\.arff:7 \(5 attributes there, 4 here\)",
        ),
    ],
)
def test_test_attributes_must_match_training(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    header = DENSE_HEADER.replace(old, new)
    assert header != DENSE_HEADER
    folder = _write(tmp_path / "f", test=header + DENSE_TEST)  # rows are never reached
    test_file = re.escape(str(folder / "toy-test.arff"))
    with pytest.raises(ValueError, match=test_file + message) as info:
        load_mulan(folder)
    assert "toy-train.arff" in str(info.value)  # both files are named


@pytest.mark.parametrize("cut", [1, 2, 5, 8, 11, 12, 13])
def test_truncated_dense_file(tmp_path: Path, cut: int) -> None:
    text = DENSE_HEADER + DENSE_TEST  # last row "9,1,10,green,0\n" starts at line 11
    last = DENSE_TEST.splitlines()[-1]
    truncated = text[: len(text) - len(last) - 1 + cut]  # first `cut` characters of the last row
    folder = _write(tmp_path / "f", test=truncated)
    path = re.escape(str(folder / "toy-test.arff"))
    with pytest.raises(ValueError, match=path + r":11: .*is toy-test\.arff truncated\?"):
        load_mulan(folder)


def test_truncated_sparse_file(tmp_path: Path) -> None:
    text = SPARSE_HEADER + SPARSE_TRAIN
    folder = _write(
        tmp_path / "f", "s", train=text[:-6], test=SPARSE_HEADER + SPARSE_TEST, xml=SPARSE_XML
    )
    with pytest.raises(
        ValueError,
        match=r"s-train\.arff:12: sparse row without a closing '\}' .*truncated\?",
    ):
        load_mulan(folder)


def test_file_without_final_newline_is_fine(tmp_path: Path) -> None:
    folder = _write(tmp_path / "f", test=DENSE_HEADER + DENSE_TEST.rstrip("\n"))
    assert load_mulan(folder)[1].targets.shape == (2, 2)


def test_truncated_in_the_header(tmp_path: Path) -> None:
    folder = _write(tmp_path / "f", test=DENSE_HEADER.split("@attribute colour")[0])
    with pytest.raises(ValueError, match=r"toy-test\.arff: no @data section"):
        load_mulan(folder)


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "features", "labels"),
    [("scene", 1211, 1196, 294, 6), ("yeast", 1500, 917, 103, 14)],
)
def test_real_mulan_folders(
    name: str, n_train: int, n_test: int, features: int, labels: int
) -> None:
    folder = require(f"multilabel/{name}")
    train, test = load_mulan(folder)
    assert train.data.shape == (n_train, features) and test.data.shape == (n_test, features)
    assert train.targets.shape == (n_train, labels) and test.targets.shape == (n_test, labels)
    for split in (train, test):
        assert set(split.targets.unique().tolist()) == {0.0, 1.0}
        assert split.class_names is not None and len(split.class_names) == labels
    assert train.class_names == test.class_names
    assert load_mulan(folder, name)[0].targets.equal(train.targets)


MIXED_HEADER = """@relation mixed
@attribute f0 numeric
@attribute colour {red,green,blue}
@attribute A {0,1}
@attribute f1 real
@attribute B numeric
@attribute C {1,0}
@data
"""
# each row plain (the fast path) and with quotes / blanks (the reference parser): same values;
# C is declared {1,0}, so an omitted C is 1 (its first value) and "0" is its second value
MIXED_ROWS = [
    ("0.5,blue,1,-2,0,0", "0.5, 'blue' ,'1', -2 ,0,'0'"),
    ("{0 3,3 1e-3,4 1}", "{0 3, 3 1e-3 , 4 1, 2 '0'}"),
    ("{}", "{ }"),
    ("{1 green,2 1,5 0}", "{1 'green',2 '1',5 '0'}"),
    ("-1,red,0,7,1,1", "-1 , red , 0 , 7 , 1 , '1'"),
    ("{5 0,1 blue}", '{5 0, 1 "blue"}'),
]
MIXED_FEATURES = [[0.5, 2, -2], [3, 0, 1e-3], [0, 0, 0], [0, 1, 0], [-1, 0, 7], [0, 2, 0]]
MIXED_LABELS = [[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]]  # A, B, C


def test_plain_and_quoted_rows_read_the_same(tmp_path: Path) -> None:
    """Plain rows (read in place) and rows with quotes and blanks (the reference parser) give the
    same values, in any mix of dense and sparse rows, with comments and blank lines between."""
    xml = '<labels><label name="C"/><label name="A"/><label name="B"/></labels>'
    (tmp_path / "m.xml").write_text(xml)
    expected_x = np.array(MIXED_FEATURES, np.float32)
    expected_y = np.array(MIXED_LABELS, np.float32)
    for variant in range(3):
        rows = [plain if variant == 0 else quoted for plain, quoted in MIXED_ROWS]
        if variant == 2:  # alternate, with comments and blank lines in the data section
            rows = [r[k % 2] for k, r in enumerate(MIXED_ROWS)]
            rows = [line for r in rows for line in (r, "% a comment", "")]
        path = tmp_path / f"m{variant}.arff"
        path.write_text(MIXED_HEADER + "\n".join(rows) + "\n")
        got = load_multilabel_arff(path, tmp_path / "m.xml")
        assert got.class_names == ("A", "B", "C")
        assert got.data.is_contiguous() and got.targets.is_contiguous()
        np.testing.assert_array_equal(got.data.numpy(), expected_x)
        np.testing.assert_array_equal(got.targets.numpy(), expected_y)
        by_name = load_multilabel_arff(path, ["B", "C"])  # an explicit order is kept
        np.testing.assert_array_equal(by_name.targets.numpy(), expected_y[:, [1, 2]])
        # the features in file order: f0, colour, A (not a label here), f1
        np.testing.assert_array_equal(by_name.data.numpy()[:, [0, 1, 3]], expected_x)
        np.testing.assert_array_equal(by_name.data.numpy()[:, 2], expected_y[:, 0])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{0 1,0 2}", r"m\.arff:10: sparse index 0 appears twice"),
        ("{9 1}", r"m\.arff:10: sparse index 9 outside \[0, 6\) attributes"),
        (
            "{0 1,2 2}",
            r"m\.arff:10: column 2 \('A'\): '2' is not one of the declared nominal values",
        ),
        ("{4 2}", r"m\.arff:10: label 'B' has value '2', expected 0 or 1"),
        ("1,purple,0,0,0,0", r"m\.arff:10: column 1 \('colour'\): 'purple' is not one of"),
        ("1,red,0,x,0,0", r"m\.arff:10: column 3 \('f1'\): 'x' is not a number"),
    ],
)
def test_row_errors_after_a_plain_row(tmp_path: Path, row: str, message: str) -> None:
    """A bad row after a plain one is reported by the reference parser, with its line."""
    path = tmp_path / "m.arff"
    path.write_text(MIXED_HEADER + MIXED_ROWS[0][0] + "\n" + row + "\n")
    with pytest.raises(ValueError, match=message):
        load_multilabel_arff(path, ["A", "B", "C"])
