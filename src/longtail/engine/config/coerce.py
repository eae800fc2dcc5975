"""Type coercion: a raw mapping (from YAML) checked against the schema's annotations and metadata.

:func:`_build` turns a mapping into a config dataclass, :func:`_coerce` checks one value against its
annotation, range and choices; every error is a :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from longtail.engine.config.schema import Config, ConfigError, section_schemas


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_range(key: str, value: float, meta: Mapping[str, Any]) -> None:
    ge, gt, le, lt = meta.get("ge"), meta.get("gt"), meta.get("le"), meta.get("lt")
    if ge is not None and not value >= ge:
        raise ConfigError(f"config key '{key}': must be >= {ge}, got {value!r}")
    if gt is not None and not value > gt:
        raise ConfigError(f"config key '{key}': must be > {gt}, got {value!r}")
    if le is not None and not value <= le:
        raise ConfigError(f"config key '{key}': must be <= {le}, got {value!r}")
    if lt is not None and not value < lt:
        raise ConfigError(f"config key '{key}': must be < {lt}, got {value!r}")


def _coerce(key: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    """Check ``value`` against the annotation ``tp`` (and the field's range/choices); return it."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{key}': must not be null")
        errors: list[ConfigError] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, arg, value, meta)
            except ConfigError as exc:
                errors.append(exc)
        raise (
            errors[-1]
            if len(errors) == 1
            else ConfigError(
                f"config key '{key}': unexpected value {value!r} ({_type_name(value)}); "
                + "; ".join(str(e).split(": ", 1)[1] for e in errors)
            )
        )
    if value is None:
        raise ConfigError(f"config key '{key}': must not be null")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(
                f"config key '{key}': expected a list, got {value!r} ({_type_name(value)})"
            )
        return [_coerce(f"{key}[{i}]", item_tp, v, meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"config key '{key}': expected a mapping, got {value!r} ({_type_name(value)})"
            )
        _, val_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"config key '{key}': keys must be strings, got {k!r}")
            out[k] = v if val_tp is Any else _coerce(f"{key}.{k}", val_tp, v, {})
        return out
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"config key '{key}': expected true/false, got {value!r} ({_type_name(value)})"
            )
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"config key '{key}': expected an integer, got {value!r} ({_type_name(value)})"
            )
        _check_range(key, value, meta)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(
                    f"config key '{key}': expected a number, got {value!r} (str)"
                ) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"config key '{key}': expected a number, got {value!r} ({_type_name(value)})"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': must be finite, got {value!r}")
        _check_range(key, value, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(
                f"config key '{key}': expected a string, got {value!r} ({_type_name(value)})"
            )
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"config key '{key}': must be one of {list(choices)}, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")  # pragma: no cover


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: Any, raw: Any, prefix: str) -> Any:
    where = f"config key '{prefix}'" if prefix else "config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r} ({_type_name(raw)})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    section_raw: dict[str, Any] = {}
    schemas: dict[str, tuple[str, type]] = {}
    if cls is Config:  # the task kinds' sections take the place of the field that holds them
        del fields["sections"]
        schemas = section_schemas()
        section_raw = {k: v for k, v in raw.items() if k in schemas}
        raw = {k: v for k, v in raw.items() if k not in schemas}
        fields.update({k: None for k in schemas})  # type: ignore[misc]
    for k in raw:
        if k not in fields:
            full = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(
                f"config key '{full}': unknown key (known: {', '.join(sorted(fields))})"
            )
    hints = _hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            full = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(full, hints[name], raw[name], f.metadata)
    if cls is Config:  # validated after the other keys, in the order the file gives them
        kwargs["sections"] = {
            k: None if v is None else _build(schemas[k][1], v, k) for k, v in section_raw.items()
        }
    return cls(**kwargs)
