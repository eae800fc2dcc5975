"""The docstring examples run, and every public loss, metric, sampler and head has one.

Each module of ``longtail.losses``, ``longtail.metrics`` and ``longtail.data``, and ``longtail.heads``,
``longtail.registry``, ``longtail.adjust`` and ``longtail.sla``, is run through :func:`doctest.testmod`
(with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``); a failing example is printed in the captured output.
The global random state and the losses' value-check switch are restored after each module.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest
import torch

from longtail.losses import set_value_checks, value_checks_enabled

PACKAGES = ("longtail.losses", "longtail.metrics", "longtail.data")
MODULES = ("longtail.heads", "longtail.registry", "longtail.adjust", "longtail.sla")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Namespaces whose public classes and functions (their ``__all__``) must show an example.
PUBLIC = ("longtail.losses", "longtail.metrics", "longtail.data.samplers", "longtail.heads")


def _module_names() -> list[str]:
    names: list[str] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += sorted(
            info.name for info in pkgutil.walk_packages(package.__path__, package_name + ".")
        )
    return [*names, *MODULES]


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    checks = value_checks_enabled()
    try:
        with torch.random.fork_rng(devices=[]):
            result = doctest.testmod(module, optionflags=FLAGS, report=False)
    finally:
        set_value_checks(checks)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples of {name} failed (the failures "
        "are printed in the captured output)"
    )


@pytest.mark.parametrize("namespace", PUBLIC)
def test_every_public_object_has_an_example(namespace: str) -> None:
    module = importlib.import_module(namespace)
    objects = {name: getattr(module, name) for name in module.__all__}
    public = {n: o for n, o in objects.items() if inspect.isclass(o) or inspect.isfunction(o)}
    assert public, f"{namespace}.__all__ lists no class or function"
    missing = [n for n, o in public.items() if ">>>" not in (o.__doc__ or "")]
    assert not missing, f"no '>>>' example in the docstring of {namespace}.{{{', '.join(missing)}}}"
