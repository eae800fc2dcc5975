"""Config files: reading YAML, the bundled configs, and ``extends`` (a config built on others).

A config file may extend one or more others (``extends: base.yaml``, or mmengine's spelling
``_base_``; a list extends several, later ones win). A base is a path relative to the extending
file, or the name of a bundled config. Chains are followed; a cycle is a :class:`ConfigError`
naming the files. The merge: mappings merge key by key, recursively; any other value (a list, a
scalar, null) replaces the base's; a mapping holding ``_delete_: true`` replaces the base's mapping
instead of merging into it (mmengine's rule; ``_delete_`` itself is dropped).

While merging, a provenance map records which file set each dotted key, so that a validation error
of a multi-file config names the file as well as the key (:func:`with_file`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtail.engine.config.coerce import _type_name
from longtail.engine.config.schema import ConfigError

__all__ = ["EXTENDS_KEYS", "ConfigFiles", "bundled_config_names", "bundled_config_path"]

#: The keys naming the configs a file extends (ours, and mmengine's spelling).
EXTENDS_KEYS = ("extends", "_base_")
#: In a mapping of an extending file: replace the base's mapping instead of merging into it.
DELETE_KEY = "_delete_"

_BUNDLED = Path(__file__).resolve().parents[2] / "configs"

Key = tuple[str, ...]


def bundled_config_names() -> list[str]:
    """Names of the configs shipped inside the package (``longtail/configs/*.yaml``)."""
    return sorted(p.stem for p in _BUNDLED.glob("*.yaml"))


def bundled_config_path(name: str) -> Path:
    """Path of a bundled config by name (``digits_lt``, ``fashion_mnist_lt``, ...)."""
    path = _BUNDLED / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"config: no bundled config named {name!r} (bundled: {', '.join(bundled_config_names())})"
        )
    return path


def _yaml_problem(exc: Exception) -> str:
    """One line for a PyYAML error: the problem and where (PyYAML's own text spans lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_yaml_mapping(p: Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``p``; anything else is a :class:`ConfigError`."""
    import yaml  # optional dependency (longtail[cli]): only loading a file needs it

    data = p.read_bytes()
    if b"\0" in data:
        raise ConfigError(
            f"config {p}: not a YAML file (binary data: byte 0x00 at offset {data.index(0)})"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {p}: not a YAML file (not UTF-8 text: byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start})"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p}: not valid YAML: {_yaml_problem(exc)}") from None
    if raw is None:
        raise ConfigError(
            f"config {p} is empty: expected a mapping of settings (e.g. `name: my_run`)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"config {p}: expected a mapping at the top level, got {_type_name(raw)}")
    return raw


@dataclass
class ConfigFiles:
    """A config file merged with the files it extends.

    Attributes:
        raw: the merged mapping (without ``extends`` and ``_delete_``), ready for validation.
        files: every file read, the given one first.
        origin: dotted key (as a tuple) -> the file that set its value.
    """

    raw: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    origin: dict[Key, Path] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> ConfigFiles:
        """Read ``path`` and, recursively, the configs it extends."""
        out = cls({})
        out._add(path, ())
        return out

    def _add(self, path: Path, chain: tuple[Path, ...]) -> None:
        """Merge ``path`` (its bases first, then its own keys) into :attr:`raw`."""
        self.files.append(path)
        raw = _read_yaml_mapping(path)
        key, refs = _extends_of(raw, path)
        here = (*chain, path)
        for ref in refs:
            base = _resolve_base(ref, path, key)
            seen = [p.resolve() for p in here]
            if base.resolve() in seen:
                loop = [*here[seen.index(base.resolve()) :], base]
                raise ConfigError(
                    f"config {path}: {key} {ref!r} makes a cycle: "
                    + " -> ".join(str(p) for p in loop)
                )
            self._add(base, here)
        _merge(self.raw, raw, self.origin, path, ())

    def forget(self, dotted: str) -> None:
        """Forget where ``dotted`` (and the keys below it) came from (it was overridden)."""
        _drop(self.origin, tuple(dotted.split(".")))

    def with_file(self, message: str) -> str:
        """``message`` with the file that set its key: ``config key 'train.lr' (set in F): ...``.

        Only for configs of several files (a single file's messages stay as they were), and only
        for a key a file set (not a default, not an override).
        """
        if len(self.files) < 2:
            return message
        m = _KEY.search(message)
        if m is None:
            return message
        where = self.origin.get(tuple(re.sub(r"\[\d+\]", "", m.group(1)).split(".")))
        if where is None:
            return message
        return f"{message[: m.end()]} (set in {where}){message[m.end() :]}"


_KEY = re.compile(r"config key '([^']+)'")


def _extends_of(raw: dict[str, Any], path: Path) -> tuple[str, list[str]]:
    """Pop the ``extends`` (or ``_base_``) key of a file's mapping: the key and the bases."""
    given = [k for k in EXTENDS_KEYS if k in raw]
    if not given:
        return EXTENDS_KEYS[0], []
    if len(given) > 1:
        raise ConfigError(f"config {path}: set either 'extends' or '_base_', not both")
    key = given[0]
    value = raw.pop(key)
    refs = [value] if isinstance(value, str) else value
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
        raise ConfigError(
            f"config {path}: key '{key}': expected a config file (or a non-empty list of them), "
            f"got {value!r} ({_type_name(value)})"
        )
    return key, refs


def _resolve_base(ref: str, child: Path, key: str) -> Path:
    """The file ``ref`` names: a path relative to ``child``'s folder, else a bundled config."""
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = child.parent / path
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config {child}: {key} {ref!r}: {path} is a folder, not a YAML file")
    name = ref.removesuffix(".yaml")
    if "/" not in name and "\\" not in name and name in bundled_config_names():
        return bundled_config_path(name)
    raise ConfigError(
        f"config {child}: {key} {ref!r}: no such file ({path}) and no bundled config of that "
        f"name (bundled: {', '.join(bundled_config_names())})"
    )


def _merge(
    dst: dict[str, Any], src: Mapping[Any, Any], origin: dict[Key, Path], path: Path, at: Key
) -> None:
    """Merge one file's mapping ``src`` into ``dst`` (see the module doc), recording ``origin``."""
    for k, value in src.items():
        if k == DELETE_KEY:
            continue
        key = (*at, str(k))
        old = dst.get(k)
        if isinstance(value, dict):
            delete = value.get(DELETE_KEY, False)
            if not isinstance(delete, bool):
                raise ConfigError(
                    f"config key '{'.'.join(key)}.{DELETE_KEY}' (set in {path}): expected "
                    f"true/false, got {delete!r} ({_type_name(delete)})"
                )
            if not (isinstance(old, dict) and not delete):
                _drop(origin, key)
                old = dst[k] = {}
            origin[key] = path
            _merge(old, value, origin, path, key)
            continue
        _drop(origin, key)
        dst[k] = value
        origin[key] = path


def _drop(origin: dict[Key, Path], key: Key) -> None:
    """Forget ``key`` and every key below it."""
    for k in [k for k in origin if k[: len(key)] == key]:
        del origin[k]
