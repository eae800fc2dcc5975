"""Tables and figures of a run folder: ``report.md``, ``report.html`` and ``plots/*.png``.

Everything is rebuilt from the files of the run folder (``results.json``, ``config.yaml``,
``run.json`` and each ``<method>/seed_<s>/result.json``), so ``longtail report RUN_DIR`` can redo
it at any time. ``report.html`` holds the same tables, every plot (embedded, one file that opens in
any browser) and the run's metadata (config, data read, versions, date, seeds).

The package, one concern per module:

- :mod:`~longtail.engine.report.table`: the results table (repeated columns, same methods);
- :mod:`~longtail.engine.report.style`: how each method is drawn where methods share axes;
- :mod:`~longtail.engine.report.sections`: :class:`Section`, :class:`ReportContext` and the
  per-task registry of extra figures (:func:`register_section`);
- :mod:`~longtail.engine.report.figure`, :mod:`~longtail.engine.report.per_class`,
  :mod:`~longtail.engine.report.plots`: the figures every classifier run gets;
- :mod:`~longtail.engine.report.prose`: the text around the table, with the per-task
  :class:`TaskProse` (:func:`register_prose`);
- :mod:`~longtail.engine.report.html`: ``report.html``;
- :mod:`~longtail.engine.report.write`: :func:`write_report`, the files of the run folder.

The core knows no task by name: a track adds its figures with :func:`register_section` and its
words with :func:`register_prose` when it is imported; both registries import
:mod:`longtail.tracks` the first time they are read.
"""

from __future__ import annotations

from longtail.engine.report.figure import MAX_FIGURE_WIDTH, has_details
from longtail.engine.report.html import IMAGES_MARK, render_html
from longtail.engine.report.per_class import NAMED_CLASSES_MAX, per_item_sections
from longtail.engine.report.plots import NAMED_CONFUSION_MAX, group_confusion
from longtail.engine.report.prose import (
    TASK_PROSE,
    TaskProse,
    _profile,  # noqa: F401  (tests/test_own_data.py imports it from here)
    register_prose,
)
from longtail.engine.report.sections import (
    REPORT_SECTIONS,
    ReportContext,
    Section,
    SectionFn,
    register_section,
)
from longtail.engine.report.style import (
    ALL_COLOURED_MAX,
    HIGHLIGHT_BEST,
    MethodStyle,
    method_styles,
)
from longtail.engine.report.table import (
    REPEAT_TOLERANCE,
    TableModel,
    format_table,
    method_identity,
    metric_specs,
    repeated_columns,
    same_method_groups,
    table_model,
)
from longtail.engine.report.write import load_runs, write_report

__all__ = [
    "ALL_COLOURED_MAX",
    "HIGHLIGHT_BEST",
    "IMAGES_MARK",
    "MAX_FIGURE_WIDTH",
    "NAMED_CLASSES_MAX",
    "NAMED_CONFUSION_MAX",
    "REPEAT_TOLERANCE",
    "REPORT_SECTIONS",
    "TASK_PROSE",
    "MethodStyle",
    "ReportContext",
    "Section",
    "SectionFn",
    "TableModel",
    "TaskProse",
    "format_table",
    "group_confusion",
    "has_details",
    "load_runs",
    "method_identity",
    "method_styles",
    "metric_specs",
    "per_item_sections",
    "register_prose",
    "register_section",
    "render_html",
    "repeated_columns",
    "same_method_groups",
    "table_model",
    "write_report",
]
