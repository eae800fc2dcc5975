"""``predictions.csv``: one row per input, written as the inputs stream through the predictor.

Columns by the bundle's output:

- ``class``: ``input``, ``prediction`` (class index), ``class_name``, ``probability``, then
  ``top{k}_class_name`` and ``top{k}_probability`` for ``k = 1..top_k``;
- ``class-or-unknown``: the same with ``prediction`` ``-1`` and ``class_name`` ``unknown`` when
  the method's score is below the bundle's threshold, and the ``score`` column;
- ``labels``: ``input``, ``labels`` (the labels above their thresholds, ``;``-separated), then
  ``p_<label>``, every label's probability;
- ``embedding``: ``input``, then ``e0 .. e{D-1}``.

The file is written to a temporary file beside ``out`` and renamed when complete, so an
interrupted run leaves no half-written file; an existing ``out`` is replaced only when it is a
predictions file (its header starts with ``input,``), never another file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from longtail.engine.bundle.inputs import InputBatch
from longtail.engine.bundle.predictor import UNKNOWN, Predictor
from longtail.engine.checkpoint import file_mode
from longtail.engine.prediction import rule_score

__all__ = ["check_output", "write_predictions"]


def check_output(out: Path) -> None:
    """Refuse an ``out`` that exists and is not a predictions file (``ValueError`` naming it)."""
    if out.is_dir():
        raise ValueError(f"--out: {out} is a folder; give a file name (predictions.csv)")
    if out.exists():
        try:
            with open(out, encoding="utf-8", errors="replace") as fh:
                head = fh.readline()
        except OSError:
            head = ""
        if not head.startswith("input,"):
            raise ValueError(f"--out: {out} exists and is not a predictions file; not overwritten")


def _header(p: Predictor, top_k: int) -> list[str]:
    if p.output == "embedding":
        return ["input"]
    if p.output == "labels":
        return ["input", "labels", *(f"p_{n}" for n in p.classes_)]
    cols = ["input", "prediction", "class_name", "probability"]
    for k in range(1, top_k + 1):
        cols += [f"top{k}_class_name", f"top{k}_probability"]
    if p.output == "class-or-unknown":
        cols.append("score")
    return cols


def _f(v: float) -> str:
    return f"{v:.6g}"


@torch.no_grad()
def write_predictions(
    predictor: Predictor,
    batches: Iterable[InputBatch],
    out: str | os.PathLike[str],
    *,
    top_k: int = 3,
    note: Callable[[str], None] | None = None,
) -> int:
    """Predict every input of ``batches`` and write ``out`` (see the module docstring); returns
    the number of rows. ``ValueError`` for an empty input or an ``out`` that may not be replaced."""
    path = Path(out)
    check_output(path)
    k = max(1, min(int(top_k), len(predictor.classes_) or 1))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    rows = 0
    stats = _Accuracy(len(predictor.classes_))
    truth: list[int] = []
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode())
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            header_written = False
            for batch in batches:
                for n in batch.notes:
                    if note is not None:
                        note(n)
                x = predictor.as_inputs(batch.x).to(predictor.device)
                z = predictor.logits(x).cpu()
                if batch.labels is not None:
                    truth = _true_classes(predictor, batch.labels)
                if not header_written:
                    header = _header(predictor, k)
                    if batch.labels is not None:
                        header.append("true_class")
                    if predictor.output == "embedding":
                        header += [f"e{j}" for j in range(z.shape[1])]
                    writer.writerow(header)
                    header_written = True
                out_rows = _rows(predictor, batch.ids, z, k)
                if batch.labels is not None:
                    for r, (row, t) in enumerate(zip(out_rows, truth, strict=True)):
                        row.append(batch.labels[r])
                        stats.add(int(row[1]), t)
                writer.writerows(out_rows)
                rows += len(batch.ids)
            if rows == 0:
                raise ValueError("INPUT: no input to predict (an empty folder or table)")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if stats.n and note is not None:
        note(stats.text())
    return rows


def _true_classes(p: Predictor, labels: list[str]) -> list[int]:
    """The class index of each true label (a class name, or its index); ``ValueError`` naming a
    label the bundle does not know."""
    if p.output not in ("class", "class-or-unknown"):
        raise ValueError("--label-column: true classes are for a single-label or open-set bundle")
    where = {n: i for i, n in enumerate(p.classes_)}
    out = []
    for v in labels:
        if v in where:
            out.append(where[v])
        elif v.isdigit() and int(v) < len(p.classes_):
            out.append(int(v))
        else:
            shown = ", ".join(p.classes_[:12]) + (" ..." if len(p.classes_) > 12 else "")
            raise ValueError(
                f"INPUT: the true class {v!r} is not a class of the bundle (classes: {shown})"
            )
    return out


class _Accuracy:
    """Accuracy and balanced accuracy of the predictions against the true classes."""

    def __init__(self, num_classes: int) -> None:
        self.n = 0
        self.hits = [0] * num_classes
        self.seen = [0] * num_classes

    def add(self, pred: int, true: int) -> None:
        self.n += 1
        self.seen[true] += 1
        self.hits[true] += int(pred == true)

    def text(self) -> str:
        acc = sum(self.hits) / self.n
        per = [h / s for h, s in zip(self.hits, self.seen, strict=True) if s]
        return (
            f"against the true classes: accuracy {100 * acc:.1f}%, balanced accuracy "
            f"{100 * sum(per) / len(per):.1f}% over {self.n} input(s) ({len(per)} classes seen)"
        )


def _rows(p: Predictor, ids: list[str], z: torch.Tensor, k: int) -> list[list[Any]]:
    if p.output == "embedding":
        return [[i, *(_f(v) for v in row)] for i, row in zip(ids, z.tolist(), strict=True)]
    probs = p.probabilities(z)
    decided = p.decide(z)
    if p.output == "labels":
        out = []
        for i, pr, d in zip(ids, probs.tolist(), decided.tolist(), strict=True):
            on = ";".join(n for n, hit in zip(p.classes_, d, strict=True) if hit)
            out.append([i, on, *(_f(v) for v in pr)])
        return out
    top_p, top_c = probs.topk(k, dim=1)
    names = p.classes_
    tp, tc = top_p.tolist(), top_c.tolist()
    picked = probs.gather(1, decided.clamp_min(0).unsqueeze(1)).squeeze(1)
    prob = torch.where(decided == UNKNOWN, probs.max(dim=1).values, picked).tolist()
    scores = rule_score(p.rule, z).tolist() if p.output == "class-or-unknown" else None
    out = []
    for r, (i, c) in enumerate(zip(ids, decided.tolist(), strict=True)):
        row: list[Any] = [i, c, "unknown" if c == UNKNOWN else names[c], _f(prob[r])]
        for j in range(k):
            row += [names[tc[r][j]], _f(tp[r][j])]
        if scores is not None:
            row.append(_f(scores[r]))
        out.append(row)
    return out
