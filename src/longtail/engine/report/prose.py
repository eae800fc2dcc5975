"""The text around the results table: the title, the paragraphs on the data, the model and how to
read the table, and the words of the run's metadata.

The text here is that of a classifier's run (class counts, a test set, many / medium / few). A task
whose runs read differently registers a :class:`TaskProse` with :func:`register_prose` when its
track is imported: what its test set is, its validation split, or its own paragraphs altogether.
The registry imports :mod:`longtail.tracks` the first time it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.engine.datasets.formats import DATA_FORMATS
from longtail.engine.report.table import metric_specs
from longtail.metrics import shot_groups
from longtail.registry import Registry

__all__ = [
    "TASK_PROSE",
    "TaskProse",
    "counts_text",
    "data_phrase",
    "data_source",
    "example_unit",
    "intro",
    "model_text",
    "prose_of",
    "register_prose",
    "report_title",
    "scaling_phrase",
    "validation_text",
]


@dataclass(frozen=True)
class TaskProse:
    """How the text around the table speaks of the runs of one task (see :func:`register_prose`).

    Attributes:
        intro: ``(results, config) -> paragraphs`` above the table, in place of the classifier's
            (data, class counts, test set, model, how to read the table); ``None``: those.
        test_set: what the test set is, e.g. ``"the test set is ..."``, for data that do not hold
            out their own test set; ``None``: the data's (balanced, a ``test/`` folder).
        validation: ``(results, data config) -> text`` of a run evaluated on a validation split
            (``data.validation_fraction``); ``None``: :func:`validation_text`.
    """

    intro: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] | None = None
    test_set: str | None = None
    validation: Callable[[Mapping[str, Any], Mapping[str, Any]], str] | None = None


#: The :class:`TaskProse` of each task (the ``task`` of ``results.json``) that has its own; read
#: first, it imports :mod:`longtail.tracks`.
TASK_PROSE: Registry[TaskProse] = Registry("report prose", locations=("longtail.tracks",))

_CLASSIFIER = TaskProse()


def register_prose(task: str, prose: TaskProse) -> TaskProse:
    """Use ``prose`` for the text of the reports of ``task`` (a track calls this once)."""
    return TASK_PROSE.register(task, prose)


def prose_of(task: object) -> TaskProse:
    """The :class:`TaskProse` of ``task`` (the tracks loaded first); the classifier's if none."""
    return TASK_PROSE.get(str(task), _CLASSIFIER)


def example_unit(dataset: object) -> str:
    """What a training example of loader ``dataset`` is called: ``"examples"`` for feature vectors
    (a format with ``inputs="vectors"``), ``"images"`` otherwise."""
    fmt = DATA_FORMATS.get(str(dataset))
    return "examples" if fmt is not None and fmt.inputs == "vectors" else "images"


def _profile(counts: Sequence[int], shot: str) -> str:
    """The data's own long tail (``imbalance_factor: null``): the real imbalance factor and the
    sizes of the table's many / medium / few groups."""
    if not counts or min(counts) <= 0:
        return "used as loaded"
    real = max(counts) / min(counts)
    groups = shot_groups(list(counts), mode=shot)  # type: ignore[arg-type]
    sizes = [int(groups[g].sum()) for g in ("many", "medium", "few")]
    empty = " (an empty group shows n/a)" if 0 in sizes else ""
    rule = (
        "by terciles of the classes"
        if shot == "terciles"
        else "by the usual thresholds (more than 100, 20 to 100, fewer than 20 examples)"
    )
    return (
        f"the data's own distribution, imbalance_factor null: real imbalance factor {real:.3g} = "
        f"largest / smallest training class; the table's groups {rule}: {sizes[0]} many, "
        f"{sizes[1]} medium, {sizes[2]} few classes{empty}"
    )


def counts_text(counts: Sequence[int], names: Sequence[str] | None = None) -> str:
    """The per-class counts: all of them for up to 20 classes, a summary beyond."""
    if len(counts) <= 20:
        if names:
            return ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=False))
        return str(list(counts))
    s = sorted(counts)
    median = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
    return (
        f"{max(counts)} to {min(counts)} per class, median {median:g} (every count is in "
        "`results.json`)"
    )


def data_source(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str | None:
    """The file or folder the run read: ``results.json``'s ``data_source`` (absolute), else the
    config's ``data.path`` / ``data.data_dir`` as written; ``None`` for bundled data."""
    if results.get("data_source"):
        return str(results["data_source"])
    data = cfg.get("data", {}) or {}
    source = data.get("path") or data.get("data_dir")
    return str(source) if source else None


#: How the feature vectors were scaled (``results["feature_scaling"]``), for the data sentence.
_SCALING_TEXT = {
    "standard": "standardised with the training mean and std",
    "maxabs": "divided by their training max |x| (not centred)",
    "none": "used as loaded",
}


def scaling_phrase(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    """``, features standardised ... (`data.feature_scaling: auto` chose `standard`)``, or ``""``
    when the features were not scaled by ``data.feature_scaling`` (images, digits)."""
    scaling = results.get("feature_scaling")
    if scaling not in _SCALING_TEXT:
        return ""
    asked = (cfg.get("data", {}) or {}).get("feature_scaling", "auto")
    how = (
        f"`data.feature_scaling: auto` chose `{scaling}`"
        if asked == "auto"
        else f"`data.feature_scaling: {scaling}`"
    )
    return f", features {_SCALING_TEXT[scaling]} ({how})"


def data_phrase(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    """``read from `PATH` (loader `x`)`` with the scaling of feature vectors, or the bundled
    digits."""
    source = data_source(results, cfg)
    dataset = results["dataset"]
    if source:
        mulan = (cfg.get("data", {}) or {}).get("mulan_name")
        extra = f", set `{mulan}`" if mulan else ""
        return f"read from `{source}` (loader `{dataset}`{extra}){scaling_phrase(results, cfg)}"
    if dataset == "digits":
        return "`digits`, the 8x8 digits bundled with scikit-learn (no file read)"
    return f"`{dataset}`"


def report_title(name: str, results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    """The report's heading: the config's name, the loader (and folder read), the task."""
    source = data_source(results, cfg)
    folder = Path(source).name or source if source else ""
    where = f" from `{folder}`" if folder and folder != results["dataset"] else ""
    return f"{name}: {results['dataset']}{where}, {results['task']}"


def validation_text(
    results: Mapping[str, Any], data: Mapping[str, Any], *, unit: str = "each class"
) -> str:
    """What a run with ``data.validation_fraction`` evaluated on (the test set was not read):
    that fraction of ``unit`` held out of the training subset."""
    fraction = data.get("validation_fraction", "?")
    return (
        f"**evaluated on a validation split, not the test set**: {fraction} of {unit} held out of "
        f"the training subset ({results.get('num_test', '?')} examples, "
        "`data.validation_fraction`; where this report says test, read validation)"
    )


def model_text(cfg: Mapping[str, Any]) -> str:
    """The sentence on the model and its training: architecture, epochs, batch, lr, decay."""
    train = cfg.get("train", {})
    return (
        f"Model `{cfg.get('model', {}).get('arch', '?')}`, {train.get('epochs', '?')} epochs, "
        f"batch {train.get('batch_size', '?')}, lr {train.get('lr', '?')} "
        f"({train.get('schedule', '?')}), weight decay {train.get('weight_decay', '?')}."
    )


def _holds_out_test(dataset: object, source: str | None) -> bool:
    """Whether the loader held the test set out of the training data (``split.json``): its
    format's ``holds_out_test`` (tables, an image folder without a ``test/`` folder)."""
    fmt = DATA_FORMATS.get(str(dataset))
    return fmt is not None and fmt.holds_out(source)


def intro(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """The paragraphs above the table: the data, the model, how to read the table (the task's
    :attr:`TaskProse.intro` instead, if it has one)."""
    prose = prose_of(results.get("task"))
    if prose.intro is not None:
        return prose.intro(results, cfg)
    data = cfg.get("data", {})
    model = model_text(cfg)
    counts = results["class_counts"]
    read = data_phrase(results, cfg)
    shown = {  # the metrics some method defines (the table drops the others)
        s["name"]
        for s in metric_specs(results)
        if any(
            m["metrics"].get(s["name"], {}).get("mean") is not None
            for m in results["methods"].values()
        )
    }
    shot = cfg.get("metrics", {}).get("shot_mode", "terciles")
    if_txt = results.get("imbalance_factor")
    factory = cfg.get("model", {}).get("factory")
    if factory:
        model = model.replace(
            f"Model `{cfg.get('model', {}).get('arch', '?')}`", f"Model `{factory}` (model.factory)"
        )
    dataset = data.get("dataset", results["dataset"])
    if _holds_out_test(dataset, data_source(results, cfg)):
        test_txt = (
            f"the test set is a stratified hold-out of {data.get('test_fraction', '?')} of each "
            "class (seed `subset_seed`; its rows / files are listed in `split.json`), so it "
            "follows the data's own class distribution"
        )
    elif prose.test_set is not None:
        test_txt = prose.test_set
    else:
        fmt = DATA_FORMATS.get(str(dataset))
        test_txt = f"the test set is {fmt.test_set if fmt is not None else 'balanced'}"
    if results.get("evaluated_on") == "validation":
        validation = prose.validation or validation_text
        test_txt = validation(results, data)
    if if_txt is None:
        profile = _profile(counts, shot)
    else:
        profile = f"imbalance factor {if_txt}, profile {data.get('profile', 'exp')}"
    unit = example_unit(dataset)
    lines = [
        f"Data: {read}. Training set: {sum(counts)} {unit} in {len(counts)} classes, class counts "
        f"{counts_text(counts)} ({profile}); {test_txt}. " + model,
        "",
        "Mean ± sample std over seeds, in percent, at the last epoch (no model selection on the "
        "test set). Best of each column in **bold**"
        + (" (lowest for ECE)" if "ece" in shown else "")
        + "."
        + (
            " Many / medium / few: "
            + (
                "thirds of the classes by training count."
                if shot == "terciles"
                else "more than 100, 20 to 100, fewer than 20 training images."
            )
            if "many" in shown
            else ""
        ),
    ]
    if "balanced" in results["methods"]:
        lines.append(
            "`balanced (reference)`: `erm` on the same number of training images spread evenly over "
            "the classes (the upper bound); *Gap closed* is each method's share of the gap in "
            "balanced accuracy between `erm` and that bound."
        )
    return lines
