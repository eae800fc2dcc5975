"""One registry type for every kind of component: losses, task kinds, methods, formats, sections.

A :class:`Registry` is a mapping from a name to an object, filled where each object is defined (as
timm's ``register_model`` and mmengine's ``Registry`` do)::

    METHODS: Registry[Method] = Registry("single-label method")
    METHODS.register("erm", compose("erm", ...))         # a call ...

    @PLOTS.register("roc")                                # ... or a decorator
    def roc_plot(ctx): ...

``registry[name] = obj`` replaces an entry (tests, plug-ins) and ``del registry[name]`` removes one;
an optional ``validate`` hook checks every entry added.

A registry can name ``locations``: modules imported the first time it is read, so that a lower
layer (the engine's core) finds what a higher one (the tracks) registers without importing it by
name in its code. A lookup of an unknown name raises :class:`KeyError` naming the kind, the name
and the known names (with the closest one).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

__all__ = ["Registry"]

T = TypeVar("T")
_MISSING: Any = object()  # register(name) without an object: the decorator form


class Registry(Mapping[str, T], Generic[T]):
    """A name -> object mapping with registration, lazy locations and clear errors.

    Args:
        kind: what the entries are, for messages (``"loss"``, ``"task kind"``).
        locations: modules imported (once) before the registry is first read; they register
            their entries when imported.
        validate: called with ``(name, obj)`` before an entry is added (by :meth:`register` or
            ``registry[name] = obj``); raises ``TypeError`` / ``ValueError`` for a bad entry.

    >>> COLOURS: Registry[str] = Registry("colour")
    >>> _ = COLOURS.register("red", "#f00")
    >>> COLOURS["red"], list(COLOURS)
    ('#f00', ['red'])
    >>> COLOURS["rad"]
    Traceback (most recent call last):
    ...
    KeyError: "unknown colour 'rad' (did you mean 'red'?); known: ['red']"
    """

    def __init__(
        self,
        kind: str,
        *,
        locations: Sequence[str] = (),
        validate: Callable[[str, T], None] | None = None,
    ) -> None:
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r}")
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._locations = tuple(locations)
        self._loaded = not self._locations
        self._loading = False
        self._validate = validate

    def _load(self) -> None:
        if self._loaded:
            return
        if self._loading:
            raise RuntimeError(self._partial(", ".join(self._locations)))
        self._loading = True
        try:
            for name in self._locations:
                module = importlib.import_module(name)
                if getattr(getattr(module, "__spec__", None), "_initializing", False):
                    # read by a module that `name` itself is importing: the entries are not all
                    # there yet, and marking the registry loaded would lose the rest for good
                    raise RuntimeError(self._partial(name))
            self._loaded = True
        finally:
            self._loading = False

    def _partial(self, modules: str) -> str:
        return (
            f"the {self.kind} registry was read while {modules} is being imported, so it is not "
            "complete yet; read it when a function runs, not when a module is imported"
        )

    @overload
    def register(self, name: str, obj: T, *, overwrite: bool = ...) -> T: ...

    @overload
    def register(self, name: str, *, overwrite: bool = ...) -> Callable[[T], T]: ...

    def register(self, name: str, obj: Any = _MISSING, *, overwrite: bool = False) -> Any:
        """Add ``obj`` under ``name``; without ``obj``, a decorator that adds what it decorates.

        Raises:
            ValueError: ``name`` is empty or already registered (unless ``overwrite``), or
                ``validate`` refuses ``obj``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")

        def add(value: T) -> T:
            if name in self._entries and not overwrite:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            if self._validate is not None:
                self._validate(name, value)
            self._entries[name] = value
            return value

        if obj is _MISSING:
            return add
        return add(obj)

    def registered(self, name: str) -> T | None:
        """The entry ``name`` if it is registered already, else ``None``, without importing the
        ``locations``: for code that registers (a module being imported must not read the
        registry it is filling)."""
        return self._entries.get(name)

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (for tests and plug-ins that replace one)."""
        self._load()
        if name not in self._entries:
            raise KeyError(self._unknown(name))
        return self._entries.pop(name)

    def __setitem__(self, name: str, obj: T) -> None:
        """``registry[name] = obj``: register, replacing an entry of that name (tests, plug-ins)."""
        self.register(name, obj, overwrite=True)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    def _unknown(self, name: object) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {known}"

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
