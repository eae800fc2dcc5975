"""The run report: table (repeated columns, same methods), intro, plots legible at any class count,
report.html (self-contained, checked in headless Chromium), the section hook.

The run folders are synthetic (results.json, config.yaml, run.json and every result.json written
here, no training), so a plot's input is known; every figure the report saves is inspected before
it is written: axis labels on every panel, readable font sizes, tick labels that do not collide,
no text on top of other text, nothing cut off.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtail.engine import report as R
from longtail.engine.methods import canonical_loss
from longtail.engine.report import write as W
from longtail.engine.report.html import render_html
from longtail.engine.report.style import GREY

REPO = Path(__file__).resolve().parents[1]
CHECK_SCRIPT = REPO / "scripts" / "check_html_report.py"
CHROMIUM = Path("/usr/bin/chromium")

FASHION = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
SPECS = [
    ("balanced_accuracy", "Balanced acc.", True),
    ("accuracy", "Accuracy", True),
    ("many", "Many", True),
    ("medium", "Medium", True),
    ("few", "Few", True),
    ("ece", "ECE", False),
]
ML_SPECS = [
    ("mAP", "mAP", True),
    ("CF1", "CF1", True),
    ("OF1", "OF1", True),
    ("tail_mAP", "Tail mAP", True),
]


def _comp(loss: str = "ce", sampler: str = "instance", **kw: Any) -> dict[str, Any]:
    base = {"loss": loss, "drw": False, "sampler": sampler, "head": "linear", "mix": None}
    return {**base, "posthoc": None, "second_stage": None, **kw}


# method -> (composition, params, skill): skill lifts the tail classes' accuracy
SINGLE_METHODS: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {
    "erm": (_comp(), {}, 0.0),
    "focal": (_comp("focal"), {"gamma": 2.0}, 0.15),
    "la-loss": (_comp("la"), {"tau": 1.0}, 0.6),
    "balanced-softmax": (_comp("balanced-softmax"), {}, 0.6),
    "la-half": (_comp("la"), {"tau": 0.5}, 0.4),
    "ldam-drw": (_comp("ldam", drw=True, head="cosine"), {"max_margin": 0.5, "scale": 30.0}, 0.55),
    "balanced": (_comp(), {}, 0.8),
}
ML_METHODS: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {
    "bce": (_comp("bce"), {}, 0.0),
    "focal": (_comp("focal"), {}, 0.1),
    "asl": (_comp("asl"), {}, 0.3),
    "cb-bce": (_comp("cb-bce"), {}, 0.2),
    "cb-focal": (_comp("cb-focal"), {}, 0.25),
    "hill": (_comp("hill"), {}, 0.35),
    "rfs": (_comp("bce", sampler="rfs"), {}, 0.4),
}
YEAST_COUNTS = [261, 324, 342, 265, 212, 183, 123, 154, 42, 72, 104, 580, 550, 7]


def _stats(values: Sequence[float]) -> dict[str, Any]:
    m = sum(values) / len(values)
    std = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0
    return {"mean": m, "std": std, "values": list(values)}


def _thirds(c: int) -> list[list[int]]:
    q, r = divmod(c, 3)
    sizes = [q + (r >= 1), q + (r >= 2), q]
    out, start = [], 0
    for s in sizes:
        out.append(list(range(start, start + s)))
        start += s
    return out


def _single_record(
    c: int, test: Sequence[int], skill: float, seed: int, order: Sequence[int]
) -> dict[str, Any]:
    """One (method, seed) result: class ``order[r]`` has the r-th largest count; accuracy falls
    towards the tail unless ``skill``; wrong predictions go mostly to the three head classes."""
    rng = random.Random(f"{skill}-{seed}")
    confusion = [[0] * c for _ in range(c)]
    for r, k in enumerate(order):
        p = min(
            1.0, max(0.0, 0.95 - (1 - skill) * 0.7 * r / max(c - 1, 1) + rng.uniform(-0.04, 0.04))
        )
        right = round(p * test[k])
        confusion[k][k] = right
        for i in range(test[k] - right):
            target = order[i % 3] if rng.random() < 0.8 or c < 4 else rng.randrange(c)
            confusion[k][target if target != k else order[(r + 1) % c]] += 1
    per_class = [confusion[k][k] / test[k] for k in range(c)]
    ranked_groups = [[order[r] for r in g] for g in _thirds(c)]
    bins = 15
    counts = [0] * 10 + [rng.randrange(5, 40) for _ in range(bins - 10)]
    metrics = {
        "balanced_accuracy": sum(per_class) / c,
        "accuracy": sum(confusion[k][k] for k in range(c)) / sum(test),
        **{
            g: sum(per_class[k] for k in idx) / len(idx)
            for g, idx in zip(("many", "medium", "few"), ranked_groups, strict=True)
        },
        "ece": rng.uniform(0.01, 0.2),
    }
    history = [
        {"epoch": e, "train_loss": 2.0 / (e + 1), "test_balanced_accuracy": metrics["balanced_accuracy"] * (e + 1) / 4}
        for e in range(4)
    ]  # fmt: skip
    return {
        "metrics": metrics,
        "details": {
            "per_class": per_class,
            "confusion": confusion,
            "reliability": {
                "confidence": [None if not n else (b + 0.5) / bins for b, n in enumerate(counts)],
                "accuracy": [None if not n else rng.uniform(0.3, 1.0) for n in counts],
                "count": counts,
            },
        },
        "history": history,
    }


def _ml_record(counts: Sequence[int], skill: float, seed: int) -> dict[str, Any]:
    rng = random.Random(f"ml-{skill}-{seed}")
    top = max(counts)
    ap = [
        min(1.0, 0.05 + 0.8 * (n / top) ** 0.5 + 0.1 * skill + rng.uniform(-0.02, 0.02))
        for n in counts
    ]
    metrics = {"mAP": sum(ap) / len(ap), "CF1": rng.uniform(0.3, 0.5), "OF1": rng.uniform(0.5, 0.6)}
    tail = sorted(range(len(counts)), key=lambda j: counts[j])[: len(counts) // 3]
    metrics["tail_mAP"] = sum(ap[j] for j in tail) / len(tail)
    history = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "test_mAP": metrics["mAP"]} for e in range(3)
    ]
    return {
        "metrics": metrics,
        "details": {"per_label_ap": ap, "tail_labels": tail},
        "history": history,
    }


def make_run(
    root: Path,
    *,
    names: Sequence[str],
    train_counts: Sequence[int],
    test_counts: Sequence[int],
    methods: Mapping[str, tuple[dict[str, Any], dict[str, Any], float]],
    task: str = "single-label",
    seeds: Sequence[int] = (0, 1),
    random_order: bool = False,
    dataset: str = "image-folder",
    data_source: str | None = "/data/my_images",
    params_in_results: bool = True,
) -> Path:
    """A run folder as ``longtail bench`` writes it, with synthetic results."""
    c = len(names)
    root.mkdir(parents=True)
    specs = SPECS if task == "single-label" else ML_SPECS
    entries: dict[str, Any] = {}
    for m, (comp, params, skill) in methods.items():
        records = []
        for s in seeds:
            if task == "single-label":
                order = list(range(c))
                if random_order:
                    random.Random(s).shuffle(order)
                rec = _single_record(c, test_counts, skill, s, order)
                group = [0] * c
                for r, k in enumerate(order):
                    group[k] = sorted(train_counts, reverse=True)[r]
            else:
                rec = _ml_record(train_counts, skill, s)
                group = list(train_counts)
            rec.update(
                method=m, seed=s, composition=comp, params=params, class_counts=group,
                group_counts=group, train_seconds=1.0, epochs=len(rec["history"]),
            )  # fmt: skip
            (root / m / f"seed_{s}").mkdir(parents=True)
            (root / m / f"seed_{s}" / "result.json").write_text(json.dumps(rec))
            records.append(rec)
        entries[m] = {
            "seeds": list(seeds),
            "train_seconds": 1.0,
            "metrics": {k: _stats([r["metrics"][k] for r in records]) for k, _, _ in specs},
            "composition": comp,
        }
        if params_in_results:
            entries[m]["params"] = params
    results = {
        "dataset": dataset,
        "task": task,
        "imbalance_factor": None,
        "class_counts": list(train_counts),
        "metric_specs": [{"name": n, "label": lab, "higher_is_better": h} for n, lab, h in specs],
        "methods": entries,
        "class_names": list(names),
        "num_train": sum(train_counts),
        "num_test": sum(test_counts),
        "data_source": data_source,
        "stages_trained": 0,
    }
    (root / "results.json").write_text(json.dumps(results))
    config = {
        "name": "synthetic",
        "task": task,
        "methods": list(methods),
        "seeds": list(seeds),
        "data": {
            "dataset": dataset,
            "data_dir": data_source,
            "imbalance_factor": None,
            "test_fraction": 0.2,
            "class_order": "random" if random_order else "fixed",
        },
        "model": {"arch": "cnn"},
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.1, "schedule": "cosine"},
        "metrics": {"shot_mode": "terciles", "n_bins": 15},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    run = {"command": "longtail bench x.yaml", "started": "2026-12-01 10:00:00", "python": "3.11",
           "torch": "2.13.0", "platform": "Linux", "world_size": 1}  # fmt: skip
    (root / "run.json").write_text(json.dumps(run))
    return root


# ---- figure inspection ------------------------------------------------------------------------


def _boxes_overlap(a: Any, b: Any, slack: float = 1.0) -> bool:
    return bool(
        a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1
    )


def inspect_figure(fig: Any, *, cropped: bool) -> dict[str, Any]:
    """Legibility problems of a figure, and its panels' tick labels.

    Every visible panel (not a colour bar) needs an x and a y label; text is at least 7 pt; tick
    labels of one axis do not collide (horizontal ones: no overlap; rotated ones: their spacing
    across the text direction is at least the text height); no title, axis label or tick label
    overlaps another axes' text; without ``cropped`` (saved without bbox_inches="tight") all text
    lies inside the canvas.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    dpi = fig.dpi
    width, height = fig.canvas.get_width_height()
    problems: list[str] = []
    texts: list[tuple[str, Any, Any]] = []  # (owner id, bbox, description)
    ticks: dict[str, list[list[str]]] = {"x": [], "y": []}
    panels = 0
    for ax in fig.axes:
        if not ax.axison:
            continue
        if ax.get_label() == "<colorbar>" or hasattr(ax, "_colorbar"):
            owner = f"colorbar{id(ax)}"
        else:
            panels += 1
            owner = str(id(ax))
            name = ax.get_title() or "panel"
            if not ax.get_xlabel().strip():
                problems.append(f"{name}: no x label")
            if not ax.get_ylabel().strip():
                problems.append(f"{name}: no y label")
        for t in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if t.get_text().strip():
                texts.append((owner, t.get_window_extent(renderer), f"'{t.get_text()[:30]}'"))
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
            k = 0 if which == "x" else 1
            labels = [
                t
                for t in axis.get_ticklabels()
                if t.get_visible()
                and t.get_text()
                and lo - 1e-9 <= t.get_position()[k] <= hi + 1e-9
            ]  # the labels drawn: a tick outside the view limits is not
            if owner.startswith("colorbar"):
                continue
            ticks[which].append([t.get_text() for t in labels])
            for t in labels:
                if t.get_fontsize() < 7:
                    problems.append(f"tick label {t.get_text()!r} is {t.get_fontsize()} pt")
                texts.append((f"{owner}{which}", t.get_window_extent(renderer), repr(t.get_text())))
            if len(labels) < 2:
                continue
            pos = sorted(
                ((float(ax.transData.transform(t.get_position())[k]), t) for t in labels),
                key=lambda pt: pt[0],
            )
            for (p1, t1), (p2, t2) in itertools.pairwise(pos):
                h = t1.get_fontsize() * dpi / 72
                angle = abs(t1.get_rotation()) % 180
                if which == "x" and angle < 1:
                    b1, b2 = t1.get_window_extent(renderer), t2.get_window_extent(renderer)
                    if b1.x1 > b2.x0 + 1:
                        problems.append(
                            f"x tick labels {t1.get_text()!r}, {t2.get_text()!r} overlap"
                        )
                else:
                    across = (p2 - p1) * (math.sin(math.radians(angle)) if which == "x" else 1.0)
                    if across < 0.9 * h:
                        problems.append(
                            f"{which} tick labels {t1.get_text()!r}, {t2.get_text()!r}: "
                            f"{across:.1f} px apart, text {h:.1f} px high"
                        )
    if fig._suptitle is not None:
        texts.append(("suptitle", fig._suptitle.get_window_extent(renderer), "suptitle"))
    for i, (o1, b1, d1) in enumerate(texts):
        if not cropped and (b1.x0 < -1 or b1.y0 < -1 or b1.x1 > width + 1 or b1.y1 > height + 1):
            problems.append(f"{d1} is cut off (outside the canvas)")
        for o2, b2, d2 in texts[i + 1 :]:
            if o1 != o2 and not (o1.startswith(o2) or o2.startswith(o1)) and _boxes_overlap(b1, b2):
                problems.append(f"{d1} overlaps {d2}")
    return {"problems": problems, "panels": panels, "ticks": ticks, "size": (width, height)}


@pytest.fixture(scope="module")
def inspected() -> Iterator[dict[str, dict[str, Any]]]:
    """Every figure the report saves while this module runs, inspected (by file name; the last
    one of each name)."""
    seen: dict[str, dict[str, Any]] = {}
    original = R.ReportContext.save

    def save(self: R.ReportContext, fig: Any, filename: str, *, tight: bool = True) -> Path:
        seen[f"{self.run_dir.name}/{filename}"] = inspect_figure(fig, cropped=tight)
        return original(self, fig, filename, tight=tight)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(R.ReportContext, "save", save)
        yield seen


def _exp_counts(c: int, top: int, imbalance: float) -> list[int]:
    return [max(1, int(top * imbalance ** (-i / (c - 1)))) for i in range(c)]


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, inspected: dict[str, dict[str, Any]]
) -> dict[str, Path]:
    """Three synthetic run folders with their reports written: 10 named classes (balanced test
    set), 100 classes (a stratified hold-out), a multi-label run with yeast's label counts."""
    base = tmp_path_factory.mktemp("reports")
    ten = make_run(
        base / "ten",
        names=FASHION,
        train_counts=_exp_counts(10, 500, 50),
        test_counts=[100] * 10,
        methods=SINGLE_METHODS,
        dataset="fashion-mnist",
        data_source="/data/fashion-mnist",
    )
    counts = _exp_counts(100, 200, 40)
    hundred = make_run(
        base / "hundred",
        names=[f"species_{i:03d}_{'abcdefghij'[i % 10] * (i % 4 + 2)}" for i in range(100)],
        train_counts=counts,
        test_counts=[max(2, n // 4) for n in counts],
        methods={m: SINGLE_METHODS[m] for m in ("erm", "focal", "la-loss", "balanced")},
        data_source="/data/my_images",
    )
    ml = make_run(
        base / "ml",
        names=[f"Class{j + 1}" for j in range(14)],
        train_counts=YEAST_COUNTS,
        test_counts=[0] * 14,
        methods=ML_METHODS,
        task="multi-label",
        dataset="yeast",
        data_source="/data/multilabel/yeast",
    )
    for folder in (ten, hundred, ml):
        R.write_report(folder)
    return {"ten": ten, "hundred": hundred, "ml": ml}


# ---- the canonical loss and methods that are the same ---------------------------------------


def test_canonical_loss_maps_la_at_tau_one_to_balanced_softmax() -> None:
    assert canonical_loss("la", {"tau": 1.0}) == ("balanced-softmax", {})
    assert canonical_loss("la", {"tau": 1}) == ("balanced-softmax", {})
    assert canonical_loss("la", {"tau": 1.0, "x": 3}) == ("balanced-softmax", {"x": 3})
    assert canonical_loss("la", {"tau": 0.5}) == ("la", {"tau": 0.5})
    assert canonical_loss("la", {"tau": True}) == ("la", {"tau": True})  # a bool is not a number
    assert canonical_loss("la", {}) == ("la", {})
    assert canonical_loss("balanced-softmax", {}) == ("balanced-softmax", {})
    assert canonical_loss("focal", {"gamma": 1.0}) == ("focal", {"gamma": 1.0})


def test_canonical_loss_is_true_to_the_losses() -> None:
    """The identity it encodes holds for the library's losses (so the mark is not a guess)."""
    import torch

    from longtail.losses import balanced_softmax_loss, logit_adjusted_loss

    g = torch.Generator().manual_seed(0)
    z, y = (
        torch.randn(64, 7, generator=g, dtype=torch.float64),
        torch.randint(0, 7, (64,), generator=g),
    )
    counts = torch.tensor([500, 300, 120, 60, 20, 9, 3])
    la = logit_adjusted_loss(z, y, class_counts=counts, tau=1.0)
    torch.testing.assert_close(la, balanced_softmax_loss(z, y, class_counts=counts))
    assert not torch.allclose(logit_adjusted_loss(z, y, class_counts=counts, tau=0.5), la)


def _results(methods: Mapping[str, tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    return {
        "metric_specs": [{"name": "balanced_accuracy", "label": "Balanced acc.", "higher_is_better": True}],
        "methods": {
            m: {"seeds": [0], "train_seconds": 1.0, "composition": c, "params": p,
                "metrics": {"balanced_accuracy": {"mean": 0.5 + i / 100, "std": 0.0, "values": [0.5 + i / 100]}}}
            for i, (m, (c, p)) in enumerate(methods.items())
        },
    }  # fmt: skip


def test_same_method_groups_follow_the_canonical_identity() -> None:
    res = _results(
        {
            "erm": (_comp(), {}),
            "la-loss": (_comp("la"), {"tau": 1.0}),
            "balanced-softmax": (_comp("balanced-softmax"), {}),
            "my-la": (_comp("la"), {"tau": 1}),  # a recipe under another name
            "la-half": (_comp("la"), {"tau": 0.5}),
            "sqrt-bs": (_comp("balanced-softmax", sampler="sqrt"), {}),  # another sampler
            "hand": (_comp("<hand>"), {}),
            "hand2": (_comp("<hand>"), {}),  # hand-written losses are never compared
            "plain": (_comp(), {}),  # erm under another name
            "balanced": (_comp(), {}),  # the reference: other data
        }
    )
    assert R.same_method_groups(res) == [["erm", "plain"], ["la-loss", "balanced-softmax", "my-la"]]
    assert R.method_identity({"composition": _comp()}) is None  # no params: unknown


def test_the_power_sampler_at_one_half_is_square_root_sampling() -> None:
    res = _results(
        {
            "sqrt-la": (_comp("la", sampler="sqrt"), {"tau": 0.5}),
            "power-la": (_comp("la", sampler="power"), {"tau": 0.5, "sampler_q": 0.5}),
            "power-la-q": (_comp("la", sampler="power"), {"tau": 0.5, "sampler_q": 0.6}),
            "cb-la": (_comp("la", sampler="class-balanced"), {"tau": 0.5}),
            "power0-la": (_comp("la", sampler="power"), {"tau": 0.5, "sampler_q": 0}),
        }
    )
    assert R.same_method_groups(res) == [["sqrt-la", "power-la"], ["cb-la", "power0-la"]]
    note = [line for line in R.format_table(res).splitlines() if line.startswith("¹")]
    assert "sampler `power` with sampler_q 0.5 is sampler `sqrt`" in note[0]


def test_table_marks_same_methods_and_explains_them() -> None:
    res = _results(
        {
            "erm": (_comp(), {}),
            "la-loss": (_comp("la"), {"tau": 1.0}),
            "balanced-softmax": (_comp("balanced-softmax"), {}),
        }
    )
    md = R.format_table(res)
    rows = {line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")}
    assert {"erm", "la-loss ¹", "balanced-softmax ¹"} <= rows
    note = [line for line in md.splitlines() if line.startswith("¹")]
    assert len(note) == 1 and "`la-loss`, `balanced-softmax`" in note[0]
    assert "loss `la` with tau 1 is loss `balanced-softmax`" in note[0]
    text = R.format_table(res, markdown=False)
    assert "la-loss ¹" in text and "`" not in text and "**" not in text
    bare = R.format_table(res, notes=False).splitlines()
    assert all(line.startswith("| ") or line.startswith("|---") for line in bare)


def test_a_column_that_repeats_another_is_dropped_with_a_note() -> None:
    def res(acc_values: dict[str, list[float | None]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric_specs": [{"name": n, "label": lab, "higher_is_better": h} for n, lab, h in SPECS[:3]],
            "methods": {},
        }  # fmt: skip
        for m, vals in acc_values.items():
            bacc = [0.8, 0.9]
            out["methods"][m] = {
                "seeds": [0, 1],
                "train_seconds": 1.0,
                "metrics": {
                    "balanced_accuracy": {"mean": 0.85, "std": 0.07, "values": bacc},
                    "accuracy": {"mean": 0.85, "std": 0.07, "values": vals},
                    "many": {"mean": 0.9, "std": 0.0, "values": [0.9, 0.9]},
                },
            }
        return out

    same = res({"erm": [0.8, 0.9 + 1e-12], "drw": [0.8, 0.9]})
    assert R.repeated_columns(same) == {"accuracy": "balanced_accuracy"}
    md = R.format_table(same)
    assert md.splitlines()[0] == "| Method | Balanced acc. | Many | Seeds | Train s |"
    assert "Column *Accuracy* not shown: it equals *Balanced acc.*" in md
    assert "the test set is balanced" in md
    # equal means, different seeds: kept; one method differing: kept
    assert R.repeated_columns(res({"erm": [0.9, 0.8], "drw": [0.8, 0.9]})) == {}
    assert R.repeated_columns(res({"erm": [0.8, 0.9], "drw": [0.8, 0.9001]})) == {}
    assert R.repeated_columns(res({"erm": [0.8, None], "drw": [0.8, 0.9]})) == {}
    assert "Accuracy" in R.format_table(res({"erm": [0.8, 0.91]})).splitlines()[0]
    # another direction (lower is better) is never the same column
    flipped = res({"erm": [0.8, 0.9]})
    flipped["metric_specs"][1]["higher_is_better"] = False
    assert R.repeated_columns(flipped) == {}
    assert R.repeated_columns({"methods": {}}) == {}


# ---- the written report ------------------------------------------------------------------------


@pytest.mark.slow
def test_report_names_the_data_read_and_the_table_is_right(runs: dict[str, Path]) -> None:
    md = (runs["ten"] / "report.md").read_text()
    title = md.splitlines()[0]
    assert title == "# synthetic: fashion-mnist, single-label"  # the folder's name is the loader's
    assert "read from `/data/fashion-mnist`" in md
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "Accuracy" not in header.replace("Balanced acc.", "")  # balanced test set: dropped
    assert "la-loss ¹" in md and "balanced-softmax ¹" in md and "la-half ¹" not in md
    hundred = (runs["hundred"] / "report.md").read_text()
    assert "read from `/data/my_images` (loader `image-folder`)" in hundred
    assert "| Accuracy |" in next(
        line for line in hundred.splitlines() if line.startswith("| Method")
    )
    assert "100 classes" in hundred and "200 to 5 per class" in hundred  # no list of 100 counts
    ml = (runs["ml"] / "report.md").read_text()
    assert "read from `/data/multilabel/yeast`" in ml and "Class14 7" in ml


def test_bundled_digits_are_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(W, "_sections", lambda ctx: [])  # the text only: no plots
    run = make_run(
        tmp_path / "d", names=[str(i) for i in range(4)], train_counts=[40, 20, 10, 5],
        test_counts=[10] * 4, methods={"erm": SINGLE_METHODS["erm"]}, dataset="digits",
        data_source=None,
    )  # fmt: skip
    md = R.write_report(run).read_text()
    assert md.startswith("# synthetic: digits, single-label")
    assert "bundled with scikit-learn" in md


def test_older_results_without_params_take_them_from_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(W, "_sections", lambda ctx: [])  # the text only: no plots
    methods = {m: SINGLE_METHODS[m] for m in ("erm", "la-loss", "balanced-softmax")}
    run = make_run(
        tmp_path / "old", names=FASHION[:4], train_counts=[40, 20, 10, 5], test_counts=[10] * 4,
        methods=methods, params_in_results=False,
    )  # fmt: skip
    md = R.write_report(run).read_text()
    assert "la-loss ¹" in md and "balanced-softmax ¹" in md


@pytest.mark.slow
def test_every_plot_is_written_and_linked(runs: dict[str, Path]) -> None:
    expected = {
        "ten": {"per_class_accuracy", "per_class_accuracy_grid", "confusion", "reliability", "training_curves"},
        "hundred": {"per_class_accuracy", "confusion", "reliability", "training_curves"},
        "ml": {"per_label_ap", "per_label_ap_grid", "training_curves"},
    }  # fmt: skip
    for key, names in expected.items():
        folder = runs[key]
        md = (folder / "report.md").read_text()
        assert {p.stem for p in (folder / "plots").glob("*.png")} == names
        for n in names:
            assert (folder / "plots" / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"(plots/{n}.png)" in md


def test_every_figure_is_legible(
    runs: dict[str, Path], inspected: dict[str, dict[str, Any]]
) -> None:
    ours = {k: v for k, v in inspected.items() if k.split("/")[0] in runs}
    assert len(ours) == 12
    bad = {name: info["problems"] for name, info in ours.items() if info["problems"]}
    assert not bad, json.dumps(bad, indent=1)[:3000]
    for name, info in ours.items():
        w, h = info["size"]
        assert w <= 1400 and h <= 3000, (name, w, h)  # report.html shows it at ~full size


def test_confusion_shows_names_up_to_twenty_classes_and_groups_beyond(
    runs: dict[str, Path], inspected: dict[str, dict[str, Any]]
) -> None:
    ten = inspected["ten/confusion.png"]
    assert ten["panels"] == len(SINGLE_METHODS)
    counts = _exp_counts(10, 500, 50)
    head_first = [FASHION[j] for j in sorted(range(10), key=lambda j: (-counts[j], j))]
    assert all(t == head_first for t in ten["ticks"]["x"]) and all(
        t == head_first for t in ten["ticks"]["y"]
    )
    hundred = inspected["hundred/confusion.png"]
    assert hundred["panels"] == 4
    assert all(t == ["correct", "→ many", "→ medium", "→ few"] for t in hundred["ticks"]["x"])
    assert all(t == ["many (34)", "medium (33)", "few (33)"] for t in hundred["ticks"]["y"])


def test_per_class_plots_name_classes_or_bin_them(
    runs: dict[str, Path], inspected: dict[str, dict[str, Any]]
) -> None:
    # `runs` writes the reports whose figures `inspected` records (not only in collection order)
    ten = inspected["ten/per_class_accuracy.png"]["ticks"]["x"][0]
    assert ten[0] == "T-shirt/top (500)" and ten[-1] == "Ankle boot (10)"
    hundred = inspected["hundred/per_class_accuracy.png"]["ticks"]["x"][0]
    assert (
        len(hundred) == 10
        and hundred[0].startswith("1-10\n(200-")
        and hundred[-1].startswith("91-100")
    )
    ml = inspected["ml/per_label_ap.png"]["ticks"]["x"][0]
    # labels head to tail, each with its count; 261 and 265 positives no longer collide
    assert ml[:2] == ["Class12 (580)", "Class13 (550)"] and ml[-1] == "Class14 (7)"
    # small multiples: a panel per method except the baseline and the reference
    assert inspected["ten/per_class_accuracy_grid.png"]["panels"] == len(SINGLE_METHODS) - 2
    assert inspected["ml/per_label_ap_grid.png"]["panels"] == len(ML_METHODS) - 1


def test_group_confusion_matches_a_hand_count() -> None:
    cm = [
        [5, 1, 0, 2],  # class 0 (group a): 5 right, 1 into a, 2 into b
        [0, 3, 1, 0],  # class 1 (group a): 3 right, 1 into b
        [4, 0, 2, 0],  # class 2 (group b): 2 right, 4 into a
        [0, 0, 1, 1],  # class 3 (group b): 1 right, 1 into b
    ]
    got = R.group_confusion(cm, ["a", "b"], [[0, 1], [2, 3]])
    assert got == [[8.0, 1.0, 3.0], [3.0, 4.0, 1.0]]
    assert [sum(r) for r in got] == [12.0, 8.0]  # every test example counted once


def test_highlighting_picks_the_best_distinct_methods() -> None:
    methods = {m: SINGLE_METHODS[m][:2] for m in SINGLE_METHODS}
    res = _results(methods)  # the later in the dict, the better
    styles = R.method_styles(res, list(methods))
    picked = sorted((s.order, m) for m, s in styles.items() if s.color not in ("black", GREY))
    # best first: balanced is the reference (black dashed), ldam-drw, la-half, then one of the
    # two same methods (balanced-softmax, la-loss), never both
    assert [m for _, m in picked] == ["ldam-drw", "la-half", "balanced-softmax"]
    assert styles["balanced-softmax"].label == "balanced-softmax (= la-loss)"
    assert styles["erm"].color == "black" and styles["balanced"].linestyle == "--"
    assert not styles["la-loss"].highlighted and not styles["focal"].highlighted
    few = {m: methods[m] for m in ("erm", "focal", "la-half")}
    assert all(s.highlighted for s in R.method_styles(_results(few), list(few)).values())


def test_random_class_order_labels_ranks_not_names(
    tmp_path: Path, inspected: dict[str, dict[str, Any]]
) -> None:
    run = make_run(
        tmp_path / "rand", names=FASHION[:6], train_counts=[300, 120, 60, 30, 12, 6],
        test_counts=[20] * 6, methods={m: SINGLE_METHODS[m] for m in ("erm", "focal")},
        random_order=True,
    )  # fmt: skip
    R.write_report(run)
    assert inspected["rand/confusion.png"]["ticks"]["x"][0] == [f"#{r}" for r in range(1, 7)]
    assert inspected["rand/per_class_accuracy.png"]["ticks"]["x"][0][0] == "#1 (300)"
    assert not inspected["rand/confusion.png"]["problems"]


# ---- report.html ---------------------------------------------------------------------------------


def test_html_report_is_one_self_contained_file(runs: dict[str, Path]) -> None:
    for key, folder in runs.items():
        page = (folder / "report.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>")
        images = page.count("<img ")
        assert images == len(list((folder / "plots").glob("*.png")))
        assert page.count('src="data:image/png;base64,') == images
        assert "http://" not in page and "https://" not in page, (
            key
        )  # nothing loaded from elsewhere
        assert '<table class="results">' in page and '<table class="meta">' in page
        assert "<summary>config.yaml" in page
    ten = (runs["ten"] / "report.html").read_text(encoding="utf-8")
    for method in SINGLE_METHODS:
        assert f"<td>{'balanced (reference)' if method == 'balanced' else method}" in ten
    assert "<th>data read</th><td>/data/fashion-mnist</td>" in ten
    assert "<th>seeds</th><td>0, 1</td>" in ten
    assert "<th>started</th><td>2026-12-01 10:00:00</td>" in ten
    assert "<th>torch</th><td>2.13.0</td>" in ten
    assert 'class="best"' in ten and "la-loss ¹" in ten


def test_html_escapes_and_renders_inline_marks() -> None:
    page = render_html(
        title="run: `a<b>`",
        paragraphs=["**bold** and *it* and `x*y*z` <script>alert(1)</script>"],
        table={"header": ["Method", "m"], "rows": [["<i>x</i>", "1"]], "best": [[False, True]], "notes": []},
        commands=["longtail bench a.yaml --out 'b c'"],
        figures=[],
        metadata=[("k", "<v>")],
    )  # fmt: skip
    assert "<h1>run: <code>a&lt;b&gt;</code></h1>" in page
    assert "<strong>bold</strong> and <em>it</em> and <code>x*y*z</code>" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<td>&lt;i&gt;x&lt;/i&gt;</td>" in page and '<td class="best">1</td>' in page
    assert "<td>&lt;v&gt;</td>" in page


def test_report_files_follow_the_umask(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "u", names=FASHION[:3], train_counts=[30, 10, 3], test_counts=[10] * 3,
        methods={"erm": SINGLE_METHODS["erm"]},
    )  # fmt: skip
    old = os.umask(0o027)
    try:
        R.write_report(run)
    finally:
        os.umask(old)
    for f in ("report.md", "report.html", "plots/confusion.png"):
        assert (run / f).stat().st_mode & 0o777 == 0o640, f
    assert not [p for p in run.rglob(".*.tmp")]  # no temporary file left


# ---- the section hook ---------------------------------------------------------------------------


def test_a_track_adds_its_plots_through_the_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    calls = []

    def scores(ctx: R.ReportContext) -> list[R.Section]:
        calls.append(list(ctx.names))
        fig, ax = plt.subplots()
        ax.hist([0.1, 0.2, 0.8])
        ax.set_xlabel("score")
        ax.set_ylabel("count")
        return [
            R.Section("Score distributions", ctx.save(fig, "scores.png"), "Known vs *unknown*.")
        ]

    monkeypatch.setitem(R.REPORT_SECTIONS, "toy-open-set", [])
    assert R.register_section("toy-open-set", scores) is scores
    R.register_section("toy-open-set", scores)  # once only
    assert R.REPORT_SECTIONS["toy-open-set"] == [scores]
    run = make_run(
        tmp_path / "os", names=FASHION[:3], train_counts=[30, 10, 3], test_counts=[10] * 3,
        methods={"erm": SINGLE_METHODS["erm"], "focal": SINGLE_METHODS["focal"]},
    )  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    results["task"] = "toy-open-set"
    (run / "results.json").write_text(json.dumps(results))
    md = R.write_report(run).read_text()
    assert calls == [["erm", "focal"]]
    assert "### Score distributions" in md and "(plots/scores.png)" in md
    assert (
        md.index("### Reliability")
        < md.index("### Score distributions")
        < md.index("### Training curves")
    )
    page = (run / "report.html").read_text()
    assert "<h3>Score distributions</h3>" in page and "Known vs <em>unknown</em>." in page


def test_a_track_words_its_runs_through_the_prose_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(W, "_sections", lambda ctx: [])  # the text only: no plots
    run = make_run(
        tmp_path / "toy", names=FASHION[:3], train_counts=[30, 10, 3], test_counts=[10] * 3,
        methods={"erm": SINGLE_METHODS["erm"]}, dataset="fashion-mnist", data_source=None,
    )  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    results["task"] = "toy-task"
    (run / "results.json").write_text(json.dumps(results))
    assert "the test set is balanced" in R.write_report(run).read_text()  # no prose: a classifier's
    monkeypatch.setitem(R.TASK_PROSE, "toy-task", R.TaskProse())  # so it is removed after the test
    del R.TASK_PROSE["toy-task"]
    assert R.register_prose("toy-task", R.TaskProse(test_set="the test set is the toy's own"))
    with pytest.raises(ValueError, match="already registered"):
        R.register_prose("toy-task", R.TaskProse())
    md = R.write_report(run).read_text()
    assert "; the test set is the toy's own. Model `" in md
    R.TASK_PROSE["toy-task"] = R.TaskProse(intro=lambda results, cfg: ["Only *this*."])
    md = R.write_report(run).read_text()
    assert md.startswith("# synthetic: fashion-mnist, toy-task\n\nOnly *this*.\n\n| Method")
    assert "<p>Only <em>this</em>.</p>" in (run / "report.html").read_text()


@pytest.mark.slow
def test_the_report_registries_load_the_tracks_on_first_read() -> None:
    """``longtail report RUN_DIR`` imports only the report: its registries import the tracks."""
    code = (
        "import json, sys\n"
        "import longtail.engine.report as R\n"
        "assert not any(m.startswith('longtail.tracks') for m in sys.modules)\n"
        "print(json.dumps([list(R.REPORT_SECTIONS), list(R.TASK_PROSE)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    sections, prose = json.loads(done.stdout)
    assert {"multi-label", "open-set", "single-label"} <= set(sections)
    assert {"multi-label", "open-set"} <= set(prose)


# ---- headless browser --------------------------------------------------------------------------


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), str(path), *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)"
)
def test_headless_chromium_renders_the_report(runs: dict[str, Path], tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = _check(runs["hundred"] / "report.html", "--screenshot", str(shot))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ") and "4 images decoded" in done.stdout
    assert "4 rows" in done.stdout  # 4 methods
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)"
)
def test_headless_check_fails_on_a_broken_image_and_a_missing_table(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\nbroken"  # a PNG signature, then nothing a browser can decode
    page = render_html(
        title="t", paragraphs=[], table={"header": ["Method", "m"], "rows": [["a", "1"]],
        "best": [[False, False]], "notes": []}, commands=[], figures=[("bad", "", png)],
        metadata=[("k", "v")],
    )  # fmt: skip
    (tmp_path / "broken.html").write_text(page)
    done = _check(tmp_path / "broken.html")
    assert done.returncode == 1 and "not every image decoded" in done.stderr
    assert "broken:bad" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "no_table.html").write_text(page.replace('class="results"', 'class="other"'))
    done = _check(tmp_path / "no_table.html")
    assert done.returncode == 1 and "no results table" in done.stderr
    assert _check(tmp_path / "missing.html").returncode == 2


def test_a_task_without_confusion_and_with_classes_per_seed(
    tmp_path: Path, inspected: dict[str, dict[str, Any]]
) -> None:
    """An open-set-like run: per-class accuracy only (one class undefined), other known classes
    per seed: the report draws what it has and labels ranks, not names."""
    run = make_run(
        tmp_path / "open", names=FASHION[:6], train_counts=[300, 120, 60, 30, 12, 6],
        test_counts=[20] * 6, methods={m: SINGLE_METHODS[m] for m in ("erm", "focal")},
    )  # fmt: skip
    for f in run.glob("*/seed_*/result.json"):
        rec = json.loads(f.read_text())
        seed = rec["seed"]
        rec["details"] = {
            "per_class": [None, *rec["details"]["per_class"][1:]],
            "known_classes": FASHION[seed : seed + 6],
        }
        f.write_text(json.dumps(rec))
    results = json.loads((run / "results.json").read_text())
    results["task"] = "toy-open-set-2"
    (run / "results.json").write_text(json.dumps(results))
    md = R.write_report(run).read_text()
    assert {p.name for p in (run / "plots").glob("*.png")} == {
        "per_class_accuracy.png",
        "training_curves.png",
    }
    assert "(plots/per_class_accuracy.png)" in md
    ticks = inspected["open/per_class_accuracy.png"]["ticks"]["x"][0]
    assert ticks[0] == "#1 (300)" and not inspected["open/per_class_accuracy.png"]["problems"]
