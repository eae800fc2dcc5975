"""The tracks: one package per task kind, each registering its :class:`~longtail.engine.kinds.TaskKind`.

This module is the one place that lists the built-in tracks; the core's registry
(:data:`longtail.engine.kinds.TASK_KINDS`) imports it the first time it is read. The order here is
the order of ``longtail methods`` and of the ``task`` choices in messages. A new track is a package
here and one line below.
"""

from __future__ import annotations

from longtail.tracks import (  # noqa: F401  (each registers its task kind when imported)
    distillation,
    metric_learning,
    multi_label,
    open_set,
    single_label,
)
