"""Multi-label ARFF reader (Mulan and MEKA conventions), dense and sparse rows.

ARFF (Weka's Attribute-Relation File Format) has a header of ``@relation`` and ``@attribute``
lines, then ``@data`` rows. Multi-label data sets mark some attributes as labels:

- **Mulan**: a separate XML file lists the label attribute names
  (``<labels><label name="Beach"/>...</labels>``); labels may sit anywhere among the attributes.
- **MEKA**: the relation name carries ``-C n`` (the first ``n`` attributes are labels) or
  ``-C -n`` (the last ``n``), e.g. ``@relation 'yeast: -C -14'``.

Rows are dense (``v1,v2,...``) or sparse (``{index value, ...}``, 0-based indices, omitted
values are 0 / the first nominal value).

:func:`load_multilabel_arff` reads one file; :func:`load_mulan` reads a Mulan folder
(``NAME-train.arff``, ``NAME-test.arff``, ``NAME.xml``) and checks that the two splits agree.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import torch

from longtail.data._arff_rows import _Attribute, _split_values, _unquote, read_rows
from longtail.data._types import LabeledTensors

__all__ = ["load_mulan", "load_multilabel_arff", "mulan_set_names", "read_mulan_labels"]

_NUMERIC = {"numeric", "real", "integer"}
_UNSUPPORTED = {"string", "date", "relational"}
_MEKA_C = re.compile(r"(?:^|\s)-C\s+(-?\d+)(?=\s|$|['\"])")


def _split_first(text: str) -> tuple[str, str]:
    """Split off the first (possibly quoted) token; return (token, rest)."""
    text = text.lstrip()
    if text and text[0] in "'\"":
        quote = text[0]
        i = 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                return _unquote(text[: i + 1]), text[i + 1 :]
            i += 1
        raise ValueError("unterminated quoted name")
    parts = text.split(None, 1)
    if not parts:
        raise ValueError("missing name")
    return parts[0], parts[1] if len(parts) > 1 else ""


def read_mulan_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read the label names from a Mulan XML label file, in document order.

    Nested (hierarchical) ``<label>`` elements are all returned. Documents with a ``DOCTYPE`` or
    entity declarations are refused (no entity expansion of untrusted XML).

    Raises:
        ValueError: malformed XML, ``DOCTYPE`` / ``ENTITY`` present, a label without a name, or no
            labels at all (message names the file).
    """
    raw = Path(path).read_bytes()
    upper = raw.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise ValueError(f"{path}: XML label files with DOCTYPE / ENTITY declarations are refused")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ValueError(f"{path}: malformed XML: {exc}") from exc
    names: list[str] = []
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "label":
            name = element.get("name")
            if name is None:
                raise ValueError(f"{path}: <label> element without a name attribute")
            names.append(name)
    if not names:
        raise ValueError(f"{path}: no <label name=...> elements")
    return names


def _parse_attribute(path: Path, lineno: int, rest: str) -> _Attribute:
    try:
        name, type_text = _split_first(rest)
    except ValueError as exc:
        raise ValueError(f"{path}:{lineno}: bad @attribute line: {exc}") from exc
    type_text = type_text.strip()
    if type_text.startswith("{"):
        if not type_text.endswith("}"):
            raise ValueError(f"{path}:{lineno}: nominal attribute {name!r} lacks a closing '}}'")
        try:
            values = [_unquote(v) for v in _split_values(type_text[1:-1])]
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: bad nominal values: {exc}") from exc
        if not values or any(v == "" for v in values):
            raise ValueError(f"{path}:{lineno}: nominal attribute {name!r} has an empty value")
        codes: dict[str, float] = {}
        for index, value in enumerate(values):
            codes.setdefault(value, float(index))
        return _Attribute(name, codes, lineno)
    kind = type_text.split(None, 1)[0].lower() if type_text else ""
    if kind in _NUMERIC:
        return _Attribute(name, None, lineno)
    if kind in _UNSUPPORTED:
        raise ValueError(
            f"{path}:{lineno}: attribute {name!r} has unsupported type {kind!r} "
            f"(only numeric/real/integer and nominal are supported)"
        )
    raise ValueError(f"{path}:{lineno}: attribute {name!r} has unknown type {type_text!r}")


def _label_columns(
    path: Path,
    attributes: list[_Attribute],
    labels: str | os.PathLike[str] | int | Sequence[str] | None,
    relation: str,
) -> list[int]:
    n_attr = len(attributes)
    if labels is None:
        match = _MEKA_C.search(relation)
        if match is None:
            raise ValueError(
                f"labels: None but the relation name {relation!r} of {path} has no MEKA "
                f"'-C n' option; pass the label file, a count or the names"
            )
        labels = int(match.group(1))
    if isinstance(labels, bool):
        raise TypeError(f"labels: expected a path, int, sequence of names or None, got {labels!r}")
    if isinstance(labels, int):
        if labels == 0 or abs(labels) >= n_attr:
            raise ValueError(
                f"labels: {labels} label attributes is impossible for {path} with "
                f"{n_attr} attributes (need 0 < |labels| < {n_attr})"
            )
        return list(range(labels)) if labels > 0 else list(range(n_attr + labels, n_attr))
    from_xml = isinstance(labels, (str, os.PathLike))
    if isinstance(labels, (str, os.PathLike)):
        names = read_mulan_labels(labels)
    elif isinstance(labels, Sequence) and all(isinstance(n, str) for n in labels):
        names = list(labels)
    else:
        raise TypeError(f"labels: expected a path, int, sequence of names or None, got {labels!r}")
    if not names:
        raise ValueError("labels: empty sequence of label names")
    index = {a.name: i for i, a in enumerate(attributes)}
    missing = [n for n in names if n not in index]
    if missing:
        source = f" (listed in {labels})" if isinstance(labels, (str, os.PathLike)) else ""
        raise ValueError(f"labels: label attributes {missing[:5]} not declared in {path}{source}")
    if len(set(names)) != len(names):
        raise ValueError(f"labels: duplicate label names in {names}")
    columns = [index[n] for n in names]
    if from_xml:  # Mulan's convention: labels in the order of the ARFF attributes
        columns.sort()
    if len(columns) >= n_attr:
        raise ValueError(f"labels: every attribute of {path} is a label; no features left")
    return columns


def load_multilabel_arff(
    path: str | os.PathLike[str],
    labels: str | os.PathLike[str] | int | Sequence[str] | None,
) -> LabeledTensors:
    """Load a multi-label ARFF file (Mulan or MEKA convention).

    Args:
        path: the ``.arff`` file.
        labels: which attributes are labels:

            - a path (``str`` / ``PathLike``) to a **Mulan XML** label file;
            - an ``int`` ``n`` (**MEKA** style): the first ``n`` attributes, or the last ``|n|``
              if negative;
            - a sequence of label attribute names;
            - ``None``: read MEKA's ``-C n`` / ``-C -n`` from the relation name.

            Label columns follow the order of the attributes in the ARFF file (as Mulan's
            ``getLabelIndices``; yeast's XML lists Class6 before Class4, the result does not),
            except for an explicit sequence of names, whose order is kept. All other
            attributes are features, in file order.

    Supported: ``%`` comment lines, quoted relation / attribute names and values, attribute types
    ``numeric`` / ``real`` / ``integer`` and nominal ``{...}``, dense rows and sparse rows
    ``{index value, ...}`` (0-based indices; omitted entries are 0, i.e. the first nominal value).
    Nominal features are encoded as the index of their value in the declaration; ``?`` (missing)
    features become NaN. Label attributes must take the values 0 and 1 (nominal ``{0,1}`` or
    numeric); a missing label ``?`` becomes ``-1`` (unknown, ignored by :mod:`longtail.metrics`).

    Returns:
        :class:`LabeledTensors` with ``data`` ``float32`` ``(N, F)``, ``targets`` ``float32``
        ``(N, L)`` in ``{0, 1}`` and ``class_names`` the ``L`` label names.

    Raises:
        ValueError: malformed header, unknown / unsupported attribute type (``string``, ``date``,
            ``relational``), wrong number of values in a row, bad or repeated sparse index, a
            value that is not a number / not a declared nominal value, a label outside {0, 1},
            label attributes not found. The message names the file and the line number.
        TypeError: ``labels`` of an unsupported type.
    """
    if labels is not None and not isinstance(labels, (str, os.PathLike, int, Sequence)):
        raise TypeError(f"labels: expected a path, int, sequence of names or None, got {labels!r}")
    file = Path(path)
    with open(file, "rb") as handle:
        lines = _lines(file, handle)
        relation, attributes = _read_header(file, lines)
        columns = _label_columns(file, attributes, labels, relation)
        for j in columns:
            _check_label_attribute(file, attributes[j])
        features, targets = read_rows(file, lines, attributes, columns)
    names = tuple(attributes[j].name for j in columns)
    return LabeledTensors(torch.from_numpy(features), torch.from_numpy(targets), names)


def _lines(file: Path, handle: BinaryIO) -> Iterator[tuple[int, str, bool]]:
    """``(line number, stripped text, ends with a line break)`` of the non-blank, non-comment
    lines of an open ARFF file."""
    for lineno, raw_bytes in enumerate(handle, start=1):
        try:
            line = raw_bytes.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{file}:{lineno}: not UTF-8 text: {exc}") from None
        if not line or line.startswith("%"):
            continue
        yield lineno, line, raw_bytes.endswith(b"\n")


def _read_header(
    file: Path, lines: Iterator[tuple[int, str, bool]]
) -> tuple[str, list[_Attribute]]:
    """Consume the header up to and including ``@data``; return (relation, attributes)."""
    relation = ""
    attributes: list[_Attribute] = []
    for lineno, line, _ in lines:
        lower = line.lower()
        if lower.startswith("@relation"):
            relation = _unquote(line[len("@relation") :])
        elif lower.startswith("@attribute"):
            attributes.append(_parse_attribute(file, lineno, line[len("@attribute") :]))
        elif lower.startswith("@data"):
            if not attributes:
                raise ValueError(f"{file}:{lineno}: @data before any @attribute")
            return relation, attributes
        else:
            raise ValueError(f"{file}:{lineno}: unexpected header line {line[:60]!r}")
    raise ValueError(f"{file}: no @data section")


def _check_label_attribute(path: Path, attribute: _Attribute) -> None:
    if attribute.codes is not None and not set(attribute.codes) <= {"0", "1"}:
        raise ValueError(
            f"{path}:{attribute.line}: label attribute {attribute.name!r} must be nominal "
            f"{{0,1}} or numeric, got values {sorted(attribute.codes)}"
        )


def mulan_set_names(directory: str | os.PathLike[str]) -> list[str]:
    """The Mulan sets of a folder: every NAME with ``NAME.xml``, ``NAME-train.arff`` and
    ``NAME-test.arff`` there, sorted (empty for a folder that does not exist)."""
    folder = Path(directory)
    stems = sorted(p.name[: -len(".xml")] for p in folder.glob("*.xml") if p.is_file())
    return [
        stem
        for stem in stems
        if (folder / f"{stem}-train.arff").is_file() and (folder / f"{stem}-test.arff").is_file()
    ]


def _find_mulan_name(folder: Path) -> str:
    """The NAME of the only ``NAME.xml`` of ``folder`` with ``NAME-train.arff`` and
    ``NAME-test.arff`` beside it."""
    xmls = sorted(p.name for p in folder.glob("*.xml"))
    candidates = mulan_set_names(folder)
    if len(candidates) == 1:
        return candidates[0]
    arffs = sorted(p.name for p in folder.glob("*.arff"))
    why = (
        f"{len(candidates)} complete sets ({candidates[:10]})"
        if candidates
        else "no NAME.xml with NAME-train.arff and NAME-test.arff"
    )
    raise ValueError(
        f"name: cannot infer the data set name in {folder}: found {why}; XML files "
        f"{xmls[:10]}, ARFF files {arffs[:10]}; pass name='NAME' for NAME-train.arff, "
        f"NAME-test.arff and NAME.xml"
    )


def _kind(attribute: _Attribute) -> str:
    if attribute.codes is None:
        return "numeric"
    return "nominal {" + ",".join(attribute.codes) + "}"


def load_mulan(
    directory: str | os.PathLike[str], name: str | None = None
) -> tuple[LabeledTensors, LabeledTensors]:
    """Load a Mulan data set folder: ``NAME-train.arff``, ``NAME-test.arff`` and ``NAME.xml``.

    Both splits are read with :func:`load_multilabel_arff` and the labels of ``NAME.xml`` (label
    columns in the ARFF attribute order, every other attribute a feature), after these checks on
    the headers (before any data row is parsed):

    - every label the XML names is an attribute of the training file;
    - the test file declares the same attributes as the training file: same names, same order,
      same kind (numeric, or nominal with the same values in the same order, since nominal values
      are encoded by their position);
    - after loading: both splits have the same label count ``L`` (the XML's) and feature count
      ``F``.

    A label with no positive example in a split is *not* an error here: whether that matters is
    for the training code to decide.

    Args:
        directory: the folder holding the three files.
        name: ``NAME``; default ``None`` infers it when the folder holds exactly one ``*.xml``
            whose stem has matching ``-train.arff`` and ``-test.arff`` files.

    Returns:
        ``(train, test)``, each a :class:`LabeledTensors` with ``data`` ``float32`` ``(N, F)``,
        ``targets`` ``float32`` ``(N, L)`` in ``{0, 1}`` (``-1`` for a missing label ``?``) and
        ``class_names`` the ``L`` label names.

    Raises:
        FileNotFoundError: ``directory`` is not a folder, or one of the three files is missing.
        ValueError: the name cannot be inferred (the message lists the XML / ARFF files found);
            an XML label missing from the training ARFF (names the label and both files); the test
            attributes differ from the training ones (names the first differing attribute, its
            line and both files); different label / feature counts; and every error of
            :func:`load_multilabel_arff` / :func:`read_mulan_labels` (file and line).
        TypeError: ``name`` not a string.
    """
    folder = Path(directory)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name: expected a str or None, got {name!r}")
    if name is not None and (not name or "/" in name or os.sep in name):
        raise ValueError(f"name: expected a file name stem such as 'scene', got {name!r}")
    if not folder.is_dir():
        raise FileNotFoundError(f"directory: {str(folder)!r} is not a directory")
    if name is None:
        name = _find_mulan_name(folder)
    train_path = folder / f"{name}-train.arff"
    test_path = folder / f"{name}-test.arff"
    xml_path = folder / f"{name}.xml"
    missing = [p.name for p in (train_path, test_path, xml_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {missing} for Mulan data set {name!r}")

    label_names = read_mulan_labels(xml_path)
    if len(set(label_names)) != len(label_names):
        duplicate = next(n for n in label_names if label_names.count(n) > 1)
        raise ValueError(f"{xml_path}: label {duplicate!r} is listed twice")
    with open(train_path, "rb") as handle:
        _, train_attributes = _read_header(train_path, _lines(train_path, handle))
    with open(test_path, "rb") as handle:
        _, test_attributes = _read_header(test_path, _lines(test_path, handle))
    declared = {a.name for a in train_attributes}
    for label in label_names:
        if label not in declared:
            raise ValueError(
                f"{xml_path}: label {label!r} is not an attribute of {train_path} "
                f"(no '@attribute {label} ...' line)"
            )
    for position in range(max(len(train_attributes), len(test_attributes))):
        a = train_attributes[position] if position < len(train_attributes) else None
        b = test_attributes[position] if position < len(test_attributes) else None
        if a is not None and b is not None and a.name == b.name and _kind(a) == _kind(b):
            continue
        if a is None:
            assert b is not None
            raise ValueError(
                f"{test_path}:{b.line}: attribute {position} {b.name!r} is not in {train_path} "
                f"({len(train_attributes)} attributes there, {len(test_attributes)} here)"
            )
        if b is None:
            raise ValueError(
                f"{test_path}: lacks attribute {position} {a.name!r} of {train_path}:{a.line} "
                f"({len(train_attributes)} attributes there, {len(test_attributes)} here)"
            )
        raise ValueError(
            f"{test_path}:{b.line}: attribute {position} is {b.name!r} ({_kind(b)}) but "
            f"{train_path}:{a.line} declares {a.name!r} ({_kind(a)}): the test attributes must "
            f"match the training attributes (names, order and types)"
        )

    train = load_multilabel_arff(train_path, xml_path)
    test = load_multilabel_arff(test_path, xml_path)
    shapes = {
        str(train_path): (train.data.shape[1], train.targets.shape[1]),
        str(test_path): (test.data.shape[1], test.targets.shape[1]),
    }
    if train.targets.shape[1] != len(label_names) or test.targets.shape[1] != len(label_names):
        raise ValueError(
            f"{xml_path}: lists {len(label_names)} labels but (features, labels) are {shapes}"
        )
    if train.data.shape[1] != test.data.shape[1] or train.class_names != test.class_names:
        raise ValueError(f"{name}: train and test disagree: (features, labels) are {shapes}")
    return train, test
