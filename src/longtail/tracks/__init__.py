"""The tracks: one package per task kind, each registering its :class:`~longtail.engine.kinds.TaskKind`.

This module is the one place that lists the built-in tracks; the core's registry
(:data:`longtail.engine.kinds.TASK_KINDS`) imports it the first time it is read. The order here is
the order of ``longtail methods`` and of the ``task`` choices in messages. A new track is a package
here and its name in :data:`BUILTIN_TRACKS`. A plug-in track in another distribution declares an
entry point in the group ``longtail.tracks`` (``[project.entry-points."longtail.tracks"]
my_task = "my_package.my_track"``): the module is imported after the built-in tracks and registers
its kind with :func:`~longtail.engine.kinds.register_task_kind`, and then ``longtail bench`` and
``longtail methods`` know it.
"""

from __future__ import annotations

import importlib
import importlib.metadata

#: The built-in tracks, in registration order (the order of ``longtail methods`` and of the
#: ``task`` choices in messages); each package registers its task kind when imported.
BUILTIN_TRACKS = ("single_label", "multi_label", "open_set", "distillation", "metric_learning")

for _name in BUILTIN_TRACKS:
    importlib.import_module(f"{__name__}.{_name}")

#: The entry-point group of plug-in tracks.
PLUGIN_GROUP = "longtail.tracks"

for _entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
    _entry.load()
