"""The one registry type (longtail.registry.Registry): registration, lookup, lazy locations."""

from __future__ import annotations

import sys
import types

import pytest

from longtail.registry import Registry


def test_register_by_call_and_by_decorator_in_order() -> None:
    reg: Registry[object] = Registry("widget")
    assert reg.register("a", 1) == 1

    @reg.register("b")
    def b() -> None: ...

    assert list(reg) == ["a", "b"] and reg["b"] is b and len(reg) == 2
    assert (
        reg.register("none", None) is None and "none" in reg
    )  # None is an entry, not the decorator form


def test_duplicates_unknown_names_and_replacement() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="a widget named 'alpha' is already registered"):
        reg.register("alpha", 2)
    with pytest.raises(
        KeyError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); known: \['alpha'\]"
    ):
        reg["alpah"]
    reg["alpha"] = 3  # replaces
    assert reg["alpha"] == 3
    del reg["alpha"]
    assert "alpha" not in reg
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("", 1)
    with pytest.raises(ValueError, match="non-empty"):
        Registry("")


def test_validate_runs_on_every_entry() -> None:
    def positive(name: str, value: int) -> None:
        if value <= 0:
            raise ValueError(f"{name}: must be positive, got {value}")

    reg: Registry[int] = Registry("count", validate=positive)
    reg.register("one", 1)
    with pytest.raises(ValueError, match="two: must be positive"):
        reg.register("two", -2)
    with pytest.raises(ValueError, match="must be positive"):
        reg["three"] = 0
    assert list(reg) == ["one"]


def _fake_module(name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module ``name`` whose import runs ``body`` (with ``REG`` in scope)."""
    # registered with monkeypatch as absent, so that the module the test imports is removed after
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.delitem(sys.modules, name)

    class Loader:
        @staticmethod
        def create_module(spec: object) -> None:
            return None

        @staticmethod
        def exec_module(module: types.ModuleType) -> None:
            exec(body, module.__dict__)

    import importlib.abc
    import importlib.util

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: object, target: object = None) -> object:
            if fullname == name:
                return importlib.util.spec_from_loader(name, Loader())  # type: ignore[arg-type]
            return None

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])


def test_locations_are_imported_on_first_read(monkeypatch: pytest.MonkeyPatch) -> None:
    reg: Registry[int] = Registry("plug", locations=("_lt_plugins_ok",))
    monkeypatch.setattr(sys.modules[__name__], "REG", reg, raising=False)
    _fake_module("_lt_plugins_ok", f"import {__name__} as t\nt.REG.register('p', 7)\n", monkeypatch)
    assert "_lt_plugins_ok" not in sys.modules  # nothing imported at construction
    assert reg["p"] == 7 and list(reg) == ["p"]


def test_a_read_while_the_locations_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that reads the registry it is filling would see it half full: refused loudly."""
    reg: Registry[int] = Registry("plug", locations=("_lt_plugins_bad",))
    monkeypatch.setattr(sys.modules[__name__], "REG", reg, raising=False)
    body = f"import {__name__} as t\nt.REG.register('p', 1)\nassert 'p' in t.REG\n"
    _fake_module("_lt_plugins_bad", body, monkeypatch)
    with pytest.raises(RuntimeError, match="read while _lt_plugins_bad is being imported"):
        list(reg)
    # registration code uses `registered`, which does not import the locations
    assert Registry("x", locations=("_lt_never_imported",)).registered("y") is None
    assert "_lt_never_imported" not in sys.modules
