"""The report's figures as sections: :class:`Section`, the :class:`ReportContext` a section draws
from, and the per-task registry :data:`REPORT_SECTIONS` through which a track adds its figures.

The core draws the figures every classifier run has (:mod:`longtail.engine.report.plots`); a track
adds its own with :func:`register_section` when it is imported. The registry imports
:mod:`longtail.tracks` the first time it is read, so ``longtail report RUN_DIR`` finds the tracks'
sections without anything else having imported them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_bytes
from longtail.engine.report.style import BASELINES, MethodStyle
from longtail.engine.report.table import REFERENCE
from longtail.registry import Registry

__all__ = [
    "DPI",
    "PNG_COMPRESS_LEVEL",
    "REPORT_SECTIONS",
    "ReportContext",
    "Section",
    "SectionFn",
    "register_section",
    "sections_of",
]

#: The resolution of every plot (dots per inch).
DPI = 110
#: zlib level of the PNG files: 1 writes the large grids several times faster than the default 6
#: (about a second of a report of 26 methods) for files about 1.3 times larger.
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class Section:
    """One figure of the report: a title, a PNG written into the run folder, a caption."""

    title: str
    path: Path
    caption: str = ""


@dataclass
class ReportContext:
    """What a report section sees (see :func:`register_section`).

    Attributes:
        run_dir: the run folder; plots go to ``run_dir / "plots"`` (:meth:`save`).
        results: ``results.json``.
        runs: every method's ``result.json`` per seed (``details`` holds the task's per-class,
            per-label or per-sample data).
        config: the resolved ``config.yaml`` as a mapping.
        names: the methods with results, in table order (the reference last).
        styles: each method's :class:`MethodStyle`.
    """

    run_dir: Path
    results: Mapping[str, Any]
    runs: Mapping[str, list[dict[str, Any]]]
    config: Mapping[str, Any]
    names: list[str]
    styles: dict[str, MethodStyle]

    @property
    def baseline(self) -> str | None:
        """The plain baseline among the methods (``erm`` or ``bce``), if run."""
        return next((b for b in BASELINES if b in self.names), None)

    @property
    def reference(self) -> str | None:
        """The balanced reference, if run."""
        return REFERENCE if REFERENCE in self.names else None

    def save(self, fig: Any, filename: str, *, tight: bool = True) -> Path:
        """Save ``fig`` as ``plots/<filename>`` (PNG, atomically), close it, return the path.

        ``tight``: crop to the drawn content (an extra draw; not needed when the layout leaves
        the right margins, as :func:`longtail.engine.report.figure.panel_grid` does).
        """
        import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

        path = self.run_dir / "plots" / filename
        buf = io.BytesIO()
        fig.savefig(
            buf,
            format="png",
            dpi=DPI,
            bbox_inches="tight" if tight else None,
            pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL},
        )
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        return path


SectionFn = Callable[[ReportContext], list[Section]]

#: Extra figures of each task (the ``task`` of ``results.json``), after the common ones; a track
#: adds its own with :func:`register_section`. Read first, it imports :mod:`longtail.tracks`.
REPORT_SECTIONS: Registry[list[SectionFn]] = Registry(
    "report section list", locations=("longtail.tracks",)
)


def register_section(task: str, fn: SectionFn) -> SectionFn:
    """Add ``fn`` to the report of runs of ``task`` (once; returns ``fn``).

    ``fn(ctx)`` draws its figures with matplotlib (Agg backend), saves each with
    ``ctx.save(fig, "name.png")`` and returns a :class:`Section` per figure; the sections appear
    in ``report.md`` and ``report.html`` in the order returned. Example (an open-set track)::

        def roc_section(ctx: ReportContext) -> list[Section]:
            fig, ax = plt.subplots()
            ...  # from ctx.runs[m][i]["details"]
            return [Section("ROC of known vs unknown", ctx.save(fig, "roc.png"), "caption")]

        register_section("open-set", roc_section)
    """
    fns = REPORT_SECTIONS.registered(task)
    if fns is None:
        fns = REPORT_SECTIONS.register(task, [])
    if fn not in fns:
        fns.append(fn)
    return fn


def sections_of(task: str) -> list[SectionFn]:
    """The section functions registered for ``task`` (the tracks loaded first), in order."""
    return list(REPORT_SECTIONS.get(task, []))
